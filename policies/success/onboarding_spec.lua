-- Spec for policies/success/onboarding.lua on the fake clock: milestones from the first event
-- of their kind (once each), time-to-value, and one nudge per milestone still missing when its
-- timer falls due. Run with `steward test policies/success`.
local onboarding = require "steward.success.onboarding"

local fired = emitted -- steward test: the data of the events of a type

describe("success.onboarding", function()
  local p
  before_each(function()
    p = policy.load("policies/success/onboarding.lua", { config = { nudge = { channel = "email",
      url = "smtp://127.0.0.1:2525", from = "success@example.org", to = "csm@example.org" } } })
  end)

  it("reaches a milestone with the first event of its kind, once", function()
    p:handle({ type = "app.used", tenant = "acme", data = {} })
    clock.advance("2h")
    p:handle({ type = "alert.firing", tenant = "acme", data = {} })
    clock.advance("1h")
    p:handle({ type = "alert.firing", tenant = "acme", data = {} })
    local got = onboarding.reached(store, "acme")
    assert.equal(got.first_event, 1767225600)
    assert.equal(got.first_alert, 1767225600 + 7200)
    assert.count(fired("success.milestone.reached"), 2)
  end)

  it("measures time to value from the start to the value milestone", function()
    p:handle({ type = "app.used", tenant = "acme", data = {} })
    clock.advance("1d")
    p:handle({ type = "alert.firing", tenant = "acme", data = {} })
    local r = p:decide({ tenant = "acme" })
    assert.equal(r.time_to_value, 86400)
    assert.equal(r.done, 2)
    assert.equal(r.total, 4)
    assert.equal(r.milestones[2].name, "first_policy")
    assert.falsy(r.milestones[2].reached)
  end)

  it("nudges once per milestone still missing when its time is up", function()
    p:handle({ type = "app.used", tenant = "acme", data = {} })
    p:handle({ type = "app.used", tenant = "acme", data = {} }) -- a second event arms nothing new
    assert.count(clock.pending(), 3)
    clock.advance("2d")
    p:handle({ type = "policy.deployed", tenant = "acme", data = {} })
    clock.advance("1d")
    assert.count(captured.mail, 0, "first_policy was reached in time")
    clock.advance("4d")
    assert.count(captured.mail, 2, "first_alert and first_notification are late")
    local subjects = {}
    for _, m in ipairs(captured.mail) do subjects[#subjects + 1] = m.subject end
    table.sort(subjects)
    assert.match(subjects[1], "acme: time to route a first alert")
    assert.match(subjects[2], "acme: time to send a first notification")
    clock.advance("30d")
    assert.count(captured.mail, 2, "once each")
  end)

  it("starts the nudges at provisioning, which is no first event", function()
    p:handle({ type = "tenant.provisioned", tenant = "acme", data = { tenant = "acme" } })
    p:handle({ type = "ticket.opened", tenant = "acme", data = {} })
    assert.same(onboarding.reached(store, "acme"), {}, "lifecycle and tickets reach nothing")
    assert.count(clock.pending(), 3)
    p:handle({ type = "app.used", tenant = "acme", data = {} })
    assert.truthy(onboarding.reached(store, "acme").first_event)
    assert.count(clock.pending(), 3, "the first event arms nothing more")
  end)

  it("keeps tenants apart", function()
    p:handle({ type = "alert.firing", tenant = "acme", data = {} })
    assert.same(onboarding.reached(store, "beta"), {})
  end)

  it("refuses two value milestones, naming the field", function()
    local schema = require "steward.runtime.policy.schema"
    local ok, err = schema.apply({ file = "onboarding.lua", name = "success.onboarding", config_decl = p.def.config_decl },
      { env = { ["success.onboarding"] = { milestones = {
        { name = "a", on = { "x" }, title = "a", value = true }, { name = "b", on = { "y" }, title = "b", value = true } } } } })
    assert.falsy(ok)
    assert.match(err, "at most one has value = true")
  end)
end)
