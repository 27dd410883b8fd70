-- steward.billing.charges: bad charges and bad arguments. charges.check answers nil and an error
-- naming the property path and the reason (Lago's validators' rules: amounts are decimal strings
-- ≥ 0, ranges start at 0 and follow each other, package sizes are whole and positive, which models
-- may be paid in advance or prorated); charges.amount and the other functions raise on misuse,
-- naming the argument; no Lua number with a fraction ever becomes money.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local ch = assert(loadfile("tests/support/billing_charges.lua"))()
local charges, D, USD, charge = ch.charges, ch.D, ch.USD, ch.charge

local function refused(c, pattern)
  local ok, err = charges.check(c)
  assert.equal(ok, nil, "check refuses it")
  assert.match(err, pattern)
  -- amount raises the same error, prefixed with the function's name
  assert.error(function() charges.amount(c, { units = D(1), count = 1 }, USD) end, "^charges%.amount: " .. pattern:gsub("^%^", ""))
end

local RANGES = { { from_value = 0, to_value = 10, per_unit_amount = "1", flat_amount = "0" },
                 { from_value = 11, per_unit_amount = "0.5", flat_amount = "0" } }

describe("charges.check", function()
  it("accepts every model with Lago's properties", function()
    assert.truthy(charges.check(charge("standard", { amount = "0.05" })))
    assert.truthy(charges.check(charge("graduated", { graduated_ranges = RANGES })))
    assert.truthy(charges.check(charge("volume", { volume_ranges = RANGES })))
    assert.truthy(charges.check(charge("package", { amount = "5", package_size = 100, free_units = 0 })))
    assert.truthy(charges.check(charge("percentage", { rate = "2.9", fixed_amount = "0.30", free_units_per_events = 3,
      free_units_per_total_aggregation = "500", per_transaction_min_amount = "0.5", per_transaction_max_amount = "10" })))
    assert.truthy(charges.check(charge("graduated_percentage", { graduated_percentage_ranges = {
      { from_value = 0, to_value = 1000, rate = "1", flat_amount = "200" }, { from_value = 1001, rate = "2", flat_amount = "0" } } })))
  end)

  it("names the charge's own fields", function()
    refused(charge("tiered", {}), "^model: unknown charge model tiered %(one of graduated, graduated_percentage, package")
    refused({ model = "standard", properties = { amount = "1" } }, "^metric: the billable metric's code expected")
    refused(charge("standard", nil), "^properties: a table")
    refused(charge("standard", { amount = "1" }, { pay_in_advance = "yes" }), "^pay_in_advance: true or false expected")
    refused(charge("standard", { amount = "1" }, { min_amount = "-1" }), "^min_amount: must be zero or more")
    refused(charge("standard", { amount = "1" }, { group_by = { "" } }), "^group_by%[1%]: a non%-empty property name")
  end)

  it("reads amounts as decimals, never as binary fractions", function()
    refused(charge("standard", { amount = 0.1 }), "^properties%.amount: 0%.1 is a Lua number with a fraction: pass a string")
    refused(charge("standard", { amount = "12,5" }), '^properties%.amount: not a decimal: "12,5"')
    refused(charge("standard", { amount = "-1" }), "^properties%.amount: must be zero or more, got %-1")
    refused(charge("standard", {}), "^properties%.amount: a decimal string expected %(such as \"12%.5\"%), got nil")
    refused(charge("standard", { amount = { 1 } }), "^properties%.amount: a decimal string expected")
    -- an integral Lua number is exact: accepted
    assert.truthy(charges.check(charge("standard", { amount = 3 })))
  end)

  it("refuses a property the model does not read", function()
    refused(charge("package", { amount = "5", package_szie = 100 }), "^properties%.package_szie: unknown property for the package model")
    refused(charge("standard", { amount = "1", rate = "2" }), "^properties%.rate: unknown property for the standard model")
  end)

  it("checks the ranges as Lago does", function()
    local function g(ranges) return charge("graduated", { graduated_ranges = ranges }) end
    refused(g({}), "^properties%.graduated_ranges: a non%-empty list of ranges expected")
    refused(g { { from_value = 1, to_value = 10, per_unit_amount = "1", flat_amount = "0" },
                { from_value = 12, per_unit_amount = "1", flat_amount = "0" } },
      "^properties%.graduated_ranges%[2%]%.from_value: must be 10 or 11 %(the previous range's to_value or one above it%), got 12")
    refused(g { { from_value = 2, per_unit_amount = "1", flat_amount = "0" } },
      "^properties%.graduated_ranges%[1%]%.from_value: must be 0 or 1")
    refused(g { { from_value = 0, to_value = 10, per_unit_amount = "1", flat_amount = "0" } },
      "^properties%.graduated_ranges%[1%]%.to_value: the last range must be open")
    refused(g { { from_value = 0, per_unit_amount = "1", flat_amount = "0" }, { from_value = 1, per_unit_amount = "1", flat_amount = "0" } },
      "^properties%.graduated_ranges%[1%]%.to_value: only the last range may be open")
    refused(g { { from_value = 0, to_value = 0, per_unit_amount = "1", flat_amount = "0" }, { from_value = 1, per_unit_amount = "1", flat_amount = "0" } },
      "^properties%.graduated_ranges%[1%]%.to_value: must be above from_value 0")
    refused(g { { from_value = 0, per_unit_amount = "1" } }, "^properties%.graduated_ranges%[1%]%.flat_amount: a decimal string expected")
    refused(g { { from_value = 0, per_unit_amount = "1", flat_amount = "0", rate = "1" } },
      "^properties%.graduated_ranges%[1%]%.rate: unknown field of a range")
    refused(charge("volume", { volume_ranges = { { from_value = 0, per_unit_amount = "x", flat_amount = "0" } } }),
      '^properties%.volume_ranges%[1%]%.per_unit_amount: not a decimal: "x"')
    refused(charge("graduated_percentage", { graduated_percentage_ranges = { { from_value = 0, rate = "-2", flat_amount = "0" } } }),
      "^properties%.graduated_percentage_ranges%[1%]%.rate: must be zero or more")
  end)

  it("checks package and percentage properties", function()
    refused(charge("package", { amount = "5", package_size = 0 }), "^properties%.package_size: must be 1 or more, got 0")
    refused(charge("package", { amount = "5", package_size = "2.5" }), "^properties%.package_size: a whole number expected, got 2%.5")
    refused(charge("package", { amount = "5", package_size = 10, free_units = -1 }), "^properties%.free_units: must be 0 or more")
    refused(charge("percentage", {}), "^properties%.rate: a decimal string expected")
    refused(charge("percentage", { rate = "1", free_units_per_events = 0 }), "^properties%.free_units_per_events: must be 1 or more")
    refused(charge("percentage", { rate = "1", per_transaction_min_amount = "5", per_transaction_max_amount = "2" }),
      "^properties%.per_transaction_max_amount: must not be below per_transaction_min_amount 5")
  end)

  it("checks the filters, each with its own properties", function()
    local function f(filters) return charge("standard", { amount = "1" }, { filters = filters }) end
    refused(f { { values = { region = { "eu" } } } }, "^filters%[1%]%.properties: the filter's own model properties expected")
    refused(f { { values = {}, properties = { amount = "1" } } }, "^filters%[1%]%.values: a table of event property")
    refused(f { { values = { region = {} }, properties = { amount = "1" } } }, "^filters%[1%]%.values%.region: a non%-empty list of values")
    refused(f { { values = { region = { 1 } }, properties = { amount = "1" } } }, "^filters%[1%]%.values%.region%[1%]: a string expected")
    refused(f { { values = { region = { "eu" } }, properties = { amount = "x" } } }, '^filters%[1%]%.properties%.amount: not a decimal')
  end)

  it("keeps Lago's combinations of models, advance payment and proration", function()
    refused(charge("volume", { volume_ranges = RANGES }, { pay_in_advance = true }),
      "^pay_in_advance: a volume charge cannot be paid in advance")
    refused(charge("package", { amount = "1", package_size = 1 }, { prorated = true }), "^prorated: a package charge cannot be prorated")
    refused(charge("graduated", { graduated_ranges = RANGES }, { prorated = true, pay_in_advance = true }),
      "^prorated: a graduated charge paid in advance cannot be prorated")
    refused(charge("standard", { amount = "1" }, { pay_in_advance = true, min_amount = "5" }),
      "^min_amount: a charge paid in advance has no minimum amount")
    assert.truthy(charges.check(charge("standard", { amount = "1" }, { pay_in_advance = true, prorated = true })))
    assert.truthy(charges.check(charge("volume", { volume_ranges = RANGES }, { prorated = true })))
  end)
end)

