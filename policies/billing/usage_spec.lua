-- Spec for policies/billing/usage.lua: each billing.usage event recorded once per
-- (subscription, transaction_id); handled again (after a crash) it records nothing twice; the
-- same id from another event is a duplicate (announced); an event whose subscription is gone
-- is refused as the outcome, not retried. Run with `steward test policies/billing`.
local usage = require "steward.billing.usage"
local subscriptions = require "steward.billing.subscriptions"

local fired = emitted -- steward test: the data of the events of a type

local function setup()
  local record = require "steward.tenants.record"
  require("steward.tenants").use(store)
  assert(record.insert(store, assert(record.check_new({ id = "acme", name = "Acme" })), clock.now()))
  assert(require("steward.billing.metrics").create(store, { code = "calls", aggregation = "count" }))
  assert(require("steward.billing.plans").create(store, { code = "pro", interval = "monthly", amount = "10" }))
  return assert(subscriptions.create(store, { tenant = "acme", plan = "pro" }))
end

local function usage_event(id, sub, tx, t)
  return { id = id, type = "billing.usage", tenant = "acme", time = t or clock.now(), source = "steward.billing.usage",
           data = { transaction_id = tx, subscription = sub, code = "calls", timestamp = clock.now(), properties = {} } }
end

describe("billing.usage", function()
  local p, sub
  before_each(function()
    p = policy.load("policies/billing/usage.lua")
    sub = setup()
  end)

  it("records a usage event once", function()
    local ev = usage_event("billing.usage:" .. sub.id .. ":t1", sub.id, "t1")
    local r = p:handle(ev)
    assert.equal(r.recorded, "t1")
    r = p:handle(ev)
    assert.equal(r.recorded, "t1") -- handled again after a crash: its own row, nothing more
    assert.equal(usage.count(store, { subscription = sub.id }), 1)
    assert.count(fired("billing.usage.duplicate"), 0)
  end)

  it("reports the same transaction id from another event as a duplicate", function()
    p:handle(usage_event("e1", sub.id, "t1"))
    local r = p:handle(usage_event("e2", sub.id, "t1"))
    assert.equal(r.duplicate, "t1")
    assert.equal(usage.count(store, { subscription = sub.id }), 1)
    assert.count(fired("billing.usage.duplicate"), 1)
  end)

  it("refuses an event for a subscription that does not exist, without retrying", function()
    local r = p:handle(usage_event("e3", "sub-gone", "t1"))
    assert.truthy(tostring(r.refused):find("no subscription sub%-gone"))
  end)
end)
