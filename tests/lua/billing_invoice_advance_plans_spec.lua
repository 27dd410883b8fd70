-- A plan's charge may say invoiceable = false (Lago): only a charge paid in advance, a boolean,
-- the refusal naming charges[i].invoiceable; the flag is kept with the plan (real store).
local t = require "steward.tap"
local store = require "steward.runtime.store"
require("steward.log").set_level("error")

local st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or "sqlite::memory:"))
assert(st:migrate())
store.set_default(st)
local metrics = require "steward.billing.metrics"
local plans = require "steward.billing.plans"
assert(metrics.create(st, { code = "calls", name = "Calls", aggregation = "count" }))

local function plan(code, charge)
  charge.id, charge.metric, charge.model, charge.properties = "c", "calls", "standard", { amount = "0.5" }
  return plans.create(st, { code = code, name = code, interval = "monthly", amount = "0", currency = "EUR", charges = { charge } })
end

local p = assert(plan("kept", { pay_in_advance = true, invoiceable = false }))
t.is(p.charges[1].invoiceable, false, "a charge paid in advance kept off invoices")
t.is(assert(plans.get(st, "kept")).charges[1].invoiceable, false, "and read back so")
local _, err = plan("arrears", { invoiceable = false })
t.is(err, "charges[1].invoiceable: only a charge paid in advance can be kept off invoices (false)",
  "a charge in arrears cannot be: " .. tostring(err))
_, err = plan("bad", { pay_in_advance = true, invoiceable = "no" })
t.is(err, "charges[1].invoiceable: true or false expected", "a non-boolean is refused: " .. tostring(err))
t.ok(assert(plan("plain", { pay_in_advance = true })).charges[1].invoiceable == nil, "absent: invoiced (the default)")
t.done()