describe("charges.check_metric", function()
  local function m(aggregation, recurring) return { code = "m", aggregation = aggregation, recurring = recurring } end
  it("keeps Lago's rules between a charge and its metric", function()
    assert.truthy(charges.check_metric(charge("standard", { amount = "1" }, { pay_in_advance = true }), m("sum")))
    assert.truthy(charges.check_metric(charge("standard", { amount = "1" }, { prorated = true }), m("unique_count", true)))
    local function no(c, metric, pattern)
      local ok, err = charges.check_metric(c, metric)
      assert.equal(ok, nil)
      assert.match(err, pattern)
    end
    no(charge("standard", { amount = "1" }, { pay_in_advance = true }), m("max"),
      "^pay_in_advance: a max metric cannot be paid in advance %(count, sum, unique_count and custom can%)")
    no(charge("standard", { amount = "1" }, { prorated = true }), m("sum", false), "^prorated: metric m is not recurring")
    no(charge("standard", { amount = "1" }, { prorated = true }), m("weighted_sum", true), "^prorated: metric m is weighted_sum")
    no(charge("percentage", { rate = "1" }), m("latest"), "^model: a percentage charge cannot price a latest metric")
    no(charge("standard", { amount = "1" }), { code = "other", aggregation = "count" }, "^metric: the charge prices metric m, not other")
    no(charge("standard", { amount = "x" }), m("count"), "^properties%.amount: not a decimal")
  end)
end)

