-- steward.capacity: capacity history, forecasting reports and cost (docs/scaling/capacity.md,
-- docs/scaling/cost.md). The metric history the autoscaler records (record, history, import),
-- per-service reports of when the load reaches its limit (report), what the supervised
-- instances cost under the time-of-use prices of the `costs` key (cost, per service, tenant or
-- revision), and deferrable jobs run in the cheapest slot before their deadline (cheapest,
-- defer). Functions use the daemon's store; configure() takes the daemon's config.
local metrics = require "steward.metrics"
local history = require "steward.capacity.history"
local prices = require "steward.capacity.prices"
local ccfg = require "steward.capacity.config"
local report = require "steward.capacity.report"
local accounting = require "steward.capacity.accounting"
local defer = require "steward.capacity.defer"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local floor = math.floor

local M = {}

local S = { capacity = ccfg.check({}), model = nil, services = {} }

local horizon_g = metrics.gauge("steward_capacity_horizon_days",
  "Days until a service's load reaches its limit at the current trend (last report)", { "service" })
local util_g = metrics.gauge("steward_capacity_utilisation", "A service's load over its limit (last report)", { "service" })

local function now_of(v)
  if v ~= nil then return v end
  return require("steward.time").now() -- late: `steward test` replaces steward.time
end

local function store()
  local st = require("steward.runtime.store").default()
  if not st then return nil, "capacity: no store is open (inside the daemon there is one)" end
  return st
end

-- configure(cfg): the daemon's config (its capacity, costs and services keys). Raises on a bad
-- key, as config.lua's check does.
function M.configure(cfg)
  cfg = cfg or {}
  S.capacity = ccfg.check(cfg.capacity or {})
  S.model = cfg.costs and prices.check(cfg.costs) or nil
  S.services = cfg.services or {}
end

-- ---- history ----

-- record(series, value [, t]): one sample of "<service>:<metric>"; cheap (memory only).
M.record = history.record

-- flush([now]) -> rows written | nil, err: writes the minutes that have closed.
function M.flush(now)
  local st, err = store()
  if not st then return nil, err end
  return history.flush(st, now_of(now))
end

-- history(series, from, to [, step]) -> {{t, v, min =, max =, n =}, ...} | nil, err
function M.history(series, from, to, step)
  local st, err = store()
  if not st then return nil, err end
  return history.history(st, series, from, to, step)
end

-- import(series, points) -> rows written | nil, err (back-filling: {{t, v}, ...})
function M.import(series, points)
  local st, err = store()
  if not st then return nil, err end
  return history.import(st, series, points)
end

-- series() -> the stored series' names | nil, err
function M.series()
  local st, err = store()
  if not st then return nil, err end
  return history.series(st)
end

-- ---- reports ----

-- report([service [, now]]) -> {reports} (or one report when a service is named) | nil, err
function M.report(service, now)
  if service ~= nil and type(service) ~= "string" then error("capacity.report: service: string expected", 2) end
  local st, err = store()
  if not st then return nil, err end
  if service and not S.capacity.services[service] then
    return nil, "capacity.report: no service " .. service .. " in the capacity config key"
  end
  local list
  list, err = report.all(st, S.capacity.services, now_of(now), service)
  if not list then return nil, err end
  for _, r in ipairs(list) do
    if r.horizon then horizon_g:set(r.horizon.days, r.service) end
    if r.utilisation then util_g:set(r.utilisation, r.service) end
  end
  if service then return list[1] end
  return list
end

-- ---- cost ----

local function need_model(what)
  if not S.model then return nil, what .. ": no cost model: set the costs key (docs/scaling/cost.md)" end
  return S.model
end

local function time_opt(v, what)
  if v == nil then return nil end
  return require("steward.runtime.store.util").time_arg(v, what)
end

local BY = { service = true, tenant = true, revision = true }

