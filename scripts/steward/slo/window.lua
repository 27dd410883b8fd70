-- steward.slo.window: SLO window lengths ("5m", "30d") and calendar period starts (UTC).
local type, tonumber, error, floor, tostring = type, tonumber, error, math.floor, tostring

local M = {}

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

-- parse("6h") -> 21600. One number and one unit (s, m, h, d, w): the subset Prometheus also
-- accepts, so a window name can go into a PromQL range selector unchanged.
function M.parse(s)
  if type(s) ~= "string" then error("slo: window: duration string like \"5m\" expected, got " .. type(s), 2) end
  local n, u = s:match("^(%d+)([smhdw])$")
  if not n or tonumber(n) == 0 then
    error("slo: window: duration like \"5m\", \"1h\", \"30d\" expected, got \"" .. tostring(s) .. "\"", 2)
  end
  return tonumber(n) * UNIT[u]
end

-- Days since 1970-01-01 of a proleptic Gregorian date (os.time would use the local time
-- zone): the store's RFC 3339 code has the conversion.
local days_from_civil = require("steward.runtime.store.util").days_from_civil
M.days_from_civil = days_from_civil

-- The start (Unix seconds) of the UTC calendar month or ISO week (from Monday) holding now.
function M.period_start(kind, now)
  local days = floor(now / 86400)
  if kind == "week" then
    local since_monday = (days + 3) % 7 -- 1970-01-01 was a Thursday
    return (days - since_monday) * 86400
  elseif kind == "month" then
    local t = os.date("!*t", floor(now))
    return days_from_civil(t.year, t.month, 1) * 86400
  end
  error("slo: calendar period: \"month\" or \"week\" expected, got " .. tostring(kind), 2)
end

return M
