-- steward.billing.mrr on fixture histories (the shape of steward.billing.subscriptions.history):
-- plan fees normalized to a month exactly, each movement of a worked year (new, expansion,
-- contraction, churn at a month boundary, a same-month new-then-churn that never shows,
-- reactivation), upgrades on the same and on a new subscription, currencies kept apart, bad
-- histories refused naming the entry and field; and, on random histories, the movements always
-- reconcile and each month's end is the sum an independent count of active subscriptions gives.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"
local mrr = require "steward.billing.mrr"

local D = decimal.new
local function utc(y, m, d, h) return util.days_from_civil(y, m, d) * 86400 + (h or 0) * 3600 end
local function month(rows, key, cur)
  for _, r in ipairs(rows) do
    if r.month == key and r.currency == (cur or "USD") then return r end
  end
end
local function amounts(r)
  local o = {}
  for _, k in ipairs({ "mrr_start", "new", "expansion", "contraction", "churn", "reactivation", "mrr_end" }) do
    o[k] = tostring(r[k])
  end
  return o
end

-- normalization: exact fractions, no rounding
t.is(tostring(mrr.normalize(D("10"), "weekly")), "130/3", "weekly 10 is 10 x 52 / 12 = 130/3 a month, exact")
t.is(tostring(mrr.normalize(D("30"), "quarterly")), "10", "quarterly 30 is 10 a month")
t.is(tostring(mrr.normalize(D("120"), "yearly")), "10", "yearly 120 is 10 a month")
t.is(tostring(mrr.normalize(D("9.99"), "monthly")), "9.99", "monthly is as it is")
t.raises(function() mrr.normalize(D("1"), "daily") end, "interval: daily", "an unknown interval is named")
t.raises(function() mrr.normalize(1.5, "monthly") end, "amount: a decimal expected", "a Lua number is refused")

-- A worked year of three tenants (USD) and one in EUR.
local H = {
  { subscription = "s-a1", tenant = "acme", at = utc(2026, 1, 10), change = "created", plan = "pro", amount = "100", interval = "monthly" },
  { subscription = "s-a1", tenant = "acme", at = utc(2026, 1, 10), change = "activated", plan = "pro", amount = "100", interval = "monthly" },
  { subscription = "s-b1", tenant = "bolt", at = utc(2026, 1, 20), change = "activated", plan = "y", amount = "1200", interval = "yearly" },
  -- February: acme's upgrade in place (+50); cyan starts and ends inside the month (no movement)
  { subscription = "s-a1", tenant = "acme", at = utc(2026, 2, 5), change = "upgraded", plan = "max", previous_plan = "pro", amount = "150", interval = "monthly" },
  { subscription = "s-c1", tenant = "cyan", at = utc(2026, 2, 3), change = "activated", plan = "pro", amount = "50", interval = "monthly" },
  { subscription = "s-c1", tenant = "cyan", at = utc(2026, 2, 20), change = "terminated", plan = "pro" },
  -- March: bolt terminated at the first second of March: churned in March, not February
  { subscription = "s-b1", tenant = "bolt", at = utc(2026, 3, 1), change = "terminated", plan = "y" },
  -- April: acme moves to a new, cheaper subscription replacing its plan max (-70)
  { subscription = "s-a2", tenant = "acme", at = utc(2026, 4, 30, 23), change = "downgraded", plan = "lite", previous_plan = "max", amount = "80", interval = "monthly" },
  -- May: bolt is back (reactivation), on a weekly plan: 25 x 52 / 12 = 325/3
  { subscription = "s-b2", tenant = "bolt", at = utc(2026, 5, 2), change = "activated", plan = "w", amount = "25", interval = "weekly" },
  { subscription = "s-e1", tenant = "euro", at = utc(2026, 1, 1), change = "activated", plan = "eu", amount = "30", interval = "quarterly", currency = "EUR" },
}

