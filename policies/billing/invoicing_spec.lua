-- Spec for policies/billing/invoicing.lua on the fake clock, with h4's real plans,
-- subscriptions and usage: the schedule builds the draft of a period that ended, late usage
-- inside the grace window lands in it, it is finalized with its number once the grace window
-- passes; an in-advance plan is invoiced at its period's start; a termination gets its final
-- invoice at once; running again changes nothing. Run with `steward test policies/billing`.
local invoices = require "steward.billing.invoices"
local metrics = require "steward.billing.metrics"
local plans = require "steward.billing.plans"
local subscriptions = require "steward.billing.subscriptions"
local usage = require "steward.billing.usage"
local json = require "steward.json"

local JAN = 1767225600 -- 2026-01-01T00:00:00Z
local FEB = 1769904000
local DAY = 86400

local function tenant(id)
  require "steward.runtime.store.tenants"
  assert(store:migrate())
  assert(store.db:exec("INSERT INTO tenants (id, name, plan, state, contact, branding, config, limits, created, " ..
    "updated, version) VALUES ($1, $1, 'pro', 'active', '{}', '{}', $2, '{}', 0, 0, 1)", id,
    json.encode({ billing = { country = "US", legal_name = id .. " Inc." } })))
  require("steward.tenants.record").forget()
end

local function schedule(p)
  return p:handle({ type = "policy.schedule", time = clock.now(), data = { policy = "billing.invoicing" } })
end

local function calls(sub, n, at, prefix)
  for i = 1, n do
    assert(usage.record(store, { id = (prefix or "u") .. sub.id .. i, time = at + i, data = {
      transaction_id = (prefix or "t") .. i, subscription = sub.id, code = "api_calls", timestamp = at + i } }, at + i))
  end
end

