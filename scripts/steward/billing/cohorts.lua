-- steward.billing.cohorts: retention cohorts by start month, from the same month-end MRR
-- snapshots as steward.billing.mrr, so a cohort's size is that month's count of "new" tenants.
-- For each later month: how many of the cohort still pay (logo retention) and what they pay
-- against what they paid at the end of their first month (net revenue retention: expansion
-- counts, churn and contraction take away; a reactivated tenant counts again). Per currency.
-- docs/billing/mrr.md.
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"
local mrr = require "steward.billing.mrr"

local type, pairs, ipairs, error, rawequal = type, pairs, ipairs, error, rawequal

local M = {}

local ZERO = decimal.new(0)
local HUNDRED = decimal.new(100)

-- compute(history, {from=, to=, currency=, now=, yield=}) -> cohorts: for each currency (sorted) and
-- each start month from `from` to `to` that has tenants, {currency, cohort = "2026-01", from,
-- size, mrr (the cohort's MRR at the end of its first month), months = { {offset = 0, month,
-- customers, mrr, logo_retention, revenue_retention} ... up to the month of `to`}}. A tenant's
-- start month is the first month it ends with MRR above 0 (a subscription that starts and ends
-- inside one month never was in the MRR, so it is in no cohort). Retentions are exact decimal
-- fractions of 1 (0.75 = 75 %).
function M.compute(history, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("cohorts.compute: opts: table expected", 2) end
  local steps = mrr.steps(history, { currency = opts.default_currency, yield = opts.yield })
  local breathe = mrr.breather(opts.yield)
  -- The start months need the whole history, whatever `from` shows.
  local all_from
  for _, tenants in pairs(steps) do
    for _, st in pairs(tenants) do
      if st[1] and (not all_from or st[1].at < all_from) then all_from = st[1].at end
    end
  end
  local want = opts.from ~= nil and mrr.month_arg(opts.from, "cohorts: from") or nil
  local start = all_from
  if want and (not start or want < start) then start = want end
  local months, bounds = mrr.range({ from = start, to = opts.to, now = opts.now }, steps)
  local shown_from = want or months[1]
  local out = {}
  for _, cur in ipairs(mrr.sorted_keys(steps)) do
    if opts.currency == nil or opts.currency == cur then
      local snaps = mrr.snapshots(steps[cur], bounds)
      local cohorts = {} -- month index -> {tenants}
      for _, tenant in ipairs(mrr.sorted_keys(snaps)) do
        local row = snaps[tenant]
        for k = 1, #months do
          if row[k + 1] > ZERO then
            cohorts[k] = cohorts[k] or {}
            cohorts[k][#cohorts[k] + 1] = tenant
            break
          end
        end
      end
      for k, m in ipairs(months) do
        local members = cohorts[k]
        if members and m >= shown_from then
          local base = ZERO
          for _, tenant in ipairs(members) do base = base + snaps[tenant][k + 1] end
          local c = { currency = cur, cohort = mrr.month_key(m), from = m, size = #members, mrr = base, months = {} }
          -- month k: everyone pays (that is what puts them in the cohort); later months add up
          -- only the members whose value changed (the same object when it did not)
          local n, sum = #members, base
          for j = k, #months do
            if j > k then
              for _, tenant in ipairs(members) do
                breathe()
                local was, v = snaps[tenant][j], snaps[tenant][j + 1]
                if not rawequal(was, v) then
                  sum = sum - was + v
                  if was:is_zero() and v > ZERO then n = n + 1 elseif was > ZERO and v:is_zero() then n = n - 1 end
                end
              end
            end
            c.months[#c.months + 1] = { offset = j - k, month = mrr.month_key(months[j]), customers = n, mrr = sum,
              logo_retention = decimal.new(n) / #members,
              revenue_retention = base > ZERO and sum / base or ZERO }
          end
          out[#out + 1] = c
        end
      end
    end
  end
  return out
end

-- display(cohort, {exact = false}) -> the cohort as JSON wants it: amounts at the currency's
-- scale, retentions in percent with two decimals (rounded half-even, for display only); with
-- exact, the exact values (retentions as fractions of 1, "2/3" when that has no finite decimal).
function M.display(c, opts)
  local exact = opts and opts.exact
  local scale = decimal.scale(c.currency) or 2
  local function money(d) return exact and tostring(d) or d:round(scale, "half_even"):format(scale) end
  local function pct(d) return exact and tostring(d) or (d * HUNDRED):round(2, "half_even"):format(2) end
  local o = { currency = c.currency, cohort = c.cohort, from = util.format_rfc3339(c.from), size = c.size,
    mrr = money(c.mrr), months = {} }
  for i, m in ipairs(c.months) do
    o.months[i] = { offset = m.offset, month = m.month, customers = m.customers, mrr = money(m.mrr),
      logo_retention = pct(m.logo_retention), revenue_retention = pct(m.revenue_retention) }
  end
  return o
end

-- report(opts) -> compute() over the stored history (steward.billing.subscriptions) | nil, err
function M.report(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("cohorts.report: opts: table expected", 2) end
  local h, err = mrr.history(opts)
  if not h then return nil, err end
  return M.compute(h, opts)
end

return M
