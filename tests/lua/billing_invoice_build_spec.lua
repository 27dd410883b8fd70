-- steward.billing.invoice_build with fixtures (no store): the subscription fee (whole, prorated,
-- after a trial), a line per charge, per filter and per group with the usage behind it, the
-- minimum commitment true-up, coupons, taxes and credits; and the properties every invoice
-- keeps: total = subtotal - discounts + taxes - credits, every amount at the currency's scale,
-- prorated parts summing to the whole fee. Random cases print their seed (BILLING_SEED replays).
local t = require "steward.tap"
local decimal = require "steward.decimal"
local build = require "steward.billing.invoice_build"
local periods = require "steward.billing.periods"

local D = decimal.new
local JAN = { from = 1767225600, to = 1769904000 } -- 2026-01-01 .. 2026-02-01 UTC, 31 days
local DAY = 86400

local METRICS = {
  api_calls = { code = "api_calls", name = "API calls", aggregation = "count" },
  storage = { code = "storage", name = "Storage (GB)", aggregation = "max", field = "gb" },
  egress = { code = "egress", name = "Egress (GB)", aggregation = "sum", field = "gb" },
}

local function usage_fixture(list)
  return function(code, from, to)
    local out = {}
    for _, e in ipairs(list) do
      if e.code == code and e.timestamp >= from and e.timestamp < to then out[#out + 1] = e end
    end
    return out
  end
end

local function calls(n, at, props)
  local out = {}
  for i = 1, n do
    out[i] = { transaction_id = "c" .. at .. "-" .. i, code = "api_calls", timestamp = at + i, properties = props or {} }
  end
  return out
end

local function concat(...)
  local out = {}
  for _, l in ipairs({ ... }) do for _, x in ipairs(l) do out[#out + 1] = x end end
  return out
end

local PLAN = {
  code = "pro", name = "Pro", interval = "monthly", amount = "100", currency = "USD", version = 1,
  charges = {
    { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.01" } },
    { id = "storage", metric = "storage", model = "graduated", properties = { graduated_ranges = {
      { from_value = "0", to_value = "10", per_unit_amount = "0", flat_amount = "0" },
      { from_value = "10", to_value = nil, per_unit_amount = "0.5", flat_amount = "2" } } } },
  },
}

local function inputs(over)
  local i = { subscription = { id = "sub1", tenant = "acme", started = JAN.from - 40 * DAY }, plan = PLAN,
              period = JAN, currency = "USD", metric = function(c) return METRICS[c] end,
              usage = usage_fixture(concat(calls(1234, JAN.from + DAY),
                { { transaction_id = "s1", code = "storage", timestamp = JAN.from + 2 * DAY, properties = { gb = "25" } } })) }
  for k, v in pairs(over or {}) do i[k] = v end
  return i
end

local function line(inv, id)
  for _, l in ipairs(inv.lines) do if l.id == id then return l end end
end

-- a whole period
local inv = build.compute(inputs())
t.is(#inv.lines, 3, "a fee line and one per charge")
t.is(tostring(line(inv, "subscription").amount), "100", "the fee: the plan's amount")
local c = line(inv, "charge:calls")
t.is(tostring(c.amount), "12.34", "1234 calls at 0.01")
t.is(tostring(c.units), "1234", "the line carries its units")
t.is(c.usage.events, 1234, "and the number of events behind it")
t.is(tostring(line(inv, "charge:storage").amount), "9.5", "graduated: 15 GB over 10 at 0.5 + 2 flat = 9.50")
t.is(tostring(inv.subtotal), "121.84", "subtotal")
t.is(tostring(inv.total), "121.84", "no coupon, tax or credit: total = subtotal")
t.ok(build.check(inv), "the invariants hold")

-- coupons, taxes and credits in that order
inv = build.compute(inputs({
  coupons = function(sub) return { { coupon = "WELCOME", amount = D("10") }, { coupon = "TENPC", amount = sub / 10 } } end,
  tax_rates = { { country = "FR", rate = "20", name = "TVA" } },
  credits = { { kind = "wallet", ref = "acme", amount = D("5") } } }))
t.is(tostring(inv.discount_total), "22.18", "coupons: 10 + 10 % of 121.84 (12.184 -> 12.18)")
t.is(tostring(inv.tax_total), "19.93", "TVA 20 % of 99.66 = 19.932 -> 19.93")
t.is(tostring(inv.credit_total), "5", "the wallet's credit")
t.is(tostring(inv.total), "114.59", "121.84 - 22.18 + 19.93 - 5")
t.ok(build.check(inv), "the invariants hold")

inv = build.compute(inputs({ coupons = function() return { { coupon = "BIG", amount = D("500") } } end,
  credits = { { kind = "wallet", ref = "acme", amount = D("1000") } } }))
t.is(tostring(inv.discount_total), "121.84", "a coupon never takes more than the subtotal")
t.is(tostring(inv.total), "0", "credits never take the total below zero")
t.is(#inv.credits, 0, "and a credit of nothing is no credit line")

-- started mid-period: prorated by days (h3's periods.prorate), charges for the active part only
inv = build.compute(inputs({ subscription = { id = "sub1", tenant = "acme", started = JAN.from + 14 * DAY } }))
local fee = line(inv, "subscription")
t.is(tostring(fee.amount), "54.84", "17 of 31 days of 100 = 54.8387... -> 54.84")
t.is(fee.from, JAN.from + 14 * DAY, "the fee line says the part it bills")
t.ok(fee.details.prorated, "and that it is prorated")
t.is(tostring(line(inv, "charge:calls").amount), "0", "usage before the start is not billed")
t.ok(build.check(inv), "the invariants hold")

-- trial covering the period: no fee; ended mid-period: prorated from its end
inv = build.compute(inputs({ subscription = { id = "s", tenant = "a", started = JAN.from, trial_ends = JAN.to + DAY } }))
t.is(line(inv, "subscription"), nil, "a trial over the whole period bills no fee")
inv = build.compute(inputs({ subscription = { id = "s", tenant = "a", started = JAN.from - DAY, trial_ends = JAN.from + 10 * DAY } }))
t.is(tostring(line(inv, "subscription").amount), "67.74", "a trial ending on the 11th: 21 of 31 days")

-- terminated mid-period: the fee up to the termination
inv = build.compute(inputs({ subscription = { id = "s", tenant = "a", started = JAN.from - DAY, terminated = JAN.from + 10 * DAY } }))
t.is(tostring(line(inv, "subscription").amount), "32.26", "terminated on the 11th: 10 of 31 days")

-- an in-advance final invoice: no fee
inv = build.compute(inputs({ fee = false }))
t.is(line(inv, "subscription"), nil, "fee = false: the usage alone")

-- minimum commitment: a true-up up to it
local committed = {}
for k, v in pairs(PLAN) do committed[k] = v end
committed.minimum_commitment = "200"
inv = build.compute(inputs({ plan = committed }))
local cm = line(inv, "commitment")
t.is(tostring(cm.amount), "78.16", "commitment 200 - fees 121.84 = 78.16")
t.is(tostring(inv.subtotal), "200", "the subtotal reaches the commitment")
committed.minimum_commitment = "100"
inv = build.compute(inputs({ plan = committed }))
t.is(line(inv, "commitment"), nil, "fees above the commitment: no true-up")

-- filters and groups: a line per filter, the rest at the charge's own price; a line per group
local filtered = { code = "f", name = "F", interval = "monthly", amount = "0", currency = "EUR", version = 1, charges = {
  { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.01" },
    filters = { { values = { region = { "eu" } }, properties = { amount = "0.02" }, invoice_display_name = "Calls EU" } } },
  { id = "egress", metric = "egress", model = "standard", properties = { amount = "0.1" }, group_by = { "region" } },
} }
local ev = concat(calls(100, JAN.from, { region = "eu" }), calls(50, JAN.from + DAY, { region = "us" }),
  { { transaction_id = "e1", code = "egress", timestamp = JAN.from + 5, properties = { gb = "3", region = "eu" } },
    { transaction_id = "e2", code = "egress", timestamp = JAN.from + 6, properties = { gb = "7", region = "us" } },
    { transaction_id = "e3", code = "egress", timestamp = JAN.from + 7, properties = { gb = "1.5", region = "us" } } })
inv = build.compute(inputs({ plan = filtered, currency = "EUR", usage = usage_fixture(ev) }))
t.is(tostring(line(inv, "charge:calls:filter:1").amount), "2", "100 EU calls at the filter's 0.02")
t.is(line(inv, "charge:calls:filter:1").description, "Calls EU", "named as the filter says")
t.is(tostring(line(inv, "charge:calls:default").amount), "0.5", "50 other calls at the charge's 0.01")
t.is(tostring(line(inv, "charge:egress:group:eu").amount), "0.3", "egress EU: 3 GB at 0.1")
t.is(tostring(line(inv, "charge:egress:group:us").amount), "0.85", "egress US: 8.5 GB at 0.1")
t.ok(build.check(inv), "the invariants hold")

-- property: prorated parts sum to the whole fee (exactly before rounding, within half a cent
-- per part after)
local seed = tonumber(os.getenv("BILLING_SEED")) or os.time()
t.diag("BILLING_SEED=" .. seed)
math.randomseed(seed)
local parts_ok, rounded_ok = true, true
for _ = 1, 200 do
  local amount = D(tostring(math.random(1, 99999))) / 100
  local cut = JAN.from + math.random(1, 30) * DAY
  local a = periods.prorate(amount, JAN.from, cut, JAN)
  local b = periods.prorate(amount, cut, JAN.to, JAN)
  if a + b ~= amount then parts_ok = false end
  local ra = build.fee_line({ started = JAN.from, terminated = cut }, { amount = amount, code = "p" }, JAN, "USD").amount
  local rb = build.fee_line({ started = cut }, { amount = amount, code = "p" }, JAN, "USD").amount
  if (ra + rb - amount):abs() > D("0.01") then rounded_ok = false end
end
t.ok(parts_ok, "200 random splits: the two prorated parts sum exactly to the fee")
t.ok(rounded_ok, "and the two rounded fee lines are within a cent of it")

-- property: random invoices keep total = subtotal - discounts + taxes - credits, at scale
local all_ok, why = true, nil
for i = 1, 200 do
  local cur = ({ "USD", "EUR", "JPY", "BHD" })[math.random(1, 4)]
  local p = { code = "r", name = "R", interval = "monthly", amount = tostring(math.random(0, 50000)) .. ".37",
              currency = cur, version = 1, minimum_commitment = math.random() < 0.3 and tostring(math.random(0, 90000)) or nil,
              charges = { { id = "calls", metric = "api_calls", model = "standard",
                            properties = { amount = "0.00" .. math.random(1, 999) } } } }
  local started = JAN.from + math.random(-5, 20) * DAY
  local r = build.compute(inputs({ plan = p, currency = cur,
    subscription = { id = "s" .. i, tenant = "a", started = started },
    usage = usage_fixture(calls(math.random(0, 300), JAN.from + 25 * DAY)),
    coupons = function(sub) return { { coupon = "p", amount = sub * D(tostring(math.random(0, 30))) / 100 } } end,
    tax_rates = { { rate = tostring(math.random(0, 2500) / 100), name = "t1" }, { rate = "3.333", name = "t2" } },
    credits = { { kind = "wallet", ref = "a", amount = D(tostring(math.random(0, 2000))) / 7 } } }))
  local ok, err = build.check(r)
  if not ok then all_ok, why = false, cur .. " case " .. i .. ": " .. err; break end
end
t.ok(all_ok, "200 random invoices keep the invariants" .. (why and (": " .. why) or ""))

t.raises(function() build.compute(inputs({ currency = "EURO" })) end, "currency", "an unknown currency is refused")
t.done()
