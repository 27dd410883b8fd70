-- Charges paid in advance (Lago's Fees::CreatePayInAdvanceService and
-- Invoices::CreatePayInAdvanceChargeService): each recorded usage event of such a charge gets a
-- fee at once — the period's price with the event minus without it — on an invoice of its own,
-- finalized with its number; the fee is once per (subscription, transaction_id), so billing the
-- same event again (a replay after a crash) gives the same invoice; the period's invoice never
-- bills those units again. Amounts are Lago's documented examples. Real store (SQLite in memory
-- or STEWARD_TEST_STORE); the subscription side is a fixture.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local store = require "steward.runtime.store"
local json = require "steward.json"
require("steward.log").set_level("error")

local JAN = { from = 1767225600, to = 1769904000 }
local DAY = 86400

-- ---- the pure part: invoice_advance.lines with Lago's examples ----
local advance = require "steward.billing.invoice_advance"
local GP = { code = "gp", name = "GP", interval = "monthly", amount = "0", currency = "USD", version = 1, charges = {
  { id = "tx", metric = "tx_amount", model = "graduated_percentage", pay_in_advance = true,
    properties = { graduated_percentage_ranges = {
      { from_value = 0, to_value = 1000, rate = "1", flat_amount = "200" },
      { from_value = 1001, to_value = 10000, rate = "2", flat_amount = "300" },
      { from_value = 10001, rate = "3", flat_amount = "400" } } } } } }
local TXM = { code = "tx_amount", name = "Transactions", aggregation = "sum", field = "amount" }
local evs = {}
local fees = {}
for i, amount in ipairs({ "500", "550", "4000" }) do
  local ev = { transaction_id = "tx" .. i, timestamp = JAN.from + i * 3600, properties = { amount = amount } }
  local lines = advance.lines(GP, TXM, ev, evs, JAN, "USD")
  fees[i] = lines[1] and lines[1].amount:format(2)
  evs[#evs + 1] = ev
end
t.is(table.concat(fees, " "), "205.00 306.00 80.00",
  "Lago's docs (graduated percentage paid in advance): transactions of $500, $550, $4,000 pay $205, $306, $80")
local again = advance.lines(GP, TXM, evs[2], evs, JAN, "USD")
t.is(again[1].amount:format(2), "306.00", "an event's fee depends on the usage before it in time, whatever was recorded since")
local STD = { code = "std", name = "Std", interval = "monthly", amount = "0", currency = "USD", version = 1, charges = {
  { id = "calls", metric = "calls", model = "standard", pay_in_advance = true, properties = { amount = "0.2" } },
  { id = "arrears", metric = "calls", model = "standard", properties = { amount = "5" } } } }
local CALLS = { code = "calls", name = "API calls", aggregation = "count" }
local l = advance.lines(STD, CALLS, { transaction_id = "c5", timestamp = JAN.from + 9, properties = {} },
  { { transaction_id = "c1", timestamp = JAN.from + 1, properties = {} }, { transaction_id = "c2", timestamp = JAN.from + 2, properties = {} } },
  JAN, "USD")
t.is(#l, 1, "only the charges paid in advance of the event's metric")
t.is(l[1].amount:format(2), "0.20", "standard: 0.2 per unit, the event's unit (Lago's apply_pay_in_advance spec)")
t.is(l[1].details.transaction_id, "c5", "the line names the event behind it")

-- ---- the store side: invoices.bill_in_advance ----
local subs = { s1 = { id = "s1", tenant = "acme", plan = "std", plan_version = 1, started = JAN.from - 40 * DAY,
                      anchor = JAN.from, billing_time = "calendar", state = "active" } }
package.loaded["steward.billing.subscriptions"] = { get = function(_, id) return subs[id] or false end }
package.loaded["steward.billing.plans"] = { get = function() return STD end }
package.loaded["steward.billing.metrics"] = { get = function(_, code) return code == "calls" and CALLS or false end }
require("steward.billing.config").current.currency = "USD"
require "steward.runtime.store.tenants"
local st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or "sqlite::memory:"))
assert(st:migrate())
store.set_default(st)
require("steward.tenants").use(st)
require "steward.billing.schema"
local usage = require "steward.billing.usage"
assert(usage.ready(st))
local invoices = require "steward.billing.invoices"
assert(st.db:exec("INSERT INTO tenants (id, name, plan, state, contact, branding, config, limits, created, updated, version) " ..
  "VALUES ('acme', 'Acme', 'pro', 'active', '{}', '{}', $1, '{}', 0, 0, 1)", json.encode({ billing = { legal_name = "Acme" } })))
require("steward.tenants.record").forget()
local function record(i)
  assert(st.db:exec("INSERT INTO billing_usage (subscription, transaction_id, tenant, code, happened, properties, received, " ..
    "event_id) VALUES ('s1', $1, 'acme', 'calls', $2, '{}', $2, $3)", "t" .. i, JAN.from + i * 60, "e" .. i))
end

local made = {}
for i = 1, 3 do
  record(i)
  made[i] = assert(invoices.bill_in_advance(st, "s1", "t" .. i, JAN.from + i * 60 + 1))
