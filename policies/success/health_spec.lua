-- Spec for policies/success/health.lua on the fake clock: the signals each part of the formula
-- reads, the weighted score, the history kept per run, and success.health_dropped when a score
-- falls more than `drop` points. Run with `steward test policies/success`.
local health = require "steward.success.health"
local tickets = require "steward.success.tickets"
local onboarding = require "steward.success.onboarding"
local events = require "steward.runtime.events"

local DAY = 86400

local fired = emitted -- steward test: the data of the events of a type

-- n events of the tenant on each of the last #per_day days (oldest first), today last
local function usage(tenant, per_day)
  local list = {}
  local today = math.floor(clock.now() / DAY) * DAY
  for i, n in ipairs(per_day) do
    for k = 1, n do
      list[#list + 1] = { type = "app.used", tenant = tenant, time = today - (#per_day - i) * DAY + k, data = {} }
    end
  end
  assert(events.append(store, list))
end

local function run(p, tenant) return p:handle({ type = "success.health.run", data = { tenant = tenant } }) end

describe("success.health", function()
  local p
  before_each(function() p = policy.load("policies/success/health.lua") end)

  it("reads each signal from the store", function()
    usage("acme", { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 })
    assert(tickets.open(store, { tenant = "acme", subject = "s", requester = "a@b.c" }))
    assert(events.append(store, { { type = "billing.payment.failed", tenant = "acme", data = {} } }))
    assert(onboarding.reach(store, "acme", "first_event"))
    local s = assert(health.signals(store, "acme", { milestones = 4 }))
    assert.equal(s.usage.total, 105 + 3, "the ticket, the payment and the milestone are the tenant's events too")
    assert.equal(#s.usage.days, 14)
    assert.truthy(s.usage.slope > 0.1, "growing usage has a positive slope")
    assert.equal(s.tickets.open, 1)
    assert.equal(s.payment, "failed")
    assert.same(s.adoption, { reached = 1, total = 4, share = 0.25, routes = 0 })
    assert.equal(s.incidents.count, 0)
  end)

  it("scores a healthy tenant near 100 and weights each part", function()
    usage("acme", { 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 7, 7, 8, 9 })
    for _, m in ipairs({ "first_event", "first_policy", "first_alert", "first_notification" }) do
      assert(onboarding.reach(store, "acme", m))
    end
    local r = run(p, "acme")
    assert.equal(r.scored[1].score, 100)
    local h = health.history(store, "acme")
    assert.count(h, 1)
    assert.same(h[1].parts.payment, { weight = 20, value = 1, points = 20 })
  end)

  it("follows the weights of the config", function()
    usage("acme", { 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5 })
    p = policy.load("policies/success/health.lua", { config = { weights = { usage = 1, adoption = 1 } } })
    -- flat usage is 0.6, no milestone is 0: (0.6 + 0) / 2
    assert.equal(run(p, "acme").scored[1].score, 30)
  end)

  it("keeps the history and raises success.health_dropped on a fall of more than `drop` points", function()
    p = policy.load("policies/success/health.lua", { config = { weights = { tickets = 15, payment = 20 } } })
    assert.equal(run(p, "acme").scored[1].score, 100)
    clock.advance("1h")
    assert(tickets.open(store, { tenant = "acme", subject = "down", requester = "a@b.c" }))
    clock.advance("1h")
    local second = run(p, "acme").scored[1]
    assert.equal(second.score, 91.4, "one open ticket costs 0.2 of 15 points out of 35")
    assert.count(fired("success.health_dropped"), 0, "8.6 points is no drop")
    clock.advance("1h")
    assert(events.append(store, { { type = "billing.payment.failed", tenant = "acme", data = {} } }))
    local third = run(p, "acme").scored[1]
    assert.truthy(third.dropped)
    local d = fired("success.health_dropped")
    assert.count(d, 1)
    assert.equal(d[1].tenant, "acme")
    assert.equal(d[1].previous, second.score)
    assert.equal(d[1].score, third.score)
    assert.count(health.history(store, "acme"), 3)
    assert.equal(health.latest(store, "acme")[1].score, third.score)
  end)

  it("scores every tenant seen lately on its schedule", function()
    usage("acme", { 1, 1 })
    usage("beta", { 2, 2 })
    local r = p:handle({ type = "policy.schedule", data = { policy = "success.health" } })
    assert.count(r.scored, 2)
    assert.count(health.latest(store), 2)
  end)

  it("refuses a weight for a signal it does not have, naming it", function()
    local schema = require "steward.runtime.policy.schema"
    local ok, err = schema.apply({ file = "health.lua", name = "success.health", config_decl = p.def.config_decl },
      { env = { ["success.health"] = { weights = { happiness = 5 } } } })
    assert.falsy(ok)
    assert.match(err, "happiness: no such signal")
  end)
end)