describe("billing.invoicing", function()
  local p
  before_each(function()
    clock.set(JAN - 10 * DAY)
    tenant("acme")
    assert(metrics.create(store, { code = "api_calls", name = "API calls", aggregation = "count" }))
    assert(plans.create(store, { code = "pro", name = "Pro", interval = "monthly", amount = "100", currency = "USD",
      charges = { { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.05" } } } }))
    assert(plans.create(store, { code = "ahead", name = "Ahead", interval = "monthly", amount = "30", currency = "USD",
      pay_in_advance = true,
      charges = { { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.01" } } } }))
    p = policy.load("policies/billing/invoicing.lua")
  end)

  it("builds a period's draft when it ends, and finalizes it once the grace window has passed", function()
    clock.set(JAN)
    local sub = assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = JAN }, JAN))
    calls(sub, 40, JAN + DAY)
    clock.set(FEB + 60)
    local r = schedule(p)
    assert.equal(r.built, 1)
    local id = invoices.id_of(sub.id, { from = JAN })
    local inv = assert(invoices.get(store, id))
    assert.equal(inv.state, "draft")
    assert.equal(tostring(inv.total), "102")
    assert.count(emitted("billing.invoice.created"), 1)
    -- a late event inside the 3-day grace window is recorded and lands in the draft
    assert.equal(usage.record(store, { id = "late1", time = FEB + DAY, data = { transaction_id = "late1",
      subscription = sub.id, code = "api_calls", timestamp = FEB - 10 } }, FEB + DAY), "recorded")
    clock.set(FEB + 3 * DAY + 120)
    schedule(p)
    inv = assert(invoices.get(store, id))
    assert.equal(inv.state, "finalized")
    assert.equal(inv.number, "INV-000001")
    assert.equal(tostring(inv.total), "102.05")
    assert.count(emitted("billing.invoice.finalized"), 1)
    -- again: nothing new
    schedule(p)
    assert.count(emitted("billing.invoice.created"), 1)
    assert.equal(invoices.json(assert(invoices.get(store, id))), invoices.json(inv))
  end)

  it("prorates a subscription that started mid-period", function()
    clock.set(JAN + 14 * DAY)
    local sub = assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = JAN + 14 * DAY }))
    clock.set(FEB + 60)
    schedule(p)
    local inv = assert(invoices.get(store, invoices.id_of(sub.id, { from = JAN })))
    assert.equal(tostring(inv.lines[1].amount), "54.84") -- 17 of 31 days
  end)

  it("invoices an in-advance plan at its period's start, with the usage of the period before", function()
    clock.set(JAN)
    local sub = assert(subscriptions.create(store, { tenant = "acme", plan = "ahead", started = JAN }, JAN))
    schedule(p)
    local jan = assert(invoices.get(store, invoices.id_of(sub.id, { from = JAN })))
    assert.equal(tostring(jan.total), "30")
    calls(sub, 300, JAN + DAY)
    clock.set(FEB + 60)
    schedule(p)
    local feb = assert(invoices.get(store, invoices.id_of(sub.id, { from = FEB })))
    assert.equal(tostring(feb.total), "33") -- February's fee + January's 300 calls at 0.01
    assert.equal(feb.lines[2].from, JAN)
  end)

  it("credits the unused part of an in-advance fee when the subscription terminates early", function()
    clock.set(JAN)
    local sub = assert(subscriptions.create(store, { tenant = "acme", plan = "ahead", started = JAN }, JAN))
    schedule(p)
    local jan = assert(invoices.finalize(store, invoices.id_of(sub.id, { from = JAN }), JAN + 60))
    assert.equal(jan.number, "INV-000001")
    calls(sub, 100, JAN + DAY)
    clock.set(JAN + 10 * DAY)
    assert(subscriptions.terminate(store, sub.id, clock.now()))
    p:handle({ type = "billing.subscription.terminated", time = clock.now(), data = { subscription = sub.id } })
    local final = assert(invoices.get(store, invoices.id_of(sub.id, { from = JAN }, true)))
    assert.equal(tostring(final.total), "1") -- the usage up to the termination: 100 calls at 0.01
    local notes = require("steward.billing.credit_notes").list(store, { invoice = jan.id })
    assert.count(notes, 1)
    assert.equal(tostring(notes[1].total), "20.32") -- 30 - 10 of 31 days (9.68)
    -- again: still one credit note
    p:handle({ type = "billing.subscription.terminated", time = clock.now(), data = { subscription = sub.id } })
    assert.count(require("steward.billing.credit_notes").list(store, { invoice = jan.id }), 1)
  end)

  it("bills a terminated subscription's last part at once", function()
    clock.set(JAN)
    local sub = assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = JAN }, JAN))
    calls(sub, 20, JAN + DAY)
    clock.set(JAN + 10 * DAY)
    assert(subscriptions.terminate(store, sub.id, clock.now()))
    p:handle({ type = "billing.subscription.terminated", time = clock.now(), data = { subscription = sub.id } })
    local inv = assert(invoices.get(store, invoices.id_of(sub.id, { from = JAN })))
    assert.equal(tostring(inv.lines[1].amount), "32.26") -- 10 of 31 days
    assert.equal(tostring(inv.subtotal), "33.26")
  end)

  it("invoices an upgrade's two parts, each prorated: the old plan to the upgrade, the new from it", function()
    assert(plans.create(store, { code = "max", name = "Max", interval = "monthly", amount = "200", currency = "USD" }))
    clock.set(JAN)
    local sub = assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = JAN }, JAN))
    clock.set(JAN + 10 * DAY)
    local new = assert(subscriptions.upgrade(store, sub.id, "max", clock.now()))
    p:handle({ type = "billing.subscription.upgraded", time = clock.now(), data = { subscription = new.id } })
    local old = assert(invoices.get(store, invoices.id_of(sub.id, { from = JAN })))
    assert.equal(tostring(old.lines[1].amount), "32.26") -- 10 of 31 days of 100, billed at once
    clock.set(FEB + 60)
    schedule(p)
    local inv = assert(invoices.get(store, invoices.id_of(new.id, { from = JAN })))
    assert.equal(tostring(inv.lines[1].amount), "135.48") -- 21 of 31 days of 200
  end)

  it("does nothing in a dry run", function()
    clock.set(JAN)
    assert(subscriptions.create(store, { tenant = "acme", plan = "pro", started = JAN }, JAN))
    clock.set(FEB + 60)
    local r = p:handle({ type = "policy.schedule", time = clock.now(), data = {} }, { dry_run = true })
    assert.truthy(r.would)
    assert.count(invoices.list(store, {}), 0)
  end)
end)
