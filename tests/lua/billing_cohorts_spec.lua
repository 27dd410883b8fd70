-- steward.billing.cohorts on fixture histories: a cohort per start month (the month a tenant
-- first ends with MRR), its logo and net revenue retention month by month (expansion above
-- 100 %, churn and contraction below, a reactivated tenant back in its first cohort), a
-- same-month new-then-churn in no cohort, currencies apart; and, on random histories, the
-- cohorts of a month add up to that month's MRR and paying customers in steward.billing.mrr.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"
local mrr = require "steward.billing.mrr"
local cohorts = require "steward.billing.cohorts"

local D = decimal.new
local function utc(y, m, d, h) return util.days_from_civil(y, m, d) * 86400 + (h or 0) * 3600 end

local H = {
  { subscription = "s-a1", tenant = "acme", at = utc(2026, 1, 10), change = "activated", plan = "pro", amount = "100", interval = "monthly" },
  { subscription = "s-b1", tenant = "bolt", at = utc(2026, 1, 20), change = "activated", plan = "y", amount = "1200", interval = "yearly" },
  { subscription = "s-a1", tenant = "acme", at = utc(2026, 2, 5), change = "upgraded", plan = "max", amount = "150", interval = "monthly" },
  { subscription = "s-c1", tenant = "cyan", at = utc(2026, 2, 3), change = "activated", plan = "pro", amount = "50", interval = "monthly" },
  { subscription = "s-c1", tenant = "cyan", at = utc(2026, 2, 20), change = "terminated" },
  { subscription = "s-b1", tenant = "bolt", at = utc(2026, 3, 1), change = "terminated" },
  { subscription = "s-a2", tenant = "acme", at = utc(2026, 4, 30, 23), change = "downgraded", plan = "lite", previous_plan = "max", amount = "80", interval = "monthly" },
  { subscription = "s-b2", tenant = "bolt", at = utc(2026, 5, 2), change = "activated", plan = "w", amount = "25", interval = "weekly" },
  { subscription = "s-d1", tenant = "dune", at = utc(2026, 3, 15), change = "activated", plan = "pro", amount = "40", interval = "monthly" },
  { subscription = "s-e1", tenant = "euro", at = utc(2026, 1, 1), change = "activated", plan = "eu", amount = "30", interval = "quarterly", currency = "EUR" },
}

local list = cohorts.compute(H, { from = "2026-01", to = "2026-05" })
t.is(#list, 3, "cohorts: USD January and March, EUR January (cyan is in none, bolt's return is not a new cohort)")
local jan, mar, eur = list[2], list[3], list[1]
t.is(eur.currency .. " " .. eur.cohort .. " " .. eur.size, "EUR 2026-01 1", "the EUR cohort first (currencies sorted)")
t.is(jan.cohort .. " " .. jan.size .. " " .. tostring(jan.mrr), "2026-01 2 200", "January: acme and bolt, 200 a month")
t.is(#jan.months, 5, "January's cohort followed to May")
local function row(m) return { m.customers, tostring(m.mrr), tostring(m.logo_retention), tostring(m.revenue_retention) } end
t.is_deeply(row(jan.months[1]), { 2, "200", "1", "1" }, "month 0: everyone, by definition")
t.is_deeply(row(jan.months[2]), { 2, "250", "1", "1.25" }, "month 1: acme's upgrade: 125 % net revenue retention")
t.is_deeply(row(jan.months[3]), { 1, "150", "0.5", "0.75" }, "month 2: bolt churned: half the logos")
t.is_deeply(row(jan.months[4]), { 1, "80", "0.5", "0.4" }, "month 3: acme's downgrade")
t.is_deeply(row(jan.months[5]), { 2, "565/3", "1", "113/120" }, "month 4: bolt reactivated counts in its first cohort again")
t.is(mar.cohort .. " " .. mar.size .. " " .. #mar.months, "2026-03 1 3", "March: dune, followed to May")

local shown = cohorts.display(jan)
t.is_deeply({ shown.months[5].mrr, shown.months[5].logo_retention, shown.months[5].revenue_retention },
  { "188.33", "100.00", "94.17" }, "display: money at the currency's scale, retentions in percent, rounded at the edge")
t.is(cohorts.display(jan, { exact = true }).months[5].revenue_retention, "113/120", "display exact: the fraction")

local later = cohorts.compute(H, { from = "2026-03", to = "2026-05", currency = "USD" })
t.is(#later, 1, "from: only cohorts that start from March (the start months still come from the whole history)")
t.is(later[1].cohort, "2026-03", "... dune's")

-- Property: the cohorts of a month hold every paying tenant once.
local seed = tonumber(os.getenv("SEED") or "") or 7
math.randomseed(seed)
t.diag("random histories, seed " .. seed)
local INTERVALS = { "weekly", "monthly", "quarterly", "yearly" }
local bad = 0
for _ = 1, 40 do
  local h, n, at = {}, 0, utc(2025, 12, 1)
  local owner = {}
  for _ = 1, math.random(5, 30) do
    at = at + math.random(0, 25) * 86400
    if math.random() < 0.5 or n == 0 then
      n = n + 1
      owner[n] = ({ "a", "b", "c", "d" })[math.random(4)]
      h[#h + 1] = { subscription = "s" .. n, tenant = owner[n], at = at, change = "activated",
        amount = tostring(math.random(1, 9999)), interval = INTERVALS[math.random(4)] }
    else
      local k = math.random(n)
      local c = ({ "terminated", "upgraded", "reactivated" })[math.random(3)]
      h[#h + 1] = { subscription = "s" .. k, tenant = owner[k], at = at, change = c,
        amount = c == "upgraded" and tostring(math.random(1, 9999)) or nil, interval = c == "upgraded" and "monthly" or nil }
    end
  end
  local months = mrr.compute(h, { from = "2025-12", to = "2026-12" })
  local cs = cohorts.compute(h, { from = "2025-12", to = "2026-12" })
  for _, m in ipairs(months) do
    local sum, customers = D(0), 0
    for _, c in ipairs(cs) do
      for _, x in ipairs(c.months) do
        if x.month == m.month then sum, customers = sum + x.mrr, customers + x.customers end
      end
      if c.months[1].logo_retention ~= D(1) or c.months[1].revenue_retention ~= D(1) then bad = bad + 1 end
    end
    if sum ~= m.mrr_end or customers ~= m.customers_end then
      bad = bad + 1
      t.diag(m.month .. ": cohorts " .. tostring(sum) .. " / " .. customers .. ", mrr " .. tostring(m.mrr_end) .. " / " .. m.customers_end)
    end
  end
end
t.is(bad, 0, "40 random histories: a month's cohorts add up to its MRR and paying customers")

t.done()