describe("misuse of the functions", function()
  local c = charge("standard", { amount = "1" })
  it("names the argument", function()
    assert.error(function() charges.amount(c, { units = D(1) }, nil) end, "^charges%.amount: ctx: a table with the currency expected")
    assert.error(function() charges.amount(c, { units = D(1) }, { currency = "XXY" }) end, "^charges%.amount: ctx%.currency: unknown currency XXY")
    assert.error(function() charges.amount(c, nil, USD) end, "^charges%.amount: agg: an aggregation result table expected")
    assert.error(function() charges.amount(c, { units = 1.5 }, USD) end, "^charges%.amount: agg%.units: 1%.5 is a Lua number with a fraction")
    assert.error(function() charges.amount(c, { units = D(1), count = -1 }, USD) end, "^charges%.amount: agg%.count: a whole number")
    assert.error(function() charges.amount(c, { units = D(1) }, { currency = "USD", filter = 1 }) end,
      "^charges%.amount: ctx%.filter: no filter 1 on the charge")
    assert.error(function() charges.amount(c, { units = D(1) }, { currency = "USD", prorate = "1.5" }) end,
      "^charges%.amount: ctx%.prorate: a fraction from 0 to 1 expected, got 1%.5")
    assert.error(function() charges.amount(charge("standard", { amount = "1" }, { group_by = { "cloud" } }), { units = D(1) }, USD) end,
      "^charges%.amount: agg%.groups: the charge groups by cloud: aggregate with opts%.group_by")
    assert.error(function() charges.amount(charge("standard", { amount = "1" }, { group_by = { "cloud" } }),
      { units = D(1), groups = { aws = 3 } }, USD) end, "^charges%.amount: agg%.groups%[aws%]: an aggregation result table expected")
    assert.error(function() charges.amount(charge("percentage", { rate = "1", per_transaction_max_amount = "2" }),
      { units = D(10), count = 1 }, USD) end, "^charges%.amount: agg%.per_event: the per%-event values are needed")
    assert.error(function() charges.amount(charge("percentage", { rate = "1", per_transaction_max_amount = "2" }),
      { units = D(10), count = 2, per_event = { D(4), "x" } }, USD) end, '^charges%.amount: agg%.per_event%[2%]: not a decimal: "x"')
    assert.error(function() charges.commitment({ currency = "USD", minimum_commitment = "10" }, 0.5) end,
      "^charges%.commitment: fees_total: 0%.5 is a Lua number with a fraction")
    assert.error(function() charges.commitment({ currency = "USD", minimum_commitment = "10" }, D(0), D(2)) end,
      "^charges%.commitment: period_fraction: a fraction from 0 to 1")
    assert.error(function() charges.true_up(charge("standard", { amount = "1" }, { min_amount = "1" }), nil, USD) end,
      "^charges%.true_up: used: a decimal string expected")
    assert.error(function() charges.match(c, nil) end, "^charges%.match: properties: a table expected")
    assert.error(function() charges.buckets(c, { 1 }) end, "^charges%.buckets: events%[1%]: an event table expected")
  end)
end)

describe("in a policy", function()
  -- A pricing policy reads the charge models as any pure library: no capability needed.
  it("steward.billing.charges is public to policies", function()
    local sandbox = require "steward.runtime.policy.sandbox"
    local guard = require "steward.runtime.guard"
    local env = sandbox.new_env { name = "billing.price", log = function() end }
    local fn = assert(sandbox.compile(env, [[
      local charges = require "steward.billing.charges"
      local decimal = require "steward.decimal"
      local c = { metric = "m", model = "package", properties = { amount = "5", package_size = 100, free_units = 100 } }
      return charges.amount(c, { units = decimal(201) }, { currency = "EUR" }).amount:format(2)
    ]], "=policy"))
    local ok, got = guard.run({ cpu = 2 }, fn)
    assert.truthy(ok, got)
    assert.equal(got, "10.00")
  end)
end)
