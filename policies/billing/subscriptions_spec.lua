-- Spec for policies/billing/subscriptions.lua on the fake clock: a subscription dated later
-- starts when its timer fires; a downgrade starts at the period's end and ends the one it
-- replaces; a canceled one's timer is gone. Run with `steward test policies/billing`.
local subscriptions = require "steward.billing.subscriptions"

local DAY = 86400

describe("billing.subscriptions", function()
  before_each(function()
    policy.load("policies/billing/subscriptions.lua")
    local record = require "steward.tenants.record"
    require("steward.tenants").use(store)
    assert(record.insert(store, assert(record.check_new({ id = "acme", name = "Acme" })), clock.now()))
    assert(require("steward.billing.plans").create(store, { code = "pro", interval = "monthly", amount = "49" }))
    assert(require("steward.billing.plans").create(store, { code = "basic", interval = "monthly", amount = "19" }))
  end)

  it("starts a pending subscription when its timer fires", function()
    local s = assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = clock.now() + 2 * DAY }))
    assert.equal(s.state, "pending")
    clock.advance("1d")
    assert.equal(subscriptions.get(store, s.id).state, "pending")
    clock.advance("1d")
    assert.equal(subscriptions.get(store, s.id).state, "active")
    assert.count(emitted("billing.subscription.activated"), 1)
  end)

  it("starts a downgrade at the period's end, ending the subscription it replaces", function()
    local s = assert(subscriptions.create(store, { tenant = "acme", plan = "pro" }))
    local d = assert(subscriptions.downgrade(store, s.id, "basic"))
    assert.equal(d.state, "pending")
    clock.advance(d.started - clock.now())
    assert.equal(subscriptions.get(store, d.id).state, "active")
    local old = subscriptions.get(store, s.id)
    assert.equal(old.state, "terminated")
    assert.equal(old.terminated, d.started)
  end)

  it("never starts a canceled one", function()
    local s = assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = clock.now() + DAY }))
    assert(subscriptions.cancel(store, s.id))
    assert.count(clock.pending(), 0)
    clock.advance("2d")
    assert.equal(subscriptions.get(store, s.id).state, "canceled")
  end)
end)
