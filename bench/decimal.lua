-- Measures steward.decimal (GMP rationals): the operations a billing formula does per usage
-- event and per invoice line. Prints key=value lines for bench/run; arg[1] is the total
-- seconds, shared by the measurements.
local decimal = require "steward.decimal"
local json = require "steward.json"
local time = require "steward.time"

local cases = {}
local seconds = tonumber(arg[1]) or 5

local function rate(name, fn)
  cases[#cases + 1] = { name, fn }
end

local function run()
  local each = seconds / #cases
  for _, c in ipairs(cases) do
    local n, t0 = 0, time.monotonic()
    local deadline = t0 + each
    while time.monotonic() < deadline do n = n + c[2]() end
    io.write(string.format("%s=%.0f\n", c[1], n / (time.monotonic() - t0)))
    io.stdout:flush()
  end
end

local price, units = decimal("0.0025"), decimal("1250")
rate("decimal_parse_per_s", function()
  for _ = 1, 1000 do decimal("12.345") end
  return 1000
end)
rate("decimal_add_per_s", function()
  local s = decimal.zero
  for _ = 1, 1000 do s = s + price end
  return 1000
end)
rate("decimal_mul_per_s", function()
  for _ = 1, 1000 do local _ = price * units end
  return 1000
end)
rate("decimal_prorate_per_s", function() -- fee * days / period_days, then rounded to cents
  for _ = 1, 1000 do local _ = (units * 11 / 30):money("USD") end
  return 1000
end)
rate("decimal_tostring_per_s", function()
  local d = decimal("1234.5678")
  for _ = 1, 1000 do tostring(d) end
  return 1000
end)
local lines = {}
for i = 1, 10 do lines[i] = { id = "line" .. i, units = decimal(i * 1000), amount = decimal(i) * "12.34" } end
rate("decimal_json_invoice10_per_s", function() -- an invoice of 10 lines with 20 decimals
  for _ = 1, 100 do json.encode({ lines = lines, total = decimal("678.7") }) end
  return 100
end)
rate("lua_number_add_per_s", function() -- for scale: the same loop with a double
  local s = 0
  for _ = 1, 1000 do s = s + 0.0025 end
  return 1000 + s * 0
end)
run()
