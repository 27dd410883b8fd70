-- steward.billing.metrics and plans on a real store (STEWARD_TEST_STORE, default SQLite):
-- refusals name the field with its index path (charges[2].properties.amount), charges are
-- checked by the charge models' own rules (steward.billing.charges) and must use a stored
-- metric, amounts stay exact decimals (written and read back through the store), and a
-- change to a plan is a new version while the old one stays readable.
local t = require "steward.tap"
local decimal = require "steward.decimal"

local bs = assert(loadfile("tests/support/billing_store.lua"))()
local st = bs.st
local metrics = require "steward.billing.metrics"
local plans = require "steward.billing.plans"
local T0 = 1767225600

-- ---- metrics ----
local m, created = metrics.create(st, { code = "api_calls", name = "API calls", aggregation = "count" }, T0)
t.ok(m and created, "a count metric is stored")
m, created = metrics.create(st, { code = "api_calls", name = "API calls", aggregation = "count" }, T0 + 1)
t.ok(m and created == false and m.created == T0, "the same definition again: the stored one, not created anew")
local _, err = metrics.create(st, { code = "api_calls", aggregation = "sum", field = "n" })
t.like(err, "^exists: ", "another definition under a taken code is refused")
assert(metrics.create(st, { code = "gb", aggregation = "sum", field = "gb", filters = { region = { "eu", "us" } } }, T0))
local cases = {
  { { code = "x", aggregation = "avg" }, "^aggregation: one of" },
  { { code = "x", aggregation = "sum" }, "^field: required for a sum metric" },
  { { code = "x y", aggregation = "count" }, "^code: " },
  { { code = "x", aggregation = "count", filters = { region = {} } }, "^filters.region: a non%-empty list" },
  { { code = "x", aggregation = "custom" }, "^custom: required" },
  { { code = "x", aggregation = "count", extra = 1 }, "^extra: unknown field" },
}
for _, c in ipairs(cases) do
  local _, e = metrics.create(st, c[1])
  t.like(e, c[2], "metric refused: " .. tostring(e))
end
t.is(#assert(metrics.list(st)), 2, "list: two metrics")
t.is(metrics.get(st, "gb").filters.region[2], "us", "get: the definition with its filters")

-- ---- plans ----
local p = assert(plans.create(st, { code = "pro", name = "Pro", interval = "monthly", amount = "49.90", currency = "EUR",
  minimum_commitment = "100.005", charges = {
    { metric = "api_calls", model = "graduated", properties = { graduated_ranges = {
      { from_value = "0", to_value = "1000", per_unit_amount = "0", flat_amount = "0" },
      { from_value = "1001", per_unit_amount = "0.0015", flat_amount = "5" } } } },
    { id = "storage", metric = "gb", model = "package", properties = { amount = "5", package_size = "100", free_units = "10" } },
  } }, T0))
t.ok(decimal.is(p.amount) and p.amount == decimal.new("49.9") and tostring(p.minimum_commitment) == "100.005",
  "amounts come back exact, as decimals")
t.ok(p.version == 1 and p.charges[1].id == "pro-1" and p.charges[2].id == "storage", "version 1; charges get an id")
t.is(p.charges[1].properties.graduated_ranges[2].per_unit_amount, "0.0015", "charge properties keep their decimal strings")
local again = plans.get(st, "pro")
t.ok(again.amount == p.amount and again.currency == "EUR" and again.interval == "monthly" and #again.charges == 2,
  "read back from the store: the same plan")

local bad = {
  { { code = "b", interval = "daily", amount = "1" }, "^interval: one of weekly, monthly, quarterly, yearly" },
  { { code = "b", interval = "monthly" }, "^amount: required" },
  { { code = "b", interval = "monthly", amount = 1.5 }, "^amount: 1.5 is a number with a fraction" },
  { { code = "b", interval = "monthly", amount = "-1" }, "^amount: at least 0" },
  { { code = "b", interval = "monthly", amount = "1", currency = "XXQ" }, "^currency: unknown currency XXQ" },
  { { code = "b", interval = "monthly", amount = "1", trial_days = 1.5 }, "^trial_days: integer expected" },
  { { code = "b", interval = "monthly", amount = "1", charges = {
      { metric = "api_calls", model = "standard", properties = { amount = "1" } },
      { metric = "api_calls", model = "standard", properties = { amount = "ten" } } } },
    "^charges%[2%]%.properties%.amount: a decimal string" },
  { { code = "b", interval = "monthly", amount = "1", charges = { { metric = "nope", model = "standard" } } },
    "^charges%[1%]%.metric: no metric nope" },
  { { code = "b", interval = "monthly", amount = "1", charges = { { metric = "api_calls", model = "tiered" } } },
    "^charges%[1%]%.model: one of" },
  { { code = "b", interval = "monthly", amount = "1", charges = { { metric = "api_calls", model = "graduated",
      properties = { graduated_ranges = { { from_value = "0", to_value = "10", per_unit_amount = "1", flat_amount = "0" },
                                          { from_value = "20", per_unit_amount = "1", flat_amount = "0" } } } } } },
    "^charges%[1%]%.properties%.graduated_ranges%[2%]" },
  { { code = "b", interval = "monthly", amount = "1", charges = { { metric = "api_calls", model = "standard",
      properties = { amount = "1" } }, { id = "pro-1x", metric = "api_calls", model = "standard", properties = { amount = "1" } },
      { id = "pro-1x", metric = "api_calls", model = "standard", properties = { amount = "1" } } } },
    "^charges%[3%]%.id: pro%-1x is taken by charges%[2%]" },
}
for _, c in ipairs(bad) do
  local _, e = plans.create(st, c[1])
  t.like(e, c[2], "plan refused: " .. tostring(e))
end
t.is(plans.get(st, "b"), false, "nothing of a refused plan is stored")
_, err = plans.create(st, { code = "pro", interval = "monthly", amount = "1" })
t.like(err, "^exists: ", "a second plan under a taken code is refused (PUT makes versions)")

-- ---- versions ----
local v2 = assert(plans.update(st, "pro", { name = "Pro", interval = "monthly", amount = "59.90", currency = "EUR" }, T0 + 10))
t.ok(v2.version == 2 and tostring(v2.amount) == "59.9" and #v2.charges == 0, "update: a new version with the new terms")
t.is(tostring(plans.get(st, "pro", 1).amount), "49.9", "version 1 stays as it was")
t.is(plans.get(st, "pro").version, 2, "get without a version: the latest")
t.is(#assert(plans.versions(st, "pro")), 2, "versions: both")
local list = assert(plans.list(st))
t.ok(#list == 1 and list[1].version == 2, "list: the latest version of each plan")
_, err = plans.update(st, "pro", { code = "other", interval = "monthly", amount = "1" })
t.like(err, "^code: other is not the plan's code pro", "an update cannot rename")
_, err = plans.update(st, "ghost", { interval = "monthly", amount = "1" })
t.like(err, "^not found: no plan ghost", "updating an unknown plan: not found")
t.raises(function() plans.get(st, 1) end, "plans.get: code: string expected", "misuse raises naming the argument")

bs.close()
t.done()