end
t.is(made[1].state, "finalized", "the fee's invoice is finalized at once")
t.is(made[1].id, "inv_s1_adv_t1", "its id derives from (subscription, transaction_id)")
t.is(table.concat({ made[1].number, made[2].number, made[3].number }, " "), "INV-000001 INV-000002 INV-000003",
  "three events: three invoices, numbered in the series")
t.is(made[3].total:format(2), "0.20", "each bills its event's fee")
t.is(#made[3].lines, 1, "one line: the charge paid in advance")
t.is(made[3].lines[1].kind, "charge", "a charge line")
local same = assert(invoices.bill_in_advance(st, "s1", "t2", JAN.from + 9999))
t.is(invoices.json(same), invoices.json(made[2]), "billing the same event again (a replay) answers the same invoice")
local list = assert(invoices.list(st, { subscription = "s1", limit = 100 }))
t.is(#list, 3, "and makes no other invoice")

-- the period's invoice bills the arrears charge on all three events and not the in-advance one again
local period = assert(invoices.build(st, "s1", JAN, { now = JAN.to + 60 }))
local ids = {}
for _, x in ipairs(period.lines) do ids[#ids + 1] = x.id end
t.is(table.concat(ids, " "), "subscription charge:arrears", "the period invoice: the fee line and the arrears charge only")
t.is(period.subtotal:format(2), "15.00", "3 calls at 5 in arrears; the in-advance 0.20s are not billed again")
local fin = assert(invoices.finalize(st, period.id, JAN.to + 4 * DAY))
t.is(fin.number, "INV-000004", "the period invoice takes the next number")

-- a metric without an in-advance charge: no fee, no invoice
STD.charges[1].metric = "other"
record(4)
t.is(invoices.bill_in_advance(st, "s1", "t4", JAN.from + 5000), false, "no charge paid in advance: no fee")
STD.charges[1].metric = "calls"
local ok, err = invoices.bill_in_advance(st, "s1", "nope")
t.ok(ok == nil and tostring(err):match("^not found: usage nope"), "an unrecorded event: " .. tostring(err))
t.raises(function() invoices.bill_in_advance(st, "s1", 5) end, "transaction_id", "misuse names the argument")

-- an in-advance invoice left a draft (its finalization failed): refresh keeps its fee, never the
-- period's lines; billing the event again finalizes it
record(6)
local d6 = assert(invoices.bill_in_advance(st, "s1", "t6", JAN.from + 6000))
assert(st.db:exec("UPDATE billing_invoices SET state = 'draft', seq = NULL, number = NULL WHERE id = $1", d6.id))
local r6 = assert(invoices.refresh(st, d6.id, JAN.from + 6100))
t.is(r6.id .. " " .. #r6.lines .. " " .. r6.lines[1].id, d6.id .. " 1 charge:calls:advance", "refresh of an in-advance draft keeps its fee")
local f6 = assert(invoices.bill_in_advance(st, "s1", "t6", JAN.from + 6200))
t.is(f6.state, "finalized", "billing the event again finalizes the draft")
-- invoiceable = false (Lago): the fees are made at once but kept off invoices, and the period's
-- invoice regroups them on one line; billing the same event again keeps no second fee
STD.charges[1].invoiceable = false
subs.s2 = { id = "s2", tenant = "acme", plan = "std", plan_version = 1, started = JAN.from - 40 * DAY, anchor = JAN.from,
            billing_time = "calendar", state = "active" }
for i = 1, 2 do
  assert(st.db:exec("INSERT INTO billing_usage (subscription, transaction_id, tenant, code, happened, properties, received, " ..
    "event_id) VALUES ('s2', $1, 'acme', 'calls', $2, '{}', $2, $3)", "k" .. i, JAN.from + i * 60, "k" .. i))
  t.is(invoices.bill_in_advance(st, "s2", "k" .. i, JAN.from + i * 60 + 1), false, "kept off invoices: no invoice for event k" .. i)
end
t.is(invoices.bill_in_advance(st, "s2", "k2", JAN.from + 999), false, "billed again: still none")
local kept = assert(st.db:query("SELECT transaction_id, CAST(amount AS TEXT) AS amount FROM billing_advance_fees " ..
  "WHERE subscription = 's2' ORDER BY transaction_id"))
t.is(#kept .. " " .. decimal.new(kept[1].amount):format(2), "2 0.20", "two fees kept, 0.20 each, none twice")
t.is(#assert(invoices.list(st, { subscription = "s2", limit = 10 })), 0, "and no invoice yet")
local p2 = assert(invoices.build(st, "s2", JAN, { now = JAN.to + 60 }))
local adv2
for _, x in ipairs(p2.lines) do if x.id == "charge:calls:advance" then adv2 = x end end
t.is(adv2 and (adv2.amount:format(2) .. " " .. tostring(adv2.units) .. " " .. adv2.usage.events), "0.40 2 2",
  "the period's invoice regroups the kept fees on one line: 0.40 for 2 events")
t.is(p2.subtotal:format(2), "10.40", "beside the arrears charge (2 x 5): 10.40, the units never priced twice")
STD.charges[1].invoiceable = nil
t.done()
