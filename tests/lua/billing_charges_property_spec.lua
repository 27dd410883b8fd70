-- steward.billing.charges: properties over random charges and usage (a seeded generator: the seed
-- is printed, STEWARD_SEED=<n> replays it). Graduated equals the sum of its tiers, computed here
-- independently; volume is linear, so monotone, in the units within a range; package with size 1
-- and no free units equals standard on whole units (and never undercuts it on fractions);
-- percentage stays within the per-transaction minimum and maximum; the pay-in-advance fees of a
-- stream add up to the arrears price of the whole; a fee is its exact amount rounded once.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local ch = assert(loadfile("tests/support/billing_charges.lua"))()
local decimal, charges, D, USD = ch.decimal, ch.charges, ch.D, ch.USD
local ROUNDS = 200

local seed = tonumber(os.getenv("STEWARD_SEED") or "") or os.time()
io.write("# billing_charges_property_spec seed ", seed, " (STEWARD_SEED=", seed, " replays it)\n")
math.randomseed(seed)
local random = math.random

-- A decimal string with up to `scale` fraction digits, from 0 to max.
local function rdec(max, scale)
  local int = random(0, max)
  if scale == 0 then return tostring(int) end
  return string.format("%d.%0" .. scale .. "d", int, random(0, 10 ^ scale - 1))
end

-- Random ranges: Lago's two shapes, adjacent (0–10, 10–25, 25–∞) or inclusive (0–10, 11–25, 26–∞).
local function rranges(fields)
  local n, inclusive = random(1, 4), random(2) == 1
  local out, from = {}, 0
  for i = 1, n do
    local r = { from_value = from }
    if i < n then r.to_value = from + random(1, 50) end
    for _, f in ipairs(fields) do r[f] = rdec(20, random(0, 3)) end
    out[i] = r
    if r.to_value then from = inclusive and r.to_value + 1 or r.to_value end
  end
  return out
end

local function units_up_to(max)
  return D(rdec(max, random(0, 2)))
end

describe("graduated", function()
  it("equals the sum of its tiers (an independent reckoning)", function()
    for _ = 1, ROUNDS do
      local ranges = rranges { "per_unit_amount", "flat_amount" }
      local c = { metric = "m", model = "graduated", properties = { graduated_ranges = ranges } }
      local total = units_up_to(250)
      local adjacent = #ranges > 1 and ranges[2].from_value == ranges[1].to_value
      local want, counted, prev_hi = decimal.zero, decimal.zero, nil
      for i, r in ipairs(ranges) do
        if i > 1 and not (total > prev_hi) then break end
        local lo = D(r.from_value)
        if not adjacent and not lo:is_zero() then lo = lo - 1 end
        local hi = r.to_value and D(r.to_value)
        local top = (hi and total > hi) and hi or total
        local u = top > lo and top - lo or decimal.zero
        want = want + u * D(r.per_unit_amount) + D(r.flat_amount)
        counted = counted + u
        prev_hi = hi
        if not hi then break end
      end
      local res = charges.amount(c, { units = total }, USD)
      assert.equal(tostring(res.precise_amount), tostring(want), "graduated " .. tostring(total))
      assert.equal(tostring(counted), tostring(total), "every unit in one tier")
      local sum = decimal.zero
      for _, t in ipairs(res.details.tiers) do sum = sum + t.total_with_flat_amount end
      assert.equal(tostring(sum), tostring(res.precise_amount), "the tiers' details add up")
    end
  end)
end)

