-- steward.capacity.report: per service, where its load stands against its limit and, from the
-- stored history at the current trend, when it reaches the limit (steward.capacity.forecast's
-- horizon: days with an interval, the model and its error), and whether that is sooner than
-- the lead time the operator needs to add capacity.
local history = require "steward.capacity.history"

local ipairs, pairs, tostring, format = ipairs, pairs, tostring, string.format

local M = {}

local function forecaster() return require "steward.capacity.forecast" end

-- one(st, name, svc, now [, forecast]) -> the report of one service | nil, err (store)
function M.one(st, name, svc, now, forecast)
  local series, err = history.history(st, svc.metric, now - svc.window, now + 1, svc.step)
  if not series then return nil, err end
  local r = { service = name, metric = svc.metric, limit = svc.limit, limit_text = svc.limit_text,
    lead_time = svc.lead_time, lead_time_days = svc.lead_time / 86400, samples = #series, at = now }
  local last = series[#series]
  if not last then
    r.status, r.reason, r.alert = "unknown", "no history of " .. svc.metric .. " in the last " ..
      format("%gd", svc.window / 86400), false
    return r
  end
  r.current, r.current_at = last[2], last[1]
  r.utilisation = last[2] / svc.limit
  -- A forecast that raises (a bug, odd data) costs this service its horizon, not the report.
  local ok, h, why = pcall((forecast or forecaster()).horizon, series, svc.limit, { now = now, step = svc.step, season = 86400 })
  if not ok then h, why = nil, "forecast failed: " .. tostring(h) end
  if h then
    local days = h.days or (h.at - now) / 86400
    r.horizon = { at = h.at, days = days, low = h.low, high = h.high }
    r.model, r.error = h.model, h.error
  else
    r.reason = tostring(why)
  end
  if r.current >= svc.limit then
    r.status, r.alert = "saturated", true
    r.reason = format("%s is %g, at or above its limit %g", svc.metric, r.current, svc.limit)
  elseif r.horizon and r.horizon.days * 86400 < svc.lead_time then
    r.status, r.alert = "warning", true
    r.reason = format("%s reaches its limit %g in %.1f days (%.1f to %.1f), within the lead time of %g days",
      svc.metric, svc.limit, r.horizon.days, r.horizon.low or r.horizon.days, r.horizon.high or r.horizon.days,
      svc.lead_time / 86400)
  elseif r.horizon then
    r.status, r.alert = "ok", false
    r.reason = format("%s reaches its limit %g in %.1f days, beyond the lead time of %g days", svc.metric, svc.limit,
      r.horizon.days, svc.lead_time / 86400)
  elseif r.reason:match("^no upward trend") or r.reason:match("^not within") then
    r.status, r.alert = "ok", false -- the forecast says the limit is not in sight
  else
    r.status, r.alert = "unknown", false -- no forecast: too little history, or it failed
  end
  return r
end

-- all(st, services, now [, only [, forecast]]) -> {reports sorted by service} | nil, err
function M.all(st, services, now, only, forecast)
  local names = {}
  for name in pairs(services) do
    if only == nil or only == name then names[#names + 1] = name end
  end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local r, err = M.one(st, name, services[name], now, forecast)
    if not r then return nil, err end
    out[#out + 1] = r
  end
  return out
end

return M
