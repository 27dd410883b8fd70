-- Spec for policies/billing/usage.lua: each billing.usage event recorded once per
-- (subscription, transaction_id); handled again (after a crash) it records nothing twice; the
-- same id from another event is a duplicate (announced); an event whose subscription is gone
-- is refused as the outcome, not retried. handle_batch (the queued events of a subscription in
-- one run) does the same for each event, bills the fees paid in advance once each, and raises
-- on a store error leaving nothing behind. Run with `steward test policies/billing`.
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

  -- the dispatcher's batch run: the events as it hands them over, in log order
  local function batch(p_, list) return p_.def.handle_batch(list, p_:ctx({ event_id = list[1].id })) end

  it("records a batch: each event once, a duplicate inside it announced, a replay recording nothing twice", function()
    local list = { usage_event("b1", sub.id, "t1"), usage_event("b2", sub.id, "t2"), usage_event("b3", sub.id, "t1"),
                   usage_event("b4", "sub-gone", "t4") }
    local out = batch(p, list)
    assert.equal(out[1].recorded, "t1")
    assert.equal(out[2].recorded, "t2")
    assert.equal(out[3].duplicate, "t1")
    assert.truthy(tostring(out[4].refused):find("no subscription sub%-gone"))
    assert.equal(usage.count(store, { subscription = sub.id }), 2)
    assert.count(fired("billing.usage.duplicate"), 1)
    out = batch(p, list) -- run again after a crash
    assert.equal(out[1].recorded, "t1")
    assert.equal(out[3].duplicate, "t1")
    assert.equal(usage.count(store, { subscription = sub.id }), 2)
    assert.count(fired("billing.usage.duplicate"), 1) -- its id is the event's: announced once
    assert.equal(p.def.batch_max, 500)
  end)

  it("bills a batch's fees paid in advance once per event, and none on a plan without them", function()
    assert(require("steward.billing.plans").create(store, { code = "adv", interval = "monthly", amount = "0",
      currency = "EUR", charges = { { id = "calls", metric = "calls", model = "standard", pay_in_advance = true,
      properties = { amount = "0.50" } } } }))
    local adv = assert(subscriptions.create(store, { tenant = "acme", plan = "adv" }))
    local list = { usage_event("a1", adv.id, "t1"), usage_event("a2", adv.id, "t2") }
    local out = batch(p, list)
    assert.truthy(out[1].invoice)
    assert.truthy(out[2].invoice)
    assert.not_equal(out[1].invoice, out[2].invoice)
    local again = batch(p, list)
    assert.equal(again[1].invoice, out[1].invoice) -- a replay finds the invoices made
    assert.equal(again[2].invoice, out[2].invoice)
    local plain = batch(p, { usage_event("p1", sub.id, "t1") })
    assert.equal(plain[1].recorded, "t1")
    assert.equal(plain[1].invoice, nil)
  end)

  it("raises on a store error in a batch, recording nothing (each event then runs alone)", function()
    local real = store.db
    store.db = setmetatable({ batch = function() return nil, "disk I/O error" end },
      { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
    local ok, err = pcall(batch, p, { usage_event("x1", sub.id, "t1"), usage_event("x2", sub.id, "t1") })
    store.db = real
    assert.falsy(ok)
    assert.truthy(tostring(err):find("disk I/O error", 1, true))
    assert.equal(usage.count(store, { subscription = sub.id }), 0)
    assert.count(fired("billing.usage.duplicate"), 0)
  end)
end)
