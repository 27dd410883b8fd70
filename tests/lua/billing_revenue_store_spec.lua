-- steward.billing.revenue over a real store (tests/support/domain_spec.lua; STEWARD_TEST_STORE
-- runs it on PostgreSQL): revenue.report reads every non-draft invoice of a tenant — 1,201 of
-- them, past invoices.list's 1,000 and across its own pages of 500 — and the credit notes made
-- by steward.billing.credit_notes; drafts and other tenants stay out.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local revenue = require "steward.billing.revenue"
local invoices = require "steward.billing.invoices"
local record = require "steward.billing.invoice_record"
local credit_notes = require "steward.billing.credit_notes"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st
local D = decimal.new
local JAN1 = 1767225600

local function row(tenant, i, state)
  local from = JAN1 + (i % 300) * 86400
  local inv = { id = string.format("inv-%s-%05d", tenant, i), tenant = tenant, subscription = "sub-" .. tenant,
    currency = "EUR", series = "INV", period = { from = from, to = from + 86400 }, issued = from + 86400,
    due = from + 31 * 86400, finalized = from + 86400,
    lines = { { id = "l1", kind = "charge", amount = D("1.00"), from = from, to = from + 86400 } },
    subtotal = D("1.00"), discounts = {}, discount_total = D("0"), taxes = {}, tax_total = D("0"), credits = {},
    credit_total = D("0"), total = D("1.00"), customer = { name = tenant } }
  return { "INSERT INTO billing_invoices (id, tenant, subscription, period_from, period_to, state, series, seq, number, " ..
    "currency, total, body, created, updated, version) VALUES ($1, $2, $3, $4, $5, $6, 'INV', NULL, $7, 'EUR', '1.00', $8, $9, $9, 1)",
    inv.id, tenant, inv.subscription, inv.period.from, inv.period.to, state, inv.id, record.stored(inv), inv.finalized }
end

local function main()
  assert(invoices.ready(st))
  local batch = {}
  for i = 1, 1201 do batch[#batch + 1] = row("acme", i, "finalized") end
  for i = 1, 3 do batch[#batch + 1] = row("acme", 5000 + i, "draft") end
  for i = 1, 5 do batch[#batch + 1] = row("globex", i, "finalized") end
  assert(st.db:batch(batch))
  local cn, err = credit_notes.create(st, "inv-acme-00001", { amount = "0.40", reason = "partial refund" }, JAN1 + 40 * 86400)
  t.ok(cn, "a credit note of 0.40 on one invoice: " .. tostring(err))

  local rows
  rows, err = revenue.report { store = st, tenant = "acme" }
  t.ok(rows, "report over the store: " .. tostring(err))
  local inv, rec = decimal.zero, decimal.zero
  for _, r in ipairs(rows or {}) do inv, rec = inv + r.invoiced, rec + r.recognized end
  t.is(decimal.string(inv), "1200.6", "1,201 invoices of 1.00, less the credit note's 0.40: every page read, drafts out")
  t.is(decimal.string(rec), "1200.6", "... all of it recognized")
  rows = assert(revenue.report { store = st })
  inv = decimal.zero
  for _, r in ipairs(rows) do inv = inv + r.invoiced end
  t.is(decimal.string(inv), "1205.6", "without a tenant: globex's 5.00 too")
  rows = assert(revenue.report { store = st, tenant = "nobody" })
  t.is(#rows, 0, "a tenant without invoices: no rows")

  -- a long history gives the loop back: another task runs while the report computes
  local task = require "steward.task"
  local many = {}
  for i = 1, 1000 do
    many[i] = { id = "m" .. i, tenant = "acme", currency = "EUR", state = "finalized", finalized = JAN1,
      period = { from = JAN1, to = JAN1 + 86400 }, subtotal = D("1.00"), lines = { { kind = "charge", amount = D("1.00") } } }
  end
  local done, ticks = false, 0
  local other = task.spawn(function() while not done do ticks = ticks + 1; task.yield() end end)
  local before = ticks
  rows = assert(revenue.report { invoices = many, credit_notes = {} })
  local during = ticks - before
  done = true
  other:join()
  t.ok(during >= 9, "another task ran " .. during .. " times while 1,000 invoices were reported (every 100)")
end

spec.run(main)
