-- steward.success.health: the raw signals of a tenant's health (usage trend, incidents and
-- MTTR, open tickets, payment status, adoption), the weighted score a formula makes of them,
-- and the score's history. The formula itself — which signal counts how much and how a raw
-- signal becomes 0..1 — is the shipped policy success.health, which users edit; this module
-- only reads the store and keeps the history. A score more than `drop` points below the
-- previous one is announced as success.health_dropped, in the same commit as the score.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local tickets = require "steward.success.tickets"
local onboarding = require "steward.success.onboarding"
local usage = require "steward.success.usage"
require "steward.success.schema"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require, unpack =
  type, pairs, ipairs, tostring, tonumber, error, pcall, require, unpack
local format, floor, max, min, sort = string.format, math.floor, math.max, math.min, table.sort

local M = {}

local ready = domain.migrator("success")
local DAY = 86400

-- slope(counts) -> the least-squares slope of counts over their index, relative to their mean
-- (per day: +0.1 = growing 10 % of the average a day); 0 without enough data.
function M.slope(counts)
  local n = #counts
  if n < 2 then return 0 end
  local sx, sy, sxx, sxy = 0, 0, 0, 0
  for i, y in ipairs(counts) do sx, sy, sxx, sxy = sx + i, sy + y, sxx + i * i, sxy + i * y end
  local den = n * sxx - sx * sx
  local mean = sy / n
  if den == 0 or mean == 0 then return 0 end
  return ((n * sxy - sx * sy) / den) / mean
end

local function count(st, sql, ...)
  local rows, err = st.db:query(sql, ...)
  if not rows then return nil, err end
  return tonumber(rows[1] and rows[1].n) or 0
end

-- signals(st, tenant, {now=, days = 14}) -> {usage = {days = {...}, total, slope}, incidents =
-- {count, open, mttr}, tickets = {open}, payment = "ok"|"failed"|"unknown", adoption =
-- {reached, total, share (onboarding milestones), routes (distinct API routes its tokens used)}} | nil, err
function M.signals(st, tenant, opts)
  if type(tenant) ~= "string" or tenant == "" then error("health.signals: tenant: string expected", 2) end
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = util.now(opts.now)
  local days = opts.days or 14
  local start = floor(now / DAY) * DAY - (days - 1) * DAY
  local per_day, total = {}, 0
  for d = 1, days do
    local from = start + (d - 1) * DAY
    local n
    n, err = count(st, "SELECT COUNT(*) AS n FROM events WHERE tenant = $1 AND time >= $2 AND time < $3",
      tenant, from, from + DAY)
    if not n then return nil, err end
    per_day[d], total = n, total + n
  end
  -- Incidents are tenant-wide when their labels say tenant=<id> (alerts labelled by tenant).
  ok, err = require("steward.alerting.incidents").ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT state, created_at, resolved_at, labels FROM incidents WHERE created_at >= $1",
    now - days * DAY)
  if not rows then return nil, err end
  local inc, open_inc, repair, repaired = 0, 0, 0, 0
  for _, r in ipairs(rows) do
    local labels = json.decode(r.labels) or {}
    if labels.tenant == tenant then
      inc = inc + 1
      if r.state == "triggered" or r.state == "acknowledged" then open_inc = open_inc + 1 end
      if type(r.resolved_at) == "number" then repair, repaired = repair + (r.resolved_at - r.created_at), repaired + 1 end
    end
  end
  local open_tickets
  open_tickets, err = tickets.open_count(st, tenant)
  if not open_tickets then return nil, err end
  rows, err = st.db:query("SELECT type FROM events WHERE tenant = $1 AND type IN ('billing.payment.failed', " ..
    "'billing.payment.succeeded') ORDER BY seq DESC LIMIT 1", tenant)
  if not rows then return nil, err end
  local payment = rows[1] and (rows[1].type == "billing.payment.failed" and "failed" or "ok") or "unknown"
  local reached
  reached, err = onboarding.reached(st, tenant)
  if not reached then return nil, err end
  local nreached = 0
  for _ in pairs(reached) do nreached = nreached + 1 end
  local routes
  routes, err = usage.features(st, tenant, now - days * DAY)
  if not routes then return nil, err end
  local declared = opts.milestones or nreached
  return {
    usage = { days = per_day, total = total, slope = M.slope(per_day) },
    incidents = { count = inc, open = open_inc, mttr = repaired > 0 and repair / repaired or json.null },
    tickets = { open = open_tickets },
    payment = payment,
    adoption = { reached = nreached, total = declared, share = declared > 0 and min(1, nreached / declared) or 0,
                 routes = routes },
  }
end

