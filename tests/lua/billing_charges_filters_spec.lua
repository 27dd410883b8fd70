-- steward.billing.charges: charge filters (Lago's: each filter its own properties, an event
-- billed under the filter naming the most of its properties, the rest under the charge's own),
-- grouped charges (one fee per group, each rounded), prorated charges (ctx.prorate: standard,
-- volume by its full units, graduated by tiers of the full units), and where rounding happens.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local ch = assert(loadfile("tests/support/billing_charges.lua"))()
local decimal, charges, D, USD = ch.decimal, ch.charges, ch.D, ch.USD

-- Lago's documentation shape: API calls priced per region, and in the US per plan tier.
local CHARGE = {
  metric = "api_calls", model = "standard", properties = { amount = "0.01" }, invoice_display_name = "API calls",
  filters = {
    { values = { region = { "us", "ca" } }, properties = { amount = "0.02" }, invoice_display_name = "North America" },
    { values = { region = { "us" }, tier = { "gold" } }, properties = { amount = "0.015" }, invoice_display_name = "US gold" },
    { values = { region = { "eu" } }, properties = { amount = "0.03" } },
  },
}

local function ev(id, props) return { transaction_id = id, timestamp = 0, properties = props } end

describe("filters", function()
  it("match picks the filter naming the most properties, nil for none", function()
    assert.equal(charges.match(CHARGE, { region = "us" }), 1)
    assert.equal(charges.match(CHARGE, { region = "ca", tier = "gold" }), 1)
    assert.equal(charges.match(CHARGE, { region = "us", tier = "gold" }), 2)
    assert.equal(charges.match(CHARGE, { region = "eu", tier = "gold" }), 3)
    assert.equal(charges.match(CHARGE, { region = "apac" }), nil)
    assert.equal(charges.match(CHARGE, {}), nil)
  end)

  it("among filters naming as many properties, the first listed wins (Lago keeps the oldest)", function()
    local c = { metric = "m", model = "standard", properties = { amount = "1" }, filters = {
      { values = { region = { "us" } }, properties = { amount = "2" } },
      { values = { tier = { "gold" } }, properties = { amount = "3" } } } }
    assert.equal(charges.match(c, { region = "us", tier = "gold" }), 1)
  end)

  it("buckets split the events: each filter's, then the rest", function()
    local b = charges.buckets(CHARGE, {
      ev("1", { region = "us" }), ev("2", { region = "us", tier = "gold" }), ev("3", { region = "apac" }),
      ev("4", { region = "eu" }), ev("5", { region = "ca" }), ev("6", {}) })
    assert.equal(#b, 4)
    local ids = {}
    for i, bucket in ipairs(b) do
      local list = {}
      for _, e in ipairs(bucket.events) do list[#list + 1] = e.transaction_id end
      ids[i] = table.concat(list, ",")
    end
    assert.same(ids, { "1,5", "2", "4", "3,6" })
    assert.equal(b[1].filter, 1)
    assert.equal(b[1].name, "North America")
    assert.equal(b[4].filter, nil)
    assert.equal(b[4].name, "API calls")
  end)

  it("each bucket is priced with its filter's properties, the rest with the charge's", function()
    local total = decimal.zero
    local want = { "0.04", "0.02", "0.03", "0.02" } -- 2 × 0.02, 1 × 0.015 (rounded half-up), 1 × 0.03, 2 × 0.01
    local counts = { 2, 1, 1, 2 }
    for i, f in ipairs { 1, 2, 3, false } do
      local r = charges.amount(CHARGE, { units = D(counts[i]), count = counts[i] }, { currency = "USD", filter = f or nil })
      assert.equal(r.amount:format(2), want[i], "bucket " .. i)
      total = total + r.amount
    end
    assert.equal(total:format(2), "0.11")
  end)
end)

describe("groups", function()
  it("an empty period has no group and costs nothing, even with a first-tier flat amount", function()
    local c = { metric = "m", model = "graduated", group_by = { "cloud" }, properties = { graduated_ranges = {
      { from_value = 0, per_unit_amount = "1", flat_amount = "5" } } } }
    local r = charges.amount(c, { units = D(0), count = 0, groups = {} }, USD)
    assert.equal(tostring(r.amount), "0")
    assert.same(r.groups, {})
  end)

  it("each group is its own fee: tiers and flat amounts per group", function()
    local c = { metric = "m", model = "graduated", group_by = { "cloud" }, properties = { graduated_ranges = {
      { from_value = 0, to_value = 10, per_unit_amount = "1", flat_amount = "5" },
      { from_value = 11, per_unit_amount = "0.5", flat_amount = "0" } } } }
    local r = charges.amount(c, { units = D(25), count = 3, groups = {
      ["gcp"] = { units = D(5), count = 1 }, ["aws"] = { units = D(20), count = 2 } } }, USD)
    assert.equal(r.groups[1].key, "aws")
    assert.equal(tostring(r.groups[1].amount), "20")   -- 10 + 5 + 10 × 0.5
    assert.equal(tostring(r.groups[2].amount), "10")   -- 5 + 5
    assert.equal(tostring(r.amount), "30")
  end)

  it("groups round one by one: the sum of rounded fees, not the rounded sum", function()
    local c = { metric = "m", model = "standard", group_by = { "k" }, properties = { amount = "0.005" } }
    local r = charges.amount(c, { units = D(3), groups = { a = { units = D(1) }, b = { units = D(1) }, c = { units = D(1) } } }, USD)
    assert.equal(r.amount:format(2), "0.03")        -- 0.01 × 3
    assert.equal(tostring(r.precise_amount), "0.015")
  end)
end)

describe("prorated charges", function()
  it("standard: the units times the fraction; the unit amount stays the plan's price", function()
    local c = { metric = "seats", model = "standard", prorated = true, properties = { amount = "31" } }
    local r = charges.amount(c, { units = D(2), count = 2 }, { currency = "USD", prorate = D(15) / 31 })
    assert.equal(tostring(r.precise_amount), "30")
    assert.equal(tostring(r.unit_amount), "15")
    assert.equal(tostring(r.units), "0.967741935483871") -- 30/31 shown to 15 digits
    assert.equal(tostring(r.full_units), "2")
  end)

  it("a charge that is not prorated ignores ctx.prorate", function()
    local c = { metric = "seats", model = "standard", properties = { amount = "31" } }
    assert.equal(tostring(charges.amount(c, { units = D(2) }, { currency = "USD", prorate = "0.5" }).amount), "62")
  end)

  it("volume: the range of the full units, the prorated units priced, the flat amount whole", function()
    local c = { metric = "seats", model = "volume", prorated = true, properties = { volume_ranges = {
      { from_value = 0, to_value = 100, per_unit_amount = "2", flat_amount = "10" },
      { from_value = 101, per_unit_amount = "1", flat_amount = "50" } } } }
    local r = charges.amount(c, { units = D(150) }, { currency = "USD", prorate = "0.5" })
    assert.equal(tostring(r.precise_amount), "125") -- 150 × 0.5 × 1 + 50
  end)

  it("graduated: tiers of the full units, each tier's units prorated, flat amounts whole", function()
    local c = { metric = "seats", model = "graduated", prorated = true, properties = { graduated_ranges = {
      { from_value = 0, to_value = 5, per_unit_amount = "10", flat_amount = "100" },
      { from_value = 6, per_unit_amount = "5", flat_amount = "50" } } } }
    local r = charges.amount(c, { units = D(14) }, { currency = "USD", prorate = "0.5" })
    -- 5 × 0.5 × 10 + 100 + 9 × 0.5 × 5 + 50
    assert.equal(tostring(r.precise_amount), "197.5")
    assert.equal(tostring(r.details.tiers[2].units), "4.5")
  end)
end)

describe("rounding", function()
  it("the fee rounds once, half-up to the currency's scale; the exact amount is kept", function()
    local c = { metric = "m", model = "standard", properties = { amount = "0.125" } }
    local r = charges.amount(c, { units = D(1) }, USD)
    assert.equal(tostring(r.amount), "0.13")
    assert.equal(tostring(r.precise_amount), "0.125")
    assert.equal(tostring(charges.amount(c, { units = D(1) }, { currency = "JPY" }).amount), "0")
    assert.equal(tostring(charges.amount(c, { units = D(1) }, { currency = "BHD" }).amount), "0.125")
  end)

  it("a unit amount is shown to 15 digits, so that it always has a decimal form", function()
    local c = { metric = "m", model = "standard", properties = { amount = "1" } }
    local r = charges.amount(c, { units = D(1), full_units = D(3) }, USD)
    assert.equal(decimal.string(r.unit_amount), "0.333333333333333")
    assert.equal(tostring(charges.amount(c, { units = D(2), full_units = D(3) }, USD).unit_amount), "0.666666666666667")
  end)

  it("prorated by a fraction with no decimal form: the fee is computed exactly, what is shown has a decimal form", function()
    local c = { metric = "m", model = "graduated", prorated = true, properties = { graduated_ranges = {
      { from_value = 0, to_value = 5, per_unit_amount = "10", flat_amount = "0" },
      { from_value = 6, per_unit_amount = "3", flat_amount = "0" } } } }
    local r = charges.amount(c, { units = D(8) }, { currency = "USD", prorate = D(1) / 3 })
    -- (5 × 10 + 3 × 3) / 3 = 59/3
    assert.equal(tostring(r.precise_amount), "59/3")
    assert.equal(r.amount:format(2), "19.67")
    -- every reported figure but precise_amount can be stored as a string
    for _, v in ipairs { r.amount, r.units, r.full_units, r.unit_amount } do decimal.string(v) end
    for _, t in ipairs(r.details.tiers) do
      for _, k in ipairs { "units", "per_unit_total_amount", "total_with_flat_amount" } do decimal.string(t[k]) end
    end
    assert.equal(tostring(r.details.tiers[1].units), "1.666666666666667")
  end)
end)
