-- Spec for policies/deploy/freeze.lua: decide answers {allow, reason, window} naming the
-- window and its end; deploy.requested becomes deploy.admitted or deploy.refused; an approved
-- freeze-override approval lets one service through; windows are validated at load.
local util = require "steward.runtime.store.util"
local approvals = require "steward.deploy.approvals"

local WINDOWS = {
  { name = "friday-pm", location = "Europe/Berlin", reason = "no Friday afternoon deploys",
    time_intervals = { { weekdays = { "friday" }, times = { { start_time = "15:00", end_time = "24:00" } } } } },
  { name = "year-end", location = "America/New_York", start = "2026-12-19", ["end"] = "2027-01-04",
    except_services = { "docs" } },
}

local function at(s) return assert(util.parse_rfc3339(s)) end

describe("deploy.freeze", function()
  local p
  before_each(function()
    p = policy.load("freeze.lua", { config = { windows = WINDOWS } })
  end)

  it("admits a deploy outside every window", function()
    clock.set(at("2026-01-07T10:00:00Z")) -- a Wednesday
    assert.same(p:decide({ service = "api", revision = "r42", environment = "production" }),
      { allow = true, reason = "no change freeze applies" })
  end)

  it("refuses a deploy in a freeze, naming the window and when it ends", function()
    clock.set(at("2026-01-09T15:30:00Z")) -- Friday 16:30 in Berlin (UTC+1)
    local r = p:decide({ service = "api", revision = "r42", environment = "production" })
    assert.equal(r.allow, false)
    assert.equal(r.window, "friday-pm")
    assert.equal(r.ends_at, "2026-01-09T23:00:00Z")
    assert.match(r.reason, 'change freeze "friday%-pm" %(no Friday afternoon deploys%) until 2026%-01%-09T23:00:00Z')
  end)

  it("follows Berlin's wall clock across the spring DST change", function()
    clock.set(at("2026-04-03T13:00:00Z")) -- Friday 15:00 CEST
    assert.equal(p:decide({ service = "api" }).allow, false)
    clock.set(at("2026-04-03T12:59:00Z"))
    assert.equal(p:decide({ service = "api" }).allow, true)
  end)

  it("lets an excepted service through the year-end freeze", function()
    clock.set(at("2026-12-23T15:00:00Z")) -- a Wednesday
    assert.equal(p:decide({ service = "api" }).window, "year-end")
    assert.equal(p:decide({ service = "docs" }).allow, true)
  end)

  it("lets a service through with a granted freeze-override approval", function()
    clock.set(at("2026-12-23T15:00:00Z"))
    local id = assert(approvals.request({ subject = "freeze-override:api", timeout = "2h", reason = "hotfix" }))
    local r = p:decide({ service = "api", revision = "r43", override = id })
    assert.equal(r.allow, false, "pending: not yet")
    assert.match(r.reason, "is not a granted freeze%-override:api")
    assert(approvals.decide(store, id, "approve", { actor = "ana", role = "operator", name = "ana", via = "api" }))
    r = p:decide({ service = "api", revision = "r43", override = id })
    assert.equal(r.allow, true)
    assert.equal(r.window, "year-end")
    assert.match(r.reason, "overridden by approval")
    assert.equal(p:decide({ service = "web", override = id }).allow, false, "only for the service it names")
  end)

  it("turns deploy.requested into deploy.refused with the window", function()
    clock.set(at("2026-01-09T15:30:00Z"))
    local r = p:handle({ id = "d1", type = "deploy.requested", data = { service = "api", revision = "r42", environment = "production" } })
    assert.equal(r.allow, false)
    assert.count(captured.events, 1)
    local ev = captured.events[1]
    assert.equal(ev.type, "deploy.refused")
    assert.equal(ev.id, "deploy.freeze:d1")
    assert.equal(ev.data.window, "friday-pm")
    assert.equal(ev.data.revision, "r42")
    assert.match(ev.data.reason, "friday%-pm")
  end)

  it("turns deploy.requested into deploy.admitted outside a freeze", function()
    clock.set(at("2026-01-07T10:00:00Z"))
    p:handle({ id = "d2", type = "deploy.requested", data = { service = "api", revision = "r42" } })
    assert.equal(captured.events[1].type, "deploy.admitted")
    assert.equal(captured.events[1].data.service, "api")
  end)

  it("refuses a request without a service, naming the field", function()
    p:handle({ id = "d3", type = "deploy.requested", data = { revision = "r1" } })
    assert.equal(captured.events[1].type, "deploy.refused")
    assert.match(captured.events[1].data.reason, "service")
    assert.error(function() p:decide({ revision = "r1" }) end, "service: non%-empty string expected")
  end)

  it("refuses windows that do not compile, naming the field (policy_config is checked at load)", function()
    local schema = require "steward.runtime.policy.schema"
    local ok, err = schema.apply({ file = "freeze.lua", name = "deploy.freeze", config_decl = p.def.config_decl },
      { env = { ["deploy.freeze"] = { windows = { { name = "x", location = "Mars/Base", start = "2026-01-01", ["end"] = "2026-01-02" } } } } })
    assert.falsy(ok)
    assert.match(err, 'config%.windows: windows%[1%] %(x%)%.location: unknown time zone "Mars/Base"')
    assert.truthy(schema.apply({ file = "freeze.lua", name = "deploy.freeze", config_decl = p.def.config_decl },
      { env = { ["deploy.freeze"] = { windows = WINDOWS } } }))
  end)
end)
