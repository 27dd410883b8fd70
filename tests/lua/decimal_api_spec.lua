-- steward.decimal: the API of issue 18's "Money" section, and every misuse raising an error that
-- names the function, the argument and the reason.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local json = require "steward.json"

local D = decimal
local function s(v) return tostring(v) end

-- Construction: strings, integral numbers, decimals; decimal(v) is decimal.new(v).
t.is(s(D.new("12.345")), "12.345", "a plain string")
t.is(s(D("12.345")), "12.345", "the module is callable")
t.is(s(D("-0.5")), "-0.5", "a negative string")
t.is(s(D("1e-3")), "0.001", "an exponent form")
t.is(s(D("1.5E+2")), "150", "an upper-case exponent with a sign")
t.is(s(D("+7")), "7", "a leading '+'")
t.is(s(D("-0")), "0", "-0 is 0")
t.is(s(D("-0.000")), "0", "-0.000 is 0")
t.is(s(D("12.50")), "12.5", "tostring is the shortest form")
t.is(s(D("0012.5")), "12.5", "leading zeros")
t.is(s(D(".5")), "0.5", "no digit before the point")
t.is(s(D("5.")), "5", "no digit after the point")
t.is(s(D(42)), "42", "an integral Lua number")
t.is(s(D(-2 ^ 53)), "-9007199254740992", "-2^53 is exact")
local x = D("3.25")
t.ok(rawequal(D.new(x), x), "decimal.new(decimal) is the same immutable value")
t.is(s(D("1e1000") / D("1e999")), "10", "huge values stay exact")
t.is(s(D("1e-1000") * D("1e1000")), "1", "tiny values stay exact")
t.is(#s(D("1e1000")), 1001, "1e1000 prints all its digits")
t.is(s(D(string.rep("9", 1000))), string.rep("9", 1000), "1000 significant digits are accepted")

-- Misuse names the function, the argument and the reason.
t.raises(function() D.new(0.1) end,
  "decimal%.new: argument #1: 0%.1 is a Lua number with a fraction: pass a string$", "a fractional number")
t.raises(function() D.new(0 / 0) end, "decimal%.new: argument #1: nan is not a number", "NaN")
t.raises(function() D.new(math.huge) end, "decimal%.new: argument #1: inf is not a finite number", "inf")
t.raises(function() D.new(-math.huge) end, "argument #1: %-inf is not a finite number", "-inf")
t.raises(function() D.new(2 ^ 53 + 2) end, "argument #1: .* is a Lua number beyond 2%^53", "beyond 2^53")
t.raises(function() D.new("  7 ") end, 'decimal%.new: argument #1: "  7 " has a space', "spaces are refused")
t.raises(function() D.new("7 ") end, '"7 " has a space', "a trailing space")
t.raises(function() D.new("") end, 'argument #1: "" is empty', "the empty string")
for _, bad in ipairs({ "abc", "1,5", "1.2.3", ".", "-", "+", "e5", "1e", "1e+", "0x10", "nan", "NaN",
                       "Infinity", "inf", "1_000", "--1", "+-1", "1e5.5", "1/3", "\0" .. "1", "1\0" }) do
  t.raises(function() D.new(bad) end, "decimal%.new: argument #1: \".*\" is not a decimal number",
    "refused: " .. bad:gsub("%z", "\\0"))
end
-- Limits: 1000 significant digits, 2000 places either side of the point, 8192 bytes. Every
-- value inside them prints as a string that parses back.
t.raises(function() D.new(string.rep("1", 1001)) end, "has more than 1000 significant digits", "1001 digits")
t.raises(function() D.new("1." .. string.rep("0", 999) .. "1") end, "more than 1000 significant digits",
  "1001 significant digits with zeros inside")
t.is(s(D(string.rep("0", 3000) .. "1")), "1", "leading zeros are not significant")
t.is(s(D("1" .. string.rep("0", 1500))), "1" .. string.rep("0", 1500), "trailing zeros are not significant")
t.is(s(D("1.5" .. string.rep("0", 3000))), "1.5", "trailing fraction zeros are not significant")
t.is(#s(D("9e1999")), 2000, "2000 digits before the point")
t.raises(function() D.new("1e2000") end, "is out of range %(at most 2000 digits before the point and 2000 after it%)", "2001 digits before the point")
t.is(#s(D("1e-2000")), 2002, "2000 digits after the point")
t.raises(function() D.new("1e-2001") end, "is out of range", "2001 digits after the point")
t.raises(function() D.new("1e99999999999999999999") end, "is out of range", "a huge exponent")
t.raises(function() D.new("1e-99999999999999999999") end, "is out of range", "a huge negative exponent")
t.is(s(D("0e99999999")), "0", "zero with any exponent is zero")
t.raises(function() D.new(string.rep("0", 8192) .. "1") end, "is longer than 8192 bytes", "8193 bytes")
for _, v in ipairs({ "9e1999", "-1e-2000", string.rep("9", 1000) .. "e1000", "-" .. string.rep("7", 1000) .. "e-2000" }) do
  local d = D(v)
  t.ok(D(tostring(d)) == d and D(d:round(100, "up"):format(100)) == d:round(100, "up"), "the extreme " .. v:sub(1, 12) .. "... prints and parses back")
end
t.is(s(D("1e0001000") / D("1e1000")), "1", "an exponent with leading zeros")
t.raises(function() D.new(nil) end, "decimal%.new: argument #1", "nil")
t.raises(function() D.new({}) end, "decimal%.new: argument #1: decimal expected, got table", "a table")
t.raises(function() D.new(true) end, "decimal expected, got boolean", "a boolean")
local long = string.rep("x", 200)
t.raises(function() D.new(long) end, '"x+%.%.%." is not a decimal number', "a long bad string is shortened")

-- Arithmetic: exact, with mixed operands converted as by decimal.new.
t.is(s(D("0.1") + D("0.2")), "0.3", "0.1 + 0.2 is 0.3")
t.is(s(D("1.5") + 1), "2.5", "decimal + integer")
t.is(s(2 * D("0.5")), "1", "integer * decimal")
t.is(s(D("1") - "0.25"), "0.75", "decimal - string")
t.is(s("10" / D("4")), "2.5", "string / decimal")
t.is(s(-D("3")), "-3", "unary minus")
t.is(s(D(10) / 3), "10/3", "a value with no finite decimal form prints as a fraction")
t.is(s(D(10) / 3 * 3), "10", "division never rounds: (10/3)*3 is 10")
t.raises(function() return D(1) / 0 end, "decimal%.div: division by zero", "division by zero")
t.raises(function() return D(1) / "0.000" end, "division by zero", "division by a zero string")
t.raises(function() return D(1) + 0.5 end, "decimal%.add: argument #2: 0%.5 is a Lua number with a fraction",
  "a fractional operand names its position")
t.raises(function() return "x" * D(1) end, 'decimal%.mul: argument #1: "x" is not a decimal number', "a bad string operand")
t.raises(function() return D(1) - {} end, "decimal%.sub: argument #2: decimal expected, got table", "a table operand")

-- Comparison (both sides decimals: Lua compares a userdata with a number by raising).
t.ok(D("1") == D("1.000"), "== compares values")
t.ok(D("1") ~= D("1.001"), "~=")
t.ok(D("-2") < D("1"), "<")
t.ok(D("1") <= D("1.0"), "<=")
t.ok(D("3") > D("2.99999999999999999999"), "> beyond double precision")
t.ok(not (D("1") == "1"), "a decimal is never == a string (Lua's == does not convert)")
t.raises(function() return D("1") < 2 end, "attempt to compare", "mixed < raises: convert first")

-- Concatenation and tostring.
t.is("total: " .. D("12.50") .. " USD", "total: 12.5 USD", "__concat on either side")
t.is(D("1") .. 2, "12", "decimal .. number")
t.raises(function() return D("1") .. {} end, "decimal%.concat: argument #2: string expected, got table", "concat a table")
t.is(D("1.50"):tostring(), "1.5", "d:tostring()")

-- Rounding: explicit modes, named in the error when wrong.
t.is(s(D("2.5"):round(0, "half_even")), "2", "half_even")
t.is(s(D("3.5"):round(0, "half_even")), "4", "half_even up")
t.is(s(D("-2.5"):round(0, "half_up")), "-3", "half_up is away from zero")
t.is(s(D("-2.5"):round(0, "half_down")), "-2", "half_down is toward zero")
t.is(s(D("-2.1"):round(0, "up")), "-3", "up is away from zero")
t.is(s(D("-2.9"):round(0, "down")), "-2", "down is toward zero")
t.is(s(D("-2.1"):round(0, "ceiling")), "-2", "ceiling")
t.is(s(D("-2.1"):round(0, "floor")), "-3", "floor")
t.is(s((D(2) / 3):round(4, "half_even")), "0.6667", "rounding a fraction")
t.is(s(D("1.25"):round(5, "up")), "1.25", "rounding never adds digits")
t.is(s(D("123.456"):round(100, "up")), "123.456", "scale 100")
t.raises(function() D("1"):round(2, "nearest") end,
  "decimal%.round: argument #2 %(mode%): one of half_even, half_up, half_down, up, down, ceiling, floor expected, got nearest$",
  "an unknown mode")
t.raises(function() D("1"):round(2) end, "argument #2 %(mode%): one of .* expected, got no value", "the mode is required")
t.raises(function() D("1"):round(-1, "up") end, "decimal%.round: argument #1 %(scale%): integer 0%.%.100 expected, got %-1", "a negative scale")
t.raises(function() D("1"):round(101, "up") end, "integer 0%.%.100 expected, got 101", "scale over 100")
t.raises(function() D("1"):round(1.5, "up") end, "got 1%.5", "a fractional scale")
t.raises(function() D("1"):round("2", "up") end, "argument #1 %(scale%): integer 0%.%.100 expected, got string", "a string scale")
t.raises(function() D.zero.round("1", 2, "up") end, "decimal%.round: call it as a method", "round without self")
t.is(s(D("2.5"):floor()), "2", "floor()")
t.is(s(D("-2.5"):floor()), "-3", "floor() of a negative")
t.is(s(D("2.1"):ceil()), "3", "ceil()")
t.is(s(D("-2.9"):ceil()), "-2", "ceil() of a negative")
t.is(s(D("-1.5"):abs()), "1.5", "abs()")
t.is(D("-1.5"):sign(), -1, "sign() -1")
t.is(D("0"):sign(), 0, "sign() 0")
t.is(D("0.001"):sign(), 1, "sign() 1")
t.ok(D("-0.000"):is_zero(), "is_zero()")
t.ok(D("3.000"):is_integer() and not D("3.001"):is_integer(), "is_integer()")
t.is(D("1.5"):tonumber(), 1.5, "tonumber() (lossy, for display)")

-- format: a fixed scale, never rounding behind the caller's back.
t.is(D("12.5"):format(2), "12.50", "format pads")
t.is(D("-0.5"):format(0 + 3), "-0.500", "format a negative")
t.is(D("7"):format(0), "7", "format at scale 0")
t.is(D("0"):format(2), "0.00", "format zero")
t.raises(function() D("1.234"):format(2) end,
  "decimal%.format: 1%.234 has 3 fraction digits, more than 2: round it", "format refuses to round")
t.raises(function() (D(1) / 3):format(2) end,
  "decimal%.format: 1/3 has no finite decimal form: round it %(d:round%(scale, mode%)%)", "format of 1/3")
t.raises(function() D("1"):format(nil) end, "decimal%.format: argument #1 %(scale%)", "format needs a scale")

-- decimal.string: the exact string, refusing a value with no finite form.
t.is(D.string(D("12.50")), "12.5", "decimal.string")
t.is(D.string("0.10"), "0.1", "decimal.string of a string")
t.raises(function() D.string(D(1) / 3) end,
  "decimal%.string: 1/3 has no finite decimal form: round it %(d:round%(scale, mode%)%)$", "decimal.string of 1/3")
t.raises(function() D.string(-D(2) / 7) end, "%-2/7 has no finite", "a negative fraction")
t.raises(function() D.string(0.5) end, "decimal%.string: argument #1: 0%.5 is a Lua number", "decimal.string of a fraction")

-- is, min, max, sum, zero.
t.ok(D.is(D("1")) and not D.is("1") and not D.is(1) and not D.is({}) and not D.is(nil), "decimal.is")
t.is(s(D.min("3", 2, D("2.5"))), "2", "decimal.min")
t.is(s(D.max("3", 2, D("3.5"))), "3.5", "decimal.max")
t.ok(D.is(D.min(1)), "decimal.min converts its result")
t.raises(function() D.min() end, "decimal%.min: argument #1: decimal expected, got no value", "min of nothing")
t.raises(function() D.max(1, "x") end, 'decimal%.max: argument #2: "x" is not a decimal number', "max names the argument")
t.is(s(D.sum({ "1.10", 2, D("0.9") })), "4", "decimal.sum")
t.is(s(D.sum({})), "0", "the sum of nothing is 0")
t.raises(function() D.sum({ 1, "x" }) end, 'decimal%.sum: argument #1: element %[2%]: "x" is not a decimal number',
  "sum names the element")
t.raises(function() D.sum("1") end, "decimal%.sum: argument #1: list of decimals expected, got string", "sum of a string")
t.ok(D.is(D.zero) and D.zero:is_zero(), "decimal.zero")
t.is(getmetatable(D("1")), "steward.decimal", "the metatable is protected")
t.is_deeply(D.modes, { "half_even", "half_up", "half_down", "up", "down", "ceiling", "floor" }, "decimal.modes")

-- Currencies: ISO 4217 minor units.
t.is(D.scale("USD"), 2, "USD 2")
t.is(D.scale("EUR"), 2, "EUR 2")
t.is(D.scale("JPY"), 0, "JPY 0")
t.is(D.scale("KRW"), 0, "KRW 0")
t.is(D.scale("BHD"), 3, "BHD 3")
t.is(D.scale("KWD"), 3, "KWD 3")
t.is(D.scale("CLF"), 4, "CLF 4")
t.is(D.scale("UYW"), 4, "UYW 4")
local v, err = D.scale("ZZZ")
t.ok(v == nil and err == "unknown currency", "an unknown code")
v, err = D.scale("usd")
t.ok(v == nil and err == "unknown currency", "codes are upper case")
v, err = D.scale("XAU")
t.ok(v == nil and err == "currency XAU has no minor unit", "gold has no minor unit")
t.is(D.scale("US"), nil, "a short code")
t.raises(function() D.scale(840) end, "decimal%.scale: argument #1 %(currency%): string expected, got number", "a numeric code")
t.is(s(D("12.345"):money("USD")), "12.35", "money rounds half_up by default (Lago's fee rounding)")
t.is(s(D("-12.345"):money("USD")), "-12.35", "half_up is away from zero for negatives")
t.is(s(D("12.345"):money("USD", "half_even")), "12.34", "money with a mode")
t.is(s(D("1234.5"):money("JPY")), "1235", "money in JPY")
t.is(s(D("1.23456"):money("BHD", "down")), "1.234", "money in BHD")
t.raises(function() D("1"):money("ZZZ") end, "decimal%.money: argument #1 %(currency%): unknown currency ZZZ", "money in an unknown currency")
t.raises(function() D("1"):money("XAU") end, "XAU has no minor unit", "money in gold")
t.raises(function() D("1"):money("USD", "nearest") end, "decimal%.money: argument #2 %(mode%)", "money with a bad mode")

-- JSON: steward.json.encode writes a decimal as its exact string.
t.is(json.encode({ amount = D("12.50") }), '{"amount":"12.5"}', "a decimal field encodes as its string")
t.is(json.encode(D("-0.001")), '"-0.001"', "a decimal alone")
t.is(json.encode({ D("1"), D("2.5"), json.array() }), '["1","2.5",[]]', "decimals beside an empty array")
local doc = { lines = { { amount = D("3.10") } } }
t.is(json.encode(doc), '{"lines":[{"amount":"3.1"}]}', "nested")
t.ok(D.is(doc.lines[1].amount), "encode leaves the caller's decimals in place")
local no, why = json.encode({ third = D(1) / 3 })
t.ok(no == nil and why:find("a decimal with no finite decimal form %(1/3%) cannot be encoded"), "1/3 is refused")
local held = { a = D("1"), f = function() end }
no = json.encode(held)
t.ok(no == nil and D.is(held.a), "a failed encode also puts the decimals back")
t.is(s(D(json.decode(json.encode({ a = D("9.99") })).a)), "9.99", "decode gives the string back to decimal.new")

-- Policies: steward.decimal is in the sandbox's public library, callable through its read-only view.
do
  local sandbox = require "steward.runtime.policy.sandbox"
  local guard = require "steward.runtime.guard"
  local env = sandbox.new_env({ name = "decimal_spec", log = function() end })
  local fn = assert(sandbox.compile(env, [[
    local decimal = require "steward.decimal"
    local fee = decimal("29.99") * 11 / 30
    return tostring(fee:money("USD")), decimal.string(decimal.new("1.50") + decimal.zero), decimal.is(fee)]], "=policy"))
  local ok, money, text, is = guard.run({ cpu = 2 }, fn)
  t.ok(ok, "a policy requires steward.decimal " .. tostring(money))
  t.is(money, "11", "a policy calls decimal(v) and rounds with money()")
  t.is(text, "1.5", "a policy uses decimal.new and decimal.string")
  t.is(is, true, "decimal.is inside a policy")
  local set = assert(sandbox.compile(env, [[
    local decimal = require "steward.decimal"
    decimal.new = function() end]], "=policy"))
  local ok2, err2 = guard.run({ cpu = 2 }, set)
  t.ok(not ok2 and tostring(err2):find("read%-only"), "a policy cannot replace decimal.new")
end

-- Bounded work and counted memory: GMP computes inside one C call, where the policy CPU guard
-- cannot stop it, and allocates with malloc, out of the Lua allocator's sight.
t.raises(function() local z = D(3); for _ = 1, 1000 do z = z * z end end,
  "decimal%.mul: the result would have more than 39000 digits: out of range", "repeated squaring stops at the size limit")
t.raises(function() local z = D(2) / 3; for _ = 1, 1000 do z = z / 7 end; for _ = 1, 10 do z = z * z end end,
  "out of range", "a denominator is bounded too")
do
  local parts = {} -- fractions with coprime denominators of ~2,000 digits: the sum's grows
  for i = 1, 40 do parts[i] = D(1) / (D("1e1999") + i) end
  t.raises(function() return D.sum(parts) end, "decimal%.sum: the result would have more than 39000 digits", "decimal.sum is bounded")
end
do
  local x = D("9e1999")
  collectgarbage()
  local before = collectgarbage("count")
  local held = {}
  for i = 1, 50 do held[i] = x * x end -- 50 values of 4,000 digits: ~1.7 KB of limbs each
  local grew = (collectgarbage("count") - before) * 1024
  t.ok(grew > 50 * 1600, "Lua's allocator counts the GMP memory big values hold (grew " .. math.floor(grew) .. " bytes)")
  local guard = require "steward.runtime.guard"
  local ok, err = guard.run({ cpu = 5, memory = 2e6 }, function()
    local keep = {}
    for i = 1, 5000 do keep[i] = x * x end -- ~8.5 MB of GMP memory
    return #keep
  end)
  t.ok(not ok and tostring(err):find("^memory budget exceeded"), "a policy's memory budget stops decimals: " .. tostring(err))
end
-- GC: values are collected with their GMP memory (LeakSanitizer checks it in the ASan run).
for i = 1, 20000 do local _ = D(i) / 7 + "1e-30" end
collectgarbage()
t.pass("20000 temporaries collected")

t.done()
