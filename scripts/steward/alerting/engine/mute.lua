-- The mute stages a flush applies before deduplication, in Alertmanager 0.25's order
-- (inhibition, active time intervals, mute time intervals, silences) plus steward's
-- maintenance windows and flap suppression. Muted alerts are left out of the notification;
-- when every alert of a group is muted nothing is sent and the log is not touched.
local matchers = require "steward.alerting.matchers"
local silences = require "steward.alerting.silences"
local astore = require "steward.alerting.store"

local ipairs = ipairs

local M = {}

-- silences(rows) -> silence objects from the API's rows (rows that no longer parse mute nothing).
function M.silences(rows)
  local out = {}
  for _, r in ipairs(rows) do
    local s = astore.row_silence(r)
    local list, ok = {}, true
    for i, m in ipairs(s.matchers) do
      local eq = m.isEqual ~= false
      local op = m.isRegex and (eq and "=~" or "!~") or (eq and "=" or "!=")
      local mm = matchers.new(op, m.name, m.value)
      if not mm then ok = false break end
      list[i] = mm
    end
    if ok then
      local obj = silences.new({ id = s.id, matchers = list, starts_at = s.starts_at, ends_at = s.ends_at })
      if obj then out[#out + 1] = obj end
    end
  end
  return out
end

-- maintenance_active(w, intervals, now)
local function window_active(w, intervals, now)
  if w.starts_at and (now < w.starts_at or now >= w.ends_at) then return false end
  if w.time_intervals then
    for _, name in ipairs(w.time_intervals) do
      if intervals:active(name, now) then return true end
    end
    return false
  end
  return true
end

-- filter(eng, route, alerts, now, data) -> unmuted alerts, muted {fp = reason} | nil, err.
-- data (read by the flush in one batch): firing = source alert rows (when there are
-- inhibition rules), silences = silence objects, held = {fp = until} (flap detection).
function M.filter(eng, route, alerts, now, data)
  local muted = {}
  -- Time intervals mute the whole route (TimeActiveStage / TimeMuteStage).
  local off, terr = eng.intervals:muted(route, now)
  if off == nil then return nil, terr end
  if off then
    for _, a in ipairs(alerts) do muted[a.fingerprint] = "time_interval" end
    return {}, muted
  end
  local windows = {}
  for _, w in ipairs(eng.maintenance) do
    if window_active(w, eng.intervals, now) then windows[#windows + 1] = w end
  end
  local held = data.held
  local out = {}
  for _, a in ipairs(alerts) do
    local why
    if data.firing and eng.inhibitor:mutes(a.labels, data.firing, now) then
      why = "inhibited"
    elseif #silences.muted_by(data.silences, a.labels, now) > 0 then
      why = "silenced"
    else
      for _, w in ipairs(windows) do
        if w.matchers:matches(a.labels) then why = "maintenance:" .. w.name break end
      end
      if not why and held and held[a.fingerprint] then why = "flapping" end
    end
    if why then muted[a.fingerprint] = why else out[#out + 1] = a end
  end
  return out, muted
end

M.window_active = window_active
return M