-- score(signals, formula) -> score 0..100, parts {name = {weight, value 0..1, points}}: the
-- weighted mean of formula.score[name](signals) over formula.weights (a weight 0 leaves one out).
function M.score(signals, formula)
  if type(formula) ~= "table" or type(formula.weights) ~= "table" or type(formula.score) ~= "table" then
    error("health.score: formula: {weights = {...}, score = {name = function(signals)}} expected", 2)
  end
  local names = {}
  for name in pairs(formula.weights) do names[#names + 1] = name end
  sort(names)
  local sum_w, sum, parts = 0, 0, {}
  for _, name in ipairs(names) do
    local w = formula.weights[name]
    local f = formula.score[name]
    if type(f) ~= "function" then error("health.score: formula.score." .. tostring(name) .. ": function expected", 2) end
    local v = f(signals)
    if type(v) ~= "number" or v ~= v then
      error(format("health.score: signal %s: its function returned %s, a number from 0 to 1 expected", name, tostring(v)), 2)
    end
    v = max(0, min(1, v))
    sum_w, sum = sum_w + w, sum + w * v
    parts[name] = { weight = w, value = floor(v * 1000 + 0.5) / 1000 }
  end
  if sum_w <= 0 then error("health.score: formula.weights: at least one positive weight expected", 2) end
  for _, p in pairs(parts) do p.points = floor(p.weight * p.value / sum_w * 1000 + 0.5) / 10 end
  return floor(sum / sum_w * 1000 + 0.5) / 10, parts
end

local function history_row(r) return { tenant = r.tenant, at = r.at, score = r.score, parts = json.decode(r.parts) or {} } end

-- history(st, tenant [, limit]) -> scores, newest first | nil, err
function M.history(st, tenant, limit)
  local ok, err = ready(st)
  if not ok then return nil, err end
  limit = util.limit_arg(limit, "health.history: limit", 100, 10000)
  local rows
  rows, err = st.db:query("SELECT tenant, at, score, parts FROM success_health WHERE tenant = $1 ORDER BY at DESC LIMIT $2",
    tenant, limit)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = history_row(r) end
  return rows
end

-- latest(st [, tenant]) -> each tenant's latest score (one tenant's, when named) | nil, err
function M.latest(st, tenant)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if tenant then w:add("h.tenant = ?", tenant) end
  local rows
  rows, err = st.db:query("SELECT h.tenant, h.at, h.score, h.parts FROM success_health h JOIN (SELECT tenant, MAX(at) AS at " ..
    "FROM success_health GROUP BY tenant) l ON l.tenant = h.tenant AND l.at = h.at" .. w:clause() .. " ORDER BY h.tenant",
    unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = history_row(r) end
  return rows
end

-- record(st, tenant, score, parts, {now=, drop = 10}) -> {tenant, at, score, previous, dropped}
-- | nil, err. A record for one (tenant, second) is kept once: a re-run changes nothing.
function M.record(st, tenant, score, parts, opts)
  if type(tenant) ~= "string" or tenant == "" then error("health.record: tenant: string expected", 2) end
  if type(score) ~= "number" then error("health.record: score: number expected", 2) end
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = floor(util.now(opts.now))
  local prev
  prev, err = domain.one(st, history_row, "SELECT tenant, at, score, parts FROM success_health WHERE tenant = $1 AND at < $2 " ..
    "ORDER BY at DESC LIMIT 1", tenant, now)
  if prev == nil then return nil, err end
  local stmts = { { "INSERT INTO success_health (tenant, at, score, parts) VALUES ($1,$2,$3,$4) ON CONFLICT (tenant, at) DO NOTHING",
    tenant, now, score, json.encode(parts or {}) } }
  local drop = opts.drop or 10
  local dropped = prev and prev.score - score > drop
  local out = { tenant = tenant, at = now, score = score, previous = prev and prev.score or nil, dropped = dropped or false }
  if not dropped then
    local res
    res, err = st.db:batch(stmts)
    if not res then return nil, err end
    return out
  end
  local ev = { id = format("health:%s:%d", tenant, now), type = "success.health_dropped", tenant = tenant, time = now,
    source = "steward.success.health", data = { tenant = tenant, score = score, previous = prev.score,
      drop = floor((prev.score - score) * 10 + 0.5) / 10, parts = parts or {} } }
  local res, fresh = domain.commit(st, stmts, ev, now)
  if not res then return nil, fresh end
  events.published(st, fresh)
  return out
end

-- tenants(st [, {now=, days = 14}]) -> the tenant ids to score: the tenant records
-- (steward.tenants, when present; removed ones left out) and the tenants seen on events lately.
function M.tenants(st, opts)
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local set, list = {}, {}
  local function add(id)
    if type(id) == "string" and id ~= "" and not set[id] then set[id] = true; list[#list + 1] = id end
  end
  local okt, ten = pcall(require, "steward.tenants")
  if okt and type(ten) == "table" and type(ten.list) == "function" then
    local okl, recs = pcall(ten.list, {})
    for _, r in ipairs(okl and type(recs) == "table" and recs or {}) do
      if r.state ~= "removed" and r.state ~= "failed" then add(r.id) end
    end
  end
  local rows
  rows, err = st.db:query("SELECT DISTINCT tenant FROM events WHERE tenant IS NOT NULL AND time >= $1",
    util.now(opts.now) - (opts.days or 14) * DAY)
  if not rows then return nil, err end
  for _, r in ipairs(rows) do add(r.tenant) end
  sort(list)
  return list
end

domain.default_store(M, { "signals", "history", "latest", "record", "tenants" })

return M