describe("volume", function()
  it("is units × the range's price + its flat amount, monotone in the units within a range", function()
    for _ = 1, ROUNDS do
      local ranges = rranges { "per_unit_amount", "flat_amount" }
      local c = { metric = "m", model = "volume", properties = { volume_ranges = ranges } }
      local i = random(#ranges)
      local r = ranges[i]
      local lo = D(r.from_value)
      local span = r.to_value and (D(r.to_value) - lo) or D(100)
      -- an adjacent range's from_value belongs to the range below it (0–10, 10–25: 10 is in 0–10)
      local first = i > 1 and 1 or 0
      local a = lo + span * D(random(first, 1000)) / 1000
      local b = lo + span * D(random(first, 1000)) / 1000
      if b < a then a, b = b, a end
      local ra = charges.amount(c, { units = a }, USD)
      local rb = charges.amount(c, { units = b }, USD)
      assert.truthy(ra.precise_amount <= rb.precise_amount, "volume " .. tostring(a) .. " <= " .. tostring(b))
      assert.equal(tostring(rb.precise_amount), tostring(b * D(r.per_unit_amount) + D(r.flat_amount)), "range " .. i)
    end
  end)
end)

describe("package", function()
  it("with size 1 and no free units equals standard on whole units, never less on fractions", function()
    for _ = 1, ROUNDS do
      local price = rdec(50, random(0, 4))
      local p = { metric = "m", model = "package", properties = { amount = price, package_size = 1, free_units = 0 } }
      local s = { metric = "m", model = "standard", properties = { amount = price } }
      local whole = D(random(0, 100000))
      assert.equal(tostring(charges.amount(p, { units = whole }, USD).precise_amount),
                   tostring(charges.amount(s, { units = whole }, USD).precise_amount), "package = standard at " .. tostring(whole))
      local frac = units_up_to(1000)
      assert.truthy(charges.amount(p, { units = frac }, USD).precise_amount >= charges.amount(s, { units = frac }, USD).precise_amount)
    end
  end)
end)

describe("percentage", function()
  it("never below the minimum nor above the maximum per transaction", function()
    for _ = 1, ROUNDS do
      local min = D(rdec(5, 2))
      local max = min + D(rdec(20, 2))
      local props = { rate = rdec(10, 2), per_transaction_min_amount = tostring(min), per_transaction_max_amount = tostring(max) }
      if random(2) == 1 then props.fixed_amount = rdec(1, 2) end
      local c = { metric = "m", model = "percentage", properties = props }
      local n, values, total = random(1, 30), {}, decimal.zero
      for k = 1, n do values[k] = D(rdec(2000, 2)); total = total + values[k] end
      local r = charges.amount(c, { units = total, count = n, per_event = values }, USD)
      assert.truthy(r.precise_amount >= min * n, "at least n × min")
      assert.truthy(r.precise_amount <= max * n, "at most n × max")
      -- and exactly the sum of each clamped transaction
      local want = decimal.zero
      for _, v in ipairs(values) do
        want = want + decimal.max(min, decimal.min(max, v * D(props.rate) / 100 + D(props.fixed_amount or "0")))
      end
      assert.equal(tostring(r.precise_amount), tostring(want))
    end
  end)
end)

describe("pay in advance", function()
  it("the fees of a stream of events add up to the arrears price of the whole", function()
    local models = {
      function() return "standard", { amount = rdec(5, 3) } end,
      function() return "package", { amount = rdec(50, 2), package_size = random(1, 20), free_units = random(0, 30) } end,
      function() return "graduated", { graduated_ranges = rranges { "per_unit_amount", "flat_amount" } } end,
      function() return "graduated_percentage", { graduated_percentage_ranges = rranges { "rate", "flat_amount" } } end,
      function()
        return "percentage", { rate = rdec(5, 2), fixed_amount = rdec(1, 2), free_units_per_events = random(1, 3),
                               free_units_per_total_aggregation = rdec(100, 0) }
      end,
    }
    for _ = 1, ROUNDS / 2 do
      local model, props = models[random(#models)]()
      local c = { metric = "m", model = model, properties = props, pay_in_advance = true }
      local values, sum = {}, decimal.zero
      local before = { units = decimal.zero, count = 0, per_event = {} }
      for k = 1, random(1, 15) do
        values[k] = D(random(1, 60))
        local after = { units = before.units + values[k], count = k, per_event = { unpack(values, 1, k) } }
        sum = sum + charges.in_advance(c, before, after, USD).precise_amount
        before = after
      end
      local whole = charges.amount(c, before, USD).precise_amount
      assert.equal(tostring(sum), tostring(whole), model .. " in advance = in arrears")
    end
  end)
end)

describe("rounding", function()
  it("a fee is its exact amount rounded half-up to the cent, once", function()
    for _ = 1, ROUNDS do
      local c = { metric = "m", model = "standard", properties = { amount = rdec(3, 5) } }
      local r = charges.amount(c, { units = units_up_to(5000) }, USD)
      local diff = (r.amount - r.precise_amount):abs()
      assert.truthy(diff <= D("0.005"), "within half a cent")
      assert.equal(r.amount:format(2), r.precise_amount:round(2, "half_up"):format(2))
    end
  end)
end)
