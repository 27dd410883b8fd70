-- Spec for policies/billing/dunning.lua on the fake clock: a failed attempt arms the next one
-- after its delay (once, however often the handler runs) and tells the tenant; the last one
-- gives up, suspends the tenant and announces billing.dunning.exhausted; a retry of an invoice
-- paid meanwhile charges nothing. Run with `steward test policies/billing`.
local dunning = require "steward.billing.dunning"
local payments = require "steward.billing.payments"
local notify = require "steward.notify"
local tenants = require "steward.tenants"

local fired = emitted -- steward test: the data of the events of a type
local invoices = assert(loadfile("tests/support/billing_invoices_fixture.lua"))()

local function failed(invoice, attempt)
  return { type = "billing.payment.failed", tenant = "acme",
           data = { invoice = invoice, attempt = attempt, amount = "42", currency = "USD", message = "Your card was declined." } }
end

describe("billing.dunning", function()
  local p
  before_each(function()
    payments.use_invoices(invoices)
    tenants.use(store)
    require "steward.runtime.store.tenants"
    assert(store:migrate())
    assert(store:sql([[INSERT INTO tenants (id, name, plan, state, reason, contact, branding, config, limits, created, updated, version)
      VALUES ('acme', 'Acme', 'basic', 'active', NULL, '{}', '{}', '{}', '{}', 1, 2, 1)]]))
    invoices.put({ id = "inv-1", number = "INV-0001", tenant = "acme", currency = "USD", total = "42" })
    assert(dunning.configure({ dunning = { retries = { "1h", "1d" } } }))
    p = policy.load("policies/billing/dunning.lua")
  end)

  it("retries after the first delay and tells the tenant", function()
    local r = p:handle(failed("inv-1", 1))
    assert.equal(r.next_retry, clock.now() + 3600)
    assert.equal(r.notified, "sent")
    p:handle(failed("inv-1", 1))
    local rows = store.db:query("SELECT event FROM timers")
    assert.count(rows, 1)
    local h = notify.history({ channel = "billing-dunning" })
    assert.count(h, 1)
    assert.equal(h[1].key, "billing.dunning:inv-1:1")
  end)

  it("waits the second delay after the second failure", function()
    local r = p:handle(failed("inv-1", 2))
    assert.equal(r.next_retry, clock.now() + 86400)
    assert.equal(dunning.state("inv-1").state, "retrying")
  end)

  it("gives up after the last retry and suspends the tenant", function()
    local r = p:handle(failed("inv-1", 3))
    assert.truthy(r.exhausted)
    assert.truthy(r.suspended)
    assert.equal(tenants.state("acme"), "suspended")
    assert.count(fired("billing.dunning.exhausted"), 1)
    assert.equal(fired("billing.dunning.exhausted")[1].reason, "unpaid invoice INV-0001")
  end)

  it("does not suspend when suspend is off", function()
    assert(dunning.configure({ dunning = { retries = { "1h" }, suspend = false } }))
    local r = p:handle(failed("inv-1", 2))
    assert.truthy(r.exhausted)
    assert.falsy(r.suspended)
    assert.equal(tenants.state("acme"), "active")
  end)

  it("charges nothing when the invoice was paid before the retry", function()
    invoices.pay("inv-1", { id = "pi_x", provider = "stripe", amount = require("steward.decimal").new("42"), at = clock.now() })
    local r = p:handle({ type = "billing.dunning.retry", tenant = "acme", data = { invoice = "inv-1", attempt = 2 } })
    assert.equal(r.status, "paid")
  end)

  it("refuses an event without its invoice and attempt", function()
    assert.error(function() p:handle({ type = "billing.payment.failed", tenant = "acme", data = {} }) end,
      "data: {invoice, attempt} expected")
  end)
end)
