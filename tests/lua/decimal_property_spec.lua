-- steward.decimal's laws over seeded random values: exact arithmetic, string and JSON round
-- trips, splits that add up to the whole, and comparisons that form a total order.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local json = require "steward.json"

math.randomseed(18)
local random = math.random

-- A random decimal string: up to 30 digits, up to 12 fraction digits, sometimes an exponent.
local function rand_text()
  local n = random(1, 30)
  local digits = {}
  for i = 1, n do digits[i] = tostring(random(0, 9)) end
  local s = table.concat(digits)
  local frac = random(0, math.min(12, n))
  if frac > 0 then s = s:sub(1, n - frac) .. "." .. s:sub(n - frac + 1) end
  if random() < 0.3 then s = "-" .. s end
  if random() < 0.1 then s = s .. "e" .. random(-20, 20) end
  return s
end
local function rand() return decimal(rand_text()) end
local function nonzero()
  local d = rand()
  while d:is_zero() do d = rand() end
  return d
end

local N = 1000
local function law(name, fn)
  local bad
  for i = 1, N do
    local ok, why = fn(i)
    if not ok then bad = why or ("case " .. i); break end
  end
  t.ok(not bad, name .. (bad and (": " .. bad) or ""))
end

law("(a + b) - b == a", function()
  local a, b = rand(), rand()
  return (a + b) - b == a, tostring(a) .. ", " .. tostring(b)
end)
law("a * b / b == a", function()
  local a, b = rand(), nonzero()
  return a * b / b == a, tostring(a) .. ", " .. tostring(b)
end)
law("a + b == b + a and (a + b) + c == a + (b + c)", function()
  local a, b, c = rand(), rand(), rand()
  return a + b == b + a and (a + b) + c == a + (b + c)
end)
law("a * (b + c) == a * b + a * c", function()
  local a, b, c = rand(), rand(), rand()
  return a * (b + c) == a * b + a * c
end)
law("a / b * b == a, also when a / b has no finite decimal form", function()
  local a, b = rand(), decimal(random(1, 97)) * (random() < 0.5 and 3 or 7)
  return a / b * b == a
end)
law("integers agree with Lua's arithmetic below 2^53", function()
  local x, y = random(-2 ^ 26, 2 ^ 26), random(-2 ^ 26, 2 ^ 26)
  return decimal(x) + y == decimal(x + y) and decimal(x) * y == decimal(x * y) and
    decimal(x) - y == decimal(x - y)
end)

-- Round trips: string -> decimal -> string gives the canonical form, which parses back to
-- the same value; through JSON too (amounts travel as strings).
law("string -> decimal -> string -> decimal", function()
  local s = rand_text()
  local d = decimal(s)
  local back = decimal(tostring(d))
  return back == d and tostring(back) == tostring(d), s
end)
law("the canonical string has no trailing zeros, no exponent, no '-0'", function()
  local s = tostring(rand())
  return not s:find("%.%d-0$") and not s:find("[eE]") and s ~= "-0" and not s:find("%.$"), s
end)
law("format(scale) then decimal() is the same value", function()
  local d = rand():round(random(0, 12), "half_even")
  local scale = random(12, 20)
  local text = d:format(scale)
  local _, dot = text:find("%.")
  return decimal(text) == d and (#text - dot) == scale, text
end)
law("JSON round trip: encode writes the exact string, decode + decimal.new gives it back", function()
  local doc = { amount = rand(), lines = { rand(), rand() } }
  local back = json.decode(json.encode(doc))
  return decimal(back.amount) == doc.amount and decimal(back.lines[1]) == doc.lines[1]
    and decimal(back.lines[2]) == doc.lines[2]
end)

-- Splits: shares by weight (a proration by days, a revenue schedule) add up to the whole
-- exactly, because nothing rounds until a formula says so.
law("prorated parts sum to the whole", function()
  local whole = rand()
  local parts, weights, total = {}, {}, 0
  for i = 1, random(1, 31) do weights[i] = random(1, 31); total = total + weights[i] end
  for i, w in ipairs(weights) do parts[i] = whole * w / total end
  return decimal.sum(parts) == whole, tostring(whole)
end)
law("a month split by day: n parts of 1/n", function()
  local whole, days = rand(), random(28, 31)
  local sum = decimal.zero
  for _ = 1, days do sum = sum + whole / days end
  return sum == whole
end)
law("rounded cents with the remainder on the last part still sum to the whole", function()
  local whole, n = rand():money("USD"), random(2, 12)
  local parts, acc = {}, decimal.zero
  for i = 1, n - 1 do parts[i] = (whole / n):money("USD", "down"); acc = acc + parts[i] end
  parts[n] = whole - acc
  return decimal.sum(parts) == whole
end)

-- Comparisons: a total order, consistent with subtraction.
law("exactly one of a < b, a == b, a > b; and it is the sign of a - b", function()
  local a = rand()
  local b = random() < 0.1 and decimal(tostring(a)) or rand()
  local n = (a < b and 1 or 0) + (a == b and 1 or 0) + (b < a and 1 or 0)
  local sign = (a - b):sign()
  return n == 1 and ((sign < 0) == (a < b)) and ((sign == 0) == (a == b)) and (a <= b) == not (b < a)
end)
local list = {}
for i = 1, 500 do list[i] = rand() end
table.sort(list, function(x, y) return x < y end)
local sorted = true
for i = 2, #list do
  if not (list[i - 1] <= list[i]) or (list[i] - list[i - 1]):sign() < 0 then sorted = false end
end
t.ok(sorted, "table.sort with < gives a non-decreasing list (transitive)")
t.ok(decimal.min(unpack(list)) == list[1] and decimal.max(unpack(list)) == list[#list], "min and max agree with the sort")

t.done()
