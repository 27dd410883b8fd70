-- steward.time: the clocks and timers of bindings/time.c, plus durable timers:
-- time.after(d, event) with an event table persists a timer in the store, which the daemon
-- turns into that event after d — also after a restart, exactly once. Local time in a named
-- zone (time.localtime, time.format, time.zone) comes from the system's tz database through
-- steward.alerting.tz, which the alerting schedules use too.
local native = require "steward.time.native"

local M = {}
for k, v in pairs(native) do M[k] = v end

local native_after = native.after

-- after(d, fn, ...) -> in-memory timer; after(d, event [, {id = ...}]) -> durable timer id
function M.after(d, what, ...)
  if type(what) ~= "table" then return native_after(d, what, ...) end
  local store = require "steward.runtime.store"
  local st = store.default()
  if not st then
    error("time.after: a durable timer (an event table) needs the daemon's store " ..
          "(store.set_default), none is open", 2)
  end
  local timers = require "steward.runtime.store.timers"
  return timers.after(st, d, what, ...)
end

-- cancel_durable(id) -> true, or nil, err
function M.cancel_durable(id)
  local st = require("steward.runtime.store").default()
  if not st then error("time.cancel_durable: no store is open", 2) end
  return require("steward.runtime.store.timers").cancel(st, id)
end

local floor, type, format = math.floor, type, string.format

local function zone_arg(zone, what)
  if zone == nil then zone = "UTC" end
  if type(zone) == "table" and zone.civil then return zone end
  if type(zone) ~= "string" then error(what .. ": zone: a zone name (\"Europe/Paris\") expected, got " .. type(zone), 3) end
  return require("steward.alerting.tz").load(zone)
end

local function time_arg(t, what)
  if type(t) ~= "number" or t ~= t or t == math.huge or t == -math.huge then
    error(what .. ": t: Unix seconds (a number, e.g. time.now()) expected, got " .. tostring(t), 3)
  end
end

-- zone(name) -> the zone (to_local, from_local, offset, transitions), or nil, err. name: an
-- IANA name ("Europe/Paris"), "UTC", or a fixed offset ("+02:00").
function M.zone(name)
  if type(name) ~= "string" then error("time.zone: name: string expected, got " .. type(name), 2) end
  return require("steward.alerting.tz").load(name)
end

-- localtime(t [, zone]) -> the calendar fields of t in zone (default UTC), or nil, err for an
-- unknown zone: {year, month, day, hour, min, sec, wday (1 = Sunday, as os.date("*t")), yday,
-- isdst, offset (seconds east of UTC), abbr ("CEST"), zone}.
function M.localtime(t, zone)
  time_arg(t, "time.localtime")
  local z, err = zone_arg(zone, "time.localtime")
  if not z then return nil, err end
  local y, m, d, h, mi, sec, wday, yday, off, abbr, isdst = z:civil(t)
  return { year = y, month = m, day = d, hour = h, min = mi, sec = sec, wday = wday + 1, yday = yday,
           isdst = isdst, offset = off, abbr = abbr, zone = z.name or zone }
end

local function offset_text(off, colon)
  local sign = off < 0 and "-" or "+"
  local a = off < 0 and -off or off
  return format(colon and "%s%02d:%02d" or "%s%02d%02d", sign, floor(a / 3600), floor(a / 60) % 60)
end

-- format(t [, fmt [, zone]]) -> t written by os.date's strftime conversions in zone (default
-- UTC), or nil, err for an unknown zone. %z is the zone's offset (+0200), %:z the same with a
-- colon (+02:00), %Z its abbreviation (CEST). fmt defaults to RFC 3339: "%Y-%m-%dT%H:%M:%S%:z".
function M.format(t, fmt, zone)
  time_arg(t, "time.format")
  if fmt == nil then fmt = "%Y-%m-%dT%H:%M:%S%:z" end
  if type(fmt) ~= "string" then error("time.format: fmt: string expected, got " .. type(fmt), 2) end
  if fmt:sub(1, 1) == "!" then fmt = fmt:sub(2) end
  if fmt:sub(1, 2) == "*t" then error("time.format: fmt: \"*t\" is a table: use time.localtime(t, zone)", 2) end
  local z, err = zone_arg(zone, "time.format")
  if not z then return nil, err end
  local off, abbr = z:offset(t)
  -- The zone's own conversions are done here: os.date("!") would name UTC.
  local text = fmt:gsub("%%(:?.)", function(c)
    if c == "z" then return offset_text(off, false) end
    if c == ":z" then return offset_text(off, true) end
    if c == "Z" then return (abbr:gsub("%%", "%%%%")) end
    return nil
  end)
  return os.date("!" .. text, floor(t) + off)
end

return M