-- cost{from, to, by = "service"|"tenant"|"revision", now} -> {currency, from, to, by, rows =
-- {{key, service, tenant, revision, instance_seconds, instance_hours, amount, by_price}}, total} | nil, err
function M.cost(o)
  if o ~= nil and type(o) ~= "table" then error("capacity.cost: options: table expected", 2) end
  o = o or {}
  for k in pairs(o) do
    if k ~= "from" and k ~= "to" and k ~= "by" and k ~= "now" then error("capacity.cost: " .. tostring(k) .. ": unknown field", 2) end
  end
  local by = o.by or "service"
  if not BY[by] then error("capacity.cost: by: service, tenant or revision expected", 2) end
  local model, err = need_model("capacity.cost")
  if not model then return nil, err end
  local now = now_of(o.now)
  local to = time_opt(o.to, "capacity.cost: to") or now
  local from = time_opt(o.from, "capacity.cost: from") or (to - 30 * 86400)
  if from >= to then error("capacity.cost: from: before to expected", 2) end
  local st
  st, err = store()
  if not st then return nil, err end
  local ivs
  ivs, err = accounting.intervals(st, from, to, { now = now, running = accounting.running_from_supervisor() })
  if not ivs then return nil, err end
  local segs
  segs, err = prices.segments(model, from, to)
  if not segs then return nil, err end
  local rows, keys, total = {}, {}, 0
  for _, iv in ipairs(ivs) do
    local svc = S.services[iv.service]
    local tenant = type(svc) == "table" and svc.tenant or nil
    local key = by == "service" and iv.service or by == "tenant" and (tenant or "(none)")
      or (iv.service .. "/" .. iv.revision)
    local r = rows[key]
    if not r then
      r = { key = key, seconds = 0, micros = 0, by_price = {}, services = {} }
      if by ~= "tenant" then r.service = iv.service end
      if by == "revision" then r.revision = iv.revision end
      if by ~= "service" or tenant then r.tenant = tenant end
      rows[key] = r
      keys[#keys + 1] = key
    end
    r.services[iv.service] = true
    local class = prices.class_of(model, iv.service)
    local c = prices.cost(segs, iv.from, iv.to, class, 1, r.by_price)
    r.seconds, r.micros, total = r.seconds + (iv.to - iv.from), r.micros + c, total + c
  end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do
    local r = rows[k]
    local bp = {}
    for name, m in pairs(r.by_price) do bp[name] = prices.amount(m) end
    local svcs = {}
    for s in pairs(r.services) do svcs[#svcs + 1] = s end
    table.sort(svcs)
    out[i] = { key = k, service = r.service, tenant = r.tenant, revision = r.revision, services = svcs,
      instance_seconds = floor(r.seconds * 1000 + 0.5) / 1000, instance_hours = floor(r.seconds / 3.6 + 0.5) / 1000, amount = prices.amount(r.micros), by_price = bp }
  end
  return { currency = model.currency, from = from, to = to, by = by, rows = out, total = prices.amount(total) }
end

-- price([t [, class]]) -> price per instance hour (a decimal string), the price's name | nil, err
function M.price(t, class)
  local model, err = need_model("capacity.price")
  if not model then return nil, err end
  local m, name = prices.price_at(model, now_of(t), class)
  return prices.amount(m), name
end

-- cheapest{duration, deadline, now, class | service, instances} -> {start, ends, amount,
-- now_amount, price, currency} | nil, err (no slot ends by the deadline)
function M.cheapest(o)
  local model, err = need_model("capacity.cheapest")
  if not model then return nil, err end
  if type(o) ~= "table" then error("capacity.cheapest: options: table expected", 2) end
  local c = defer.check({ name = "cheapest", duration = o.duration, deadline = o.deadline, now = o.now,
    event = {} }, now_of(o.now))
  return prices.cheapest(model, { duration = c.duration, deadline = c.deadline, now = c.now,
    class = o.class or (o.service and prices.class_of(model, o.service)), instances = o.instances })
end

-- defer{name, duration, deadline, event = {type, data}, now, class | service, instances} ->
-- the slot {name, start, ends, amount, ...} (existing = true when name already waits) | nil, err
function M.defer(o)
  local model, err = need_model("capacity.defer")
  if not model then return nil, err end
  local c = defer.check(o, now_of(type(o) == "table" and o.now or nil))
  local st
  st, err = store()
  if not st then return nil, err end
  require("steward.runtime.store.timers").check_event(
    { type = c.event.type, tenant = c.event.tenant, data = c.event.data }, "capacity.defer")
  return defer.defer(st, model, c)
end

-- deferred() -> the deferred jobs still waiting | nil, err
function M.deferred()
  local st, err = store()
  if not st then return nil, err end
  return defer.pending(st)
end

-- ---- the daemon ----

-- start(ctx): at the daemon's start: configuration, the history's writer (every 10 s, and
-- once more as the daemon stops, open minutes included, so a clean stop loses no sample) and
-- its retention (hourly, on the leader).
function M.start(ctx)
  M.configure(ctx.cfg)
  local time = require "steward.time"
  local log = require "steward.log"
  local shutdown = require "steward.runtime.shutdown"
  local function flush(now)
    local n, err = history.flush(ctx.store, now)
    if not n then log.warn("capacity: history not written (kept for the next try)", { error = tostring(err) }) end
  end
  require("steward.task").spawn({ name = "capacity.history" }, function()
    while shutdown.sleep(10) do
      if not (ctx.store_health and not ctx.store_health.up) then flush(time.now()) end
    end
    flush(math.huge)
  end)
  ctx.bg[#ctx.bg + 1] = time.every("1h", function()
    if ctx.stopping or (ctx.cluster and not ctx.cluster:is_leader()) then return end
    local n, err = history.purge(ctx.store, time.now() - S.capacity.retention)
    if not n then log.warn("capacity: history retention failed", { error = tostring(err) }) end
  end)
end

return M