local rows = mrr.compute(H, { from = "2026-01", to = "2026-05", detail = true })
t.is(#rows, 10, "five months in each of two currencies")
t.is_deeply(amounts(month(rows, "2026-01")), { mrr_start = "0", new = "200", expansion = "0", contraction = "0",
  churn = "0", reactivation = "0", mrr_end = "200" }, "January: two new tenants (the yearly one at 100 a month)")
t.is_deeply(amounts(month(rows, "2026-02")), { mrr_start = "200", new = "0", expansion = "50", contraction = "0",
  churn = "0", reactivation = "0", mrr_end = "250" }, "February: acme's upgrade; cyan's new-then-churn does not show")
t.is_deeply(amounts(month(rows, "2026-03")), { mrr_start = "250", new = "0", expansion = "0", contraction = "0",
  churn = "100", reactivation = "0", mrr_end = "150" }, "March: bolt's termination at 00:00 on the 1st is March's churn")
t.is_deeply(amounts(month(rows, "2026-04")), { mrr_start = "150", new = "0", expansion = "0", contraction = "70",
  churn = "0", reactivation = "0", mrr_end = "80" }, "April: the downgrade to a new subscription ends the old one")
t.is_deeply(amounts(month(rows, "2026-05")), { mrr_start = "80", new = "0", expansion = "0", contraction = "0",
  churn = "0", reactivation = "325/3", mrr_end = "565/3" }, "May: bolt back on a weekly plan is a reactivation, exact")
t.is_deeply(month(rows, "2026-05").movements, { { tenant = "bolt", kind = "reactivation", amount = D(325) / 3 } },
  "detail: who moved, how, by how much")
t.is(month(rows, "2026-02").counts.expansion, 1, "counts: one expansion in February")
t.is(month(rows, "2026-03").customers_end, 1, "customers at March's end: acme")
t.is(tostring(month(rows, "2026-01", "EUR").mrr_end), "10", "EUR kept apart: quarterly 30 is 10 a month")
for _, r in ipairs(rows) do t.ok(mrr.reconciles(r), "reconciles: " .. r.currency .. " " .. r.month) end

local shown = mrr.display(month(rows, "2026-05"))
t.is(shown.reactivation, "108.33", "display: rounded to the currency's scale at the edge only")
t.is(shown.mrr_end, "188.33", "display: the end, rounded")
t.is(shown.from, "2026-05-01T00:00:00Z", "display: times in RFC 3339")
t.is(mrr.display(month(rows, "2026-05"), { exact = true }).mrr_end, "565/3", "display exact: the exact value")

t.is(#mrr.compute(H, { from = "2026-03", to = "2026-03", currency = "EUR" }), 1, "currency filter: one row")
local mar = mrr.compute(H, { from = "2026-03", to = "2026-03", currency = "USD" })[1]
t.is(tostring(mar.mrr_start), "250", "from: the start of a later month counts the history before it")
local only = mrr.compute(H, { from = "2026-05", to = "2026-05", tenant = "bolt" })
t.is(tostring(only[1].reactivation), "325/3", "tenant filter: bolt's May is its reactivation")

-- An upgrade to a new subscription that names the one it replaces.
local up = mrr.compute({
  { subscription = "x1", tenant = "t", at = utc(2026, 1, 1), change = "activated", plan = "a", amount = "10", interval = "monthly" },
  { subscription = "x2", tenant = "t", at = utc(2026, 1, 2), change = "activated", plan = "a", amount = "10", interval = "monthly" },
  { subscription = "x3", tenant = "t", at = utc(2026, 2, 9), change = "upgraded", previous = "x1", plan = "b", amount = "25", interval = "monthly" },
}, { from = "2026-01", to = "2026-02" })
t.is(tostring(up[2].expansion), "15", "previous names the replaced subscription: 20 -> 35, x2 kept")

-- A trial pays nothing: the fee counts from the trial's end (here in the next month), and an
-- upgrade during the trial keeps the trial it carries.
local tr = mrr.compute({
  { subscription = "t1", tenant = "t", at = utc(2026, 1, 20), change = "activated", plan = "a", amount = "30", interval = "monthly",
    trial_ends = utc(2026, 2, 3) },
  { subscription = "t2", tenant = "u", at = utc(2026, 1, 5), change = "activated", plan = "a", amount = "30", interval = "monthly",
    trial_ends = utc(2026, 1, 19) },
  { subscription = "t3", tenant = "v", at = utc(2026, 1, 6), change = "activated", plan = "a", amount = "30", interval = "monthly",
    trial_ends = utc(2026, 3, 1) },
  { subscription = "t4", tenant = "v", at = utc(2026, 1, 16), change = "upgraded", previous = "t3", plan = "b", amount = "50",
    interval = "monthly", trial_ends = utc(2026, 3, 1) },
  { subscription = "t5", tenant = "w", at = utc(2026, 1, 6), change = "activated", plan = "a", amount = "30", interval = "monthly",
    trial_ends = utc(2026, 2, 10) },
  { subscription = "t5", tenant = "w", at = utc(2026, 1, 30), change = "terminated" },
}, { from = "2026-01", to = "2026-03", detail = true })
t.is(tostring(tr[1].mrr_end), "30", "January: only u's trial ended inside the month")
t.is(tostring(tr[2].new), "30", "February: t's trial ends, it is new then")
t.is(tostring(tr[3].new), "50", "March: v's upgraded subscription pays from the trial's end (00:00 on the 1st)")
t.is(tostring(tr[3].mrr_end), "110", "... and w, ended inside its trial, never paid")

-- Refusals name the entry and the field.
local function refused(h, pattern, name)
  local ok, err = pcall(mrr.compute, h, { to = "2026-01" })
  t.ok(not ok, name)
  t.like(tostring(err), pattern, "... " .. pattern)
end
refused({ { subscription = "s", tenant = "t", at = 1, change = "bought" } }, "history%[1%]%.change: bought", "an unknown change")
refused({ { subscription = "s", tenant = "t", at = 1, change = "activated", amount = 9.5, interval = "monthly" } },
  "history%[1%]%.amount: .*fraction", "a Lua number with a fraction as the fee")
refused({ { subscription = "s", tenant = "t", at = 1, change = "activated", amount = "-1", interval = "monthly" } },
  "history%[1%]%.amount: %-1 is negative", "a negative fee")
refused({ { subscription = "s", tenant = "t", at = 1, change = "activated", amount = "1", interval = "daily" } },
  "history%[1%]%.interval: daily", "an unknown interval")
refused({ { subscription = "s", tenant = "t", at = 1, change = "activated", amount = "1", interval = "monthly" },
  { subscription = "s", tenant = "t", at = 2, change = "upgraded", plan = "b" } }, "history%[2%]%.amount", "an upgrade without its fee")
refused({ { subscription = "s", tenant = "t", at = 1, change = "activated", amount = "1", interval = "monthly", currency = "XXY" } },
  "history%[1%]%.currency: XXY: unknown currency", "an unknown currency")
refused({ { subscription = "s", at = 1, change = "activated" } }, "history%[1%]%.tenant", "no tenant")
t.raises(function() mrr.compute(H, { from = "2026-13" }) end, "from: 2026%-13", "a bad month is named")
t.raises(function() mrr.compute(H, { from = "2026-05", to = "2026-01" }) end, "to: before from", "to before from")

-- A long history lets the loop breathe: yield is called every 1,024 steps, the figures unchanged.
do
  local long = {}
  for i = 1, 3000 do
    long[i] = { subscription = "l" .. i, tenant = "t" .. (i % 700), at = utc(2026, 1, 1) + i * 3600, change = "activated",
      amount = "1", interval = "monthly" }
  end
  local calls = 0
  local a = mrr.compute(long, { from = "2026-01", to = "2026-06" })
  local b = mrr.compute(long, { from = "2026-01", to = "2026-06", yield = function() calls = calls + 1 end })
  t.ok(calls >= 2, "yield: called as the history is read (" .. calls .. " times)")
  t.is(tostring(b[#b].mrr_end), tostring(a[#a].mrr_end), "yield: the same figures")
  t.is(tostring(a[#a].mrr_end), "3000", "3,000 subscriptions of 1 a month")
  t.raises(function() mrr.compute(long, { yield = true }) end, "yield: a function expected", "a yield that is no function")
end

-- Property: random histories reconcile every month, a month's end is the next one's start, and
-- the end is what an independent count of the subscriptions active at the boundary gives.
local seed = tonumber(os.getenv("SEED") or "") or 18
math.randomseed(seed)
t.diag("random histories, seed " .. seed)
local INTERVALS = { "weekly", "monthly", "quarterly", "yearly" }
local fails = 0
for round = 1, 60 do
  local h, subs, n = {}, {}, 0
  local tenants = { "a", "b", "c", "d", "e" }
  local at = utc(2025, 11, 1)
  for _ = 1, math.random(5, 40) do
    at = at + math.random(0, 20) * 86400 + math.random(0, 3) * 3600
    local r = math.random()
    if r < 0.45 or n == 0 then
      n = n + 1
      local id = "s" .. n
      local e = { subscription = id, tenant = tenants[math.random(#tenants)], at = at, change = "activated", plan = "p",
        amount = tostring(math.random(0, 50000) / 100), interval = INTERVALS[math.random(4)],
        currency = math.random() < 0.8 and "USD" or "JPY",
        trial_ends = math.random() < 0.3 and at + math.random(1, 40) * 86400 or nil }
      subs[id] = e
      h[#h + 1] = e
    elseif r < 0.55 then
      -- a change to a new subscription that names the one it replaces
      local old = subs["s" .. math.random(n)]
      n = n + 1
      local id = "s" .. n
      local e = { subscription = id, tenant = old.tenant, at = at, change = math.random() < 0.5 and "upgraded" or "downgraded",
        plan = "p", previous = old.subscription, amount = tostring(math.random(0, 50000) / 100),
        interval = INTERVALS[math.random(4)], currency = old.currency }
      subs[id] = e
      h[#h + 1] = e
    else
      local id = "s" .. math.random(n)
      local s = subs[id]
      local c = ({ "terminated", "upgraded", "downgraded", "reactivated" })[math.random(4)]
      local e = { subscription = id, tenant = s.tenant, at = at, change = c, plan = "p", currency = s.currency }
      if c == "upgraded" or c == "downgraded" then
        e.amount, e.interval = tostring(math.random(0, 50000) / 100), INTERVALS[math.random(4)]
      end
      h[#h + 1] = e
    end
  end
  local list = mrr.compute(h, { from = "2025-10", to = "2027-01" })
  -- the oracle: replay the history in order, keeping each subscription's price and state
  local function oracle(cur, b)
    local state = {}
    for _, e in ipairs(h) do
      if e.at < b then
        local s = state[e.subscription] or {}
        state[e.subscription] = s
        if e.previous and e.subscription ~= e.previous and state[e.previous] and not s.seen then
          state[e.previous].on = false -- the replaced subscription ends
        end
        s.seen = true
        if e.change == "terminated" then s.on = false
        else
          s.on = true
          if e.amount then s.v = D(e.amount) * mrr.PER_MONTH[e.interval] end
          s.trial = e.trial_ends -- each start carries its own trial, or none
        end
        s.cur = e.currency
      end
    end
    local sum = D(0)
    for _, s in pairs(state) do
      if s.on and s.cur == cur and not (s.trial and s.trial >= b) then sum = sum + s.v end
    end
    return sum
  end
  local prev = {}
  for _, r in ipairs(list) do
    local ok = mrr.reconciles(r) and r.mrr_end == oracle(r.currency, r.to)
      and (prev[r.currency] == nil or prev[r.currency] == r.mrr_start)
    for _, k in ipairs(mrr.MOVEMENTS) do ok = ok and r[k] >= D(0) end
    if not ok then
      fails = fails + 1
      t.diag(("round %d %s %s: %s"):format(round, r.currency, r.month, require("steward.json").encode(amounts(r))))
    end
    prev[r.currency] = r.mrr_end
  end
end
t.is(fails, 0, "60 random histories: every month reconciles, chains, and matches the oracle")

t.done()
