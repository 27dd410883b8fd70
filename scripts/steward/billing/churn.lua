-- steward.billing.churn: churn-risk signals for the customer-success policies. A signal is a
-- reason (a downgrade, a contraction or the end of a tenant's last subscription, a failed
-- payment, usage falling week over week) recorded once per tenant per reason per ISO week
-- (Monday to Monday, UTC) and announced as a billing.churn_risk event {tenant, reason, reasons
-- (every reason of the tenant this week), score, week, detail} in the same commit, so a handler
-- run again after a crash, or a second instance, neither repeats nor loses one. What counts as
-- a reason and how much it weighs is the shipped policy billing.churn_risk; this module keeps
-- the record. docs/billing/mrr.md.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local mrr = require "steward.billing.mrr"
require "steward.billing.churn_schema"

local type, pairs, ipairs, tostring, tonumber, error, floor, min = type, pairs, ipairs, tostring, tonumber, error,
  math.floor, math.min
local format, sort, select, unpack = string.format, table.sort, select, unpack

local M = {}

M.EVENT = "billing.churn_risk"
M.REASONS = {
  churn = "the tenant's last subscription ended (its MRR went to 0)",
  contraction = "a subscription ended while others go on: the tenant's MRR fell",
  downgrade = "a downgrade to a cheaper plan was asked",
  payment_failed = "a payment failed",
  usage_drop = "usage fell week over week",
}
M.WEIGHTS = { churn = 60, contraction = 30, downgrade = 30, payment_failed = 40, usage_drop = 30 }

