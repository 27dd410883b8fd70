-- steward.billing.taxes: the billing.taxes check names each bad field; rates by country and
-- region (a country's rates and its region's both apply; the default when none matches); each
-- tax line rounded half-up once, at the currency's scale.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local taxes = require "steward.billing.taxes"

local D = decimal.new

local CFG = { rates = {
  { country = "FR", rate = "20", name = "TVA" },
  { country = "CA", rate = "5", name = "GST" },
  { country = "CA", region = "BC", rate = "7", name = "PST" },
  { country = "US", region = "CA", rate = "7.25" },
}, default = { rate = "0", name = "none" } }

t.ok(taxes.check_config(CFG, "billing.taxes"), "a valid configuration passes")

local bad = {
  { { rates = { { country = "France", rate = "20" } } }, "billing.taxes.rates%[1%]%.country: an ISO 3166" },
  { { rates = { { country = "FR", rate = 20 } } }, "billing.taxes.rates%[1%]%.rate: a percentage as a decimal string" },
  { { rates = { { country = "FR", rate = "twenty" } } }, "billing.taxes.rates%[1%]%.rate: twenty is not a decimal" },
  { { rates = { { country = "FR", rate = "120" } } }, "billing.taxes.rates%[1%]%.rate: a percentage from 0 to 100" },
  { { rates = { { country = "FR", rate = "20", colour = "red" } } }, "billing.taxes.rates%[1%]%.colour: unknown field" },
  { { rates = { { country = "FR", rate = "20" }, { country = "FR", rate = "5.5" } } }, "rates%[2%]: the same country, region and name as rates%[1%]" },
  { { default = { country = "FR", rate = "1" } }, "billing.taxes.default.country: not allowed" },
  { { vat = {} }, "billing.taxes.vat: unknown field" },
  { "20%", "billing.taxes: a table" },
}
for _, c in ipairs(bad) do
  local ok, err = taxes.check_config(c[1], "billing.taxes")
  t.ok(not ok and tostring(err):match(c[2]), "refused: " .. tostring(err))
end

local function names(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.name or (r.country .. "-" .. tostring(r.region)) end
  return table.concat(out, ",")
end
t.is(names(taxes.rates_for(CFG, "FR")), "TVA", "France: TVA")
t.is(names(taxes.rates_for(CFG, "fr", nil)), "TVA", "a lower-case country matches")
t.is(names(taxes.rates_for(CFG, "CA", "BC")), "GST,PST", "British Columbia: the country's GST then the province's PST")
t.is(names(taxes.rates_for(CFG, "CA", "ON")), "GST", "Ontario: the GST alone")
t.is(names(taxes.rates_for(CFG, "US", "CA")), "US-CA", "California: its rate")
t.is(names(taxes.rates_for(CFG, "US", "NY")), "none", "New York: nothing matches, the default")
t.is(names(taxes.rates_for({ rates = CFG.rates }, "DE")), "", "no default: no tax")
t.is(names(taxes.rates_for(nil, "FR")), "", "no configuration: no tax")

local lines, total = taxes.lines(D("10.05"), taxes.rates_for(CFG, "US", "CA"), "USD")
-- 10.05 × 7.25 % = 0.7286250 -> 0.73 (half-up at 2 decimals)
t.is(tostring(lines[1].amount), "0.73", "7.25 % of 10.05 is 0.73, rounded half-up once")
t.is(lines[1].rate, "7.25", "the rate travels as its string")
t.is(tostring(total), "0.73", "the total is the lines' sum")
lines, total = taxes.lines(D("0.10"), { { rate = "5", name = "x" } }, "USD")
t.is(tostring(lines[1].amount), "0.01", "0.005 rounds half-up to 0.01")
lines, total = taxes.lines(D("1001"), { { rate = "7", name = "x" } }, "JPY")
t.is(tostring(total), "70", "JPY has no minor unit: 70.07 -> 70")
lines, total = taxes.lines(D("1.234"), { { rate = "10", name = "x" } }, "BHD")
t.is(tostring(total), "0.123", "BHD keeps 3 decimals")
lines, total = taxes.lines(D("99.99"), taxes.rates_for(CFG, "CA", "BC"), "CAD")
t.is(tostring(lines[1].amount) .. "+" .. tostring(lines[2].amount) .. "=" .. tostring(total), "5+7=12",
  "each line rounded on its own: 5.00 + 7.00 (4.9995 -> 5.00, 6.9993 -> 7.00)")
t.raises(function() taxes.lines(10.5, {}, "USD") end, "base: decimal expected", "a Lua number is refused")
t.raises(function() taxes.lines(D(1), {}, "XXQ") end, "currency", "an unknown currency is refused")
t.done()
