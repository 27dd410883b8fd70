-- Spec for policies/billing/churn_risk.lua on the fake clock (2026-01-01, a Thursday): a
-- downgrade, a subscription's end told apart as contraction or churn from the real
-- subscription history, a failed payment adding to the week's score, a replayed event
-- signalling nothing twice, the Monday usage check (a fall of usage_drop % week over week
-- among tenants with min_events), and the config's weights checked by name.
-- Run with `steward test policies/billing`.
local plans = require "steward.billing.plans"
local subscriptions = require "steward.billing.subscriptions"
local churn = require "steward.billing.churn"
local events = require "steward.runtime.events"

local DAY = 86400

local function ev(type_, tenant, data)
  return { type = type_, tenant = tenant, time = clock.now(), data = data or {} }
end

describe("billing.churn_risk", function()
  local p
  before_each(function() p = policy.load("policies/billing/churn_risk.lua") end)

  it("signals a downgrade once a week, and a failed payment on top", function()
    local r = p:handle(ev("billing.subscription.downgraded", "acme", { subscription = "sub-2", plan = "lite", previous_plan = "pro" }))
    assert.equal(r.reason, "downgrade")
    assert.equal(r.score, 30)
    local d = emitted("billing.churn_risk")
    assert.count(d, 1)
    assert.same(d[1].reasons, { "downgrade" })
    assert.equal(d[1].detail.previous_plan, "pro")
    -- the same event handled again (a retry after a crash) signals nothing new
    r = p:handle(ev("billing.subscription.downgraded", "acme", { subscription = "sub-2" }))
    assert.falsy(r.fresh)
    assert.count(emitted("billing.churn_risk"), 1)
    clock.advance("1h")
    r = p:handle(ev("billing.payment.failed", "acme", { invoice = "inv-1", attempt = 1 }))
    assert.equal(r.score, 70)
    d = emitted("billing.churn_risk")
    assert.count(d, 2)
    assert.same(d[2].reasons, { "downgrade", "payment_failed" })
    assert.equal(d[2].detail.invoice, "inv-1")
  end)

  it("tells a contraction from churn by what the tenant still pays", function()
    -- the tenant's record alone (no provisioning saga running behind the spec)
    assert(require("steward.tenants.record").insert(store, { id = "acme", name = "Acme", plan = "basic" }, clock.now()))
    assert(plans.create(store, { code = "pro", name = "Pro", interval = "monthly", amount = "100", currency = "USD" }))
    local a = assert(subscriptions.create(store, { tenant = "acme", plan = "pro" }))
    local b = assert(subscriptions.create(store, { tenant = "acme", plan = "pro" }))
    clock.advance("2d")
    assert(subscriptions.terminate(store, a.id))
    local r = p:handle(ev("billing.subscription.terminated", "acme", { subscription = a.id, plan = "pro" }))
    assert.equal(r.reason, "contraction")
    clock.advance("1h")
    assert(subscriptions.terminate(store, b.id))
    r = p:handle(ev("billing.subscription.terminated", "acme", { subscription = b.id, plan = "pro" }))
    assert.equal(r.reason, "churn")
    assert.same(r.reasons, { "churn", "contraction" })
    assert.equal(r.score, 90)
  end)

  it("follows the weights of the config", function()
    p = policy.load("policies/billing/churn_risk.lua", { config = { weights = { downgrade = 5, payment_failed = 100 } } })
    assert.equal(p:handle(ev("billing.subscription.downgraded", "bolt")).score, 5)
    assert.equal(p:handle(ev("billing.payment.failed", "bolt")).score, 100, "capped at 100")
  end)

  it("checks usage on Mondays: a fall of usage_drop % week over week", function()
    clock.advance(18 * DAY + 6 * 3600) -- Monday 2026-01-19 06:00
    local monday = clock.now() - 6 * 3600
    local list = {}
    local function used(tenant, n, from)
      for i = 1, n do list[#list + 1] = { type = "billing.usage", tenant = tenant, time = from + i * 60, data = {} } end
    end
    used("acme", 40, monday - 14 * DAY); used("acme", 8, monday - 7 * DAY)   -- -80 %
    used("bolt", 40, monday - 14 * DAY); used("bolt", 36, monday - 7 * DAY)  -- -10 %
    used("tiny", 5, monday - 14 * DAY)                                       -- too small to judge
    assert(events.append(store, list))
    local r = p:handle({ type = "policy.schedule", time = clock.now(), data = { policy = "billing.churn_risk" } })
    assert.count(r.signals, 1)
    assert.equal(r.signals[1].tenant, "acme")
    local d = emitted("billing.churn_risk")
    assert.count(d, 1)
    assert.equal(d[1].reason, "usage_drop")
    assert.equal(d[1].detail.fall, 80)
    assert.equal(d[1].week, "2026-01-19")
    -- the slot run again (a restart) signals nothing twice
    p:handle({ type = "policy.schedule", time = clock.now(), data = { policy = "billing.churn_risk" } })
    assert.count(emitted("billing.churn_risk"), 1)
    assert.count(churn.signals(store, { tenant = "acme" }), 1)
  end)

  it("refuses a weight for a reason it does not have, naming it", function()
    local schema = require "steward.runtime.policy.schema"
    local ok, err = schema.apply({ file = "churn_risk.lua", name = "billing.churn_risk", config_decl = p.def.config_decl },
      { env = { ["billing.churn_risk"] = { weights = { boredom = 5 } } } })
    assert.falsy(ok)
    assert.match(err, "boredom: no such reason")
  end)

  it("shows its default weights as plain data (GET /v1/policies, the REPL)", function()
    local d = p.def.config_decl.weights.default
    local shown = require("steward.runtime.config").redact(d)
    assert.equal(shown.churn, 60)
    assert.equal(shown.payment_failed, 40)
  end)
end)