-- default_weights() -> a fresh plain copy of WEIGHTS (a policy's config default must be plain data)
function M.default_weights()
  local out = {}
  for k, v in pairs(M.WEIGHTS) do out[k] = v end
  return out
end

local ready = domain.migrator("billing_mrr")
local DAY, WEEK = 86400, 7 * 86400
local MONDAY = 4 * DAY -- 1970-01-05 00:00 UTC, the first Monday of the epoch

-- week(t) -> the first second of the ISO week (Monday 00:00 UTC) containing t, and its key
-- "2026-12-07" (that Monday's date)
function M.week(t)
  if type(t) ~= "number" or t ~= t then error("churn.week: t: a Unix time expected", 2) end
  local start = t - (t - MONDAY) % WEEK
  start = floor(start)
  local y, m, d = util.civil_from_days(floor(start / DAY))
  return start, format("%04d-%02d-%02d", y, m, d)
end

-- check_weights(w) -> true | nil, "reason: why" (the policy's config check)
function M.check_weights(w)
  if type(w) ~= "table" then return nil, "a table of reason = points expected" end
  for k, v in pairs(w) do
    if not M.REASONS[k] then
      return nil, tostring(k) .. ": no such reason (churn, contraction, downgrade, payment_failed, usage_drop)"
    end
    if type(v) ~= "number" or v ~= v or v < 0 or v > 100 then return nil, tostring(k) .. ": points from 0 to 100 expected" end
  end
  return true
end

local function reasons_of(st, tenant, week)
  local rows, err = st.db:query("SELECT reason FROM billing_churn_signals WHERE tenant = $1 AND week = $2", tenant, week)
  if not rows then return nil, err end
  local set = {}
  for _, r in ipairs(rows) do set[r.reason] = true end
  return set
end

-- score(reasons, weights) -> 0..100: the points of the reasons, capped at 100
function M.score(reasons, weights)
  local sum = 0
  for _, r in ipairs(reasons) do sum = sum + ((weights or M.WEIGHTS)[r] or 0) end
  return min(100, sum)
end

-- signal(st, tenant, reason, {now=, weights=, detail=}) -> {tenant, reason, week, reasons,
-- score, fresh} | nil, err. fresh is false when the tenant had this reason this week already:
-- nothing is written or announced again.
function M.signal(st, tenant, reason, opts)
  if type(tenant) ~= "string" or tenant == "" then error("churn.signal: tenant: string expected", 2) end
  if not M.REASONS[reason] then
    error(format("churn.signal: reason: %s: churn, contraction, downgrade, payment_failed or usage_drop expected",
      tostring(reason)), 2)
  end
  opts = util.opt_table(opts, "churn.signal: opts")
  local weights = opts.weights or M.WEIGHTS
  local ok, why = M.check_weights(weights)
  if not ok then error("churn.signal: weights." .. why, 2) end
  local err
  ok, err = ready(st)
  if not ok then return nil, err end
  local now = util.now(opts.now)
  local _, week = M.week(now)
  local set
  set, err = reasons_of(st, tenant, week)
  if not set then return nil, err end
  local fresh = not set[reason]
  set[reason] = true
  local reasons = {}
  for r in pairs(set) do reasons[#reasons + 1] = r end
  sort(reasons)
  local score = M.score(reasons, weights)
  local out = { tenant = tenant, reason = reason, week = week, reasons = reasons, score = score, fresh = fresh }
  if not fresh then return out end
  local id = format("%s:%s:%s:%s", M.EVENT, tenant, week, reason)
  local detail = type(opts.detail) == "table" and opts.detail or {}
  local stmts = { { "INSERT INTO billing_churn_signals (tenant, week, reason, at, score, detail, event_id) " ..
    "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (tenant, week, reason) DO NOTHING",
    tenant, week, reason, now, score, json.encode(detail), id } }
  local ev = { id = id, type = M.EVENT, tenant = tenant, time = now, source = "steward.billing.churn",
    data = { tenant = tenant, reason = reason, reasons = json.array(reasons), score = score, week = week, detail = detail } }
  local res, published = domain.commit(st, stmts, ev, now)
  if not res then return nil, published end
  events.published(st, published)
  out.fresh = #published > 0
  return out
end

-- signals(st, {tenant=, since=, limit = 100}) -> the signals recorded, newest first
-- ({tenant, week, reason, at, score, detail}) | nil, err
function M.signals(st, f)
  f = util.opt_table(f, "churn.signals: filter")
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if f.tenant ~= nil then w:add("tenant = ?", f.tenant) end
  if f.since ~= nil then w:add("at >= ?", util.time_arg(f.since, "churn.signals: since")) end
  local limit = util.limit_arg(f.limit, "churn.signals: limit", 100, 10000)
  local rows
  rows, err = st.db:query("SELECT tenant, week, reason, at, score, detail FROM billing_churn_signals" .. w:clause() ..
    " ORDER BY at DESC, tenant, reason LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = domain.row(r, { "detail" }) end
  return rows
end

-- usage_drops(st, {now=, drop = 30, min_events = 20}) -> {{tenant, previous, current, fall}}:
-- the tenants whose billing.usage events in the last complete week (Monday to Monday, UTC,
-- counted by the time steward acknowledged them) are at least `drop` % fewer than in the week
-- before, among those with at least min_events that week before (a tenant too small to judge
-- is left out). fall is the percentage, one decimal.
function M.usage_drops(st, opts)
  opts = util.opt_table(opts, "churn.usage_drops: opts")
  local drop = opts.drop == nil and 30 or opts.drop
  if type(drop) ~= "number" or drop <= 0 or drop > 100 then error("churn.usage_drops: drop: a percentage above 0 expected", 2) end
  local least = opts.min_events == nil and 20 or opts.min_events
  if type(least) ~= "number" or least < 1 then error("churn.usage_drops: min_events: a number from 1 expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local this_week = M.week(util.now(opts.now))
  local mid, from = this_week - WEEK, this_week - 2 * WEEK
  local rows
  rows, err = st.db:query("SELECT tenant, SUM(CASE WHEN time >= $1 THEN 1 ELSE 0 END) AS cur, " ..
    "SUM(CASE WHEN time < $1 THEN 1 ELSE 0 END) AS prev FROM events WHERE type = 'billing.usage' AND " ..
    "tenant IS NOT NULL AND time >= $2 AND time < $3 GROUP BY tenant ORDER BY tenant", mid, from, this_week)
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    local prev, cur = tonumber(r.prev) or 0, tonumber(r.cur) or 0
    if prev >= least and (prev - cur) * 100 >= drop * prev then
      out[#out + 1] = { tenant = r.tenant, previous = prev, current = cur,
        fall = floor((prev - cur) * 1000 / prev + 0.5) / 10, week = select(2, M.week(mid)) }
    end
  end
  return out
end

-- termination(tenant, at [, {history=}]) -> "churn" | "contraction" | nil, err: whether the
-- tenant still has MRR (in any currency) once the changes up to `at` are applied, read from
-- the subscription history (steward.billing.subscriptions).
function M.termination(tenant, at, opts)
  if type(tenant) ~= "string" then error("churn.termination: tenant: string expected", 2) end
  if type(at) ~= "number" then error("churn.termination: at: a Unix time expected", 2) end
  opts = opts or {}
  local h, err = mrr.history({ tenant = tenant, history = opts.history })
  if not h then return nil, err end
  local steps = mrr.steps(h, { currency = opts.default_currency })
  for _, tenants in pairs(steps) do
    local v
    for _, p in ipairs(tenants[tenant] or {}) do
      if p.at > at then break end
      v = p.mrr
    end
    if v and not v:is_zero() then return "contraction" end
  end
  return "churn"
end

domain.default_store(M, { "signal", "signals", "usage_drops" })

return M
