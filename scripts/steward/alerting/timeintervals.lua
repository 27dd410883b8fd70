-- steward.alerting.timeintervals: Alertmanager 0.25's time intervals (timeinterval.go):
-- times, weekdays, days_of_month (negative counts from the month's end), months and years;
-- every field given must contain the instant, any range of a field will do. `location` is
-- where the fields are read, as Alertmanager's Go time.LoadLocation: an IANA name
-- ("Europe/Berlin", through steward.alerting.tz), "UTC" (the default), a fixed offset
-- ("+02:00") or seconds east of UTC. The zone is loaded when the interval is built, so
-- contains() does no I/O; times of day are wall-clock times, so "09:00" stays 09:00 across
-- DST changes (and an hour that is skipped in spring contains no instant).
local type, error, ipairs, pairs, setmetatable, tonumber, tostring, pcall =
  type, error, ipairs, pairs, setmetatable, tonumber, tostring, pcall
local format, lower, floor = string.format, string.lower, math.floor
local tz = require "steward.alerting.tz"

local M = {}

local WEEKDAYS = { sunday = 0, monday = 1, tuesday = 2, wednesday = 3, thursday = 4, friday = 5, saturday = 6 }
local MONTHS = { january = 1, february = 2, march = 3, april = 4, may = 5, june = 6, july = 7,
  august = 8, september = 9, october = 10, november = 11, december = 12 }

-- "a:b" or "a" -> a, b; names through `names` (case-insensitive), numbers otherwise.
local function range(s, names, what)
  if type(s) ~= "string" then error(what .. ": string expected, got " .. type(s), 0) end
  local a, b = s:match("^([^:]+):([^:]+)$")
  if not a then a, b = s, s end
  local function val(x)
    x = lower(x)
    if names and names[x] then return names[x] end
    if names == WEEKDAYS then return nil end
    return tonumber(x:match("^%-?%d+$"))
  end
  local va, vb = val(a), val(b)
  if not va or not vb then error({ format("%s: invalid range %q", what, s) }, 0) end
  return va, vb
end

local function minutes(s, what)
  if s == "24:00" then return 1440 end
  local h, m = tostring(s):match("^([01]%d):([0-5]%d)$")
  if not h then h, m = tostring(s):match("^(2[0-3]):([0-5]%d)$") end
  if not h then error({ format("%s: invalid time of day %q (HH:MM, 00:00 to 24:00)", what, tostring(s)) }, 0) end
  return tonumber(h) * 60 + tonumber(m)
end

local function zone_of(loc)
  if loc == nil then return tz.UTC end
  if type(loc) == "number" then
    if loc ~= floor(loc) or loc <= -86400 or loc >= 86400 then
      error({ format("location: %s seconds is not an offset (an integer under a day)", tostring(loc)) }, 0)
    end
    return tz.fixed(loc)
  end
  if type(loc) ~= "string" then error("location: string or number expected, got " .. type(loc), 0) end
  local z, err = tz.load(loc)
  if not z then error({ "location: " .. err }, 0) end
  return z
end

local Interval = {}
Interval.__index = Interval

local KNOWN = { times = true, weekdays = true, days_of_month = true, months = true, years = true, location = true }

local function build(spec)
  if type(spec) ~= "table" then error("time interval: table expected, got " .. type(spec), 0) end
  for k in pairs(spec) do
    if not KNOWN[k] then error("time interval: unknown field " .. tostring(k), 0) end
  end
  local iv = { zone = zone_of(spec.location) }
  if spec.times then
    iv.times = {}
    for i, tr in ipairs(spec.times) do
      local w = "times[" .. i .. "]"
      if type(tr) ~= "table" then error(w .. ": table expected", 0) end
      local s, e = minutes(tr.start_time, w .. ".start_time"), minutes(tr.end_time, w .. ".end_time")
      if s >= e then error({ w .. ": start time cannot be equal or greater than end time" }, 0) end
      iv.times[i] = { s, e }
    end
  end
  if spec.weekdays then
    iv.weekdays = {}
    for i, s in ipairs(spec.weekdays) do
      local a, b = range(s, WEEKDAYS, "weekdays[" .. i .. "]")
      if a > b then error({ format("weekdays[%d]: start day cannot be after end day", i) }, 0) end
      iv.weekdays[i] = { a, b }
    end
  end
  if spec.days_of_month then
    iv.days_of_month = {}
    for i, s in ipairs(spec.days_of_month) do
      local a, b = range(s, nil, "days_of_month[" .. i .. "]")
      for _, v in ipairs({ a, b }) do
        if v == 0 or v < -31 or v > 31 then
          error({ format("days_of_month[%d]: %d is not a day of the month (1..31 or -31..-1)", i, v) }, 0)
        end
      end
      if ((a > 0 and b > 0) or (a < 0 and b < 0)) and a > b then
        error({ format("days_of_month[%d]: start day cannot be after end day", i) }, 0)
      end
      iv.days_of_month[i] = { a, b }
    end
  end
  if spec.months then
    iv.months = {}
    for i, s in ipairs(spec.months) do
      local a, b = range(s, MONTHS, "months[" .. i .. "]")
      if a < 1 or b > 12 or a > b then error({ format("months[%d]: invalid month range %q", i, s) }, 0) end
      iv.months[i] = { a, b }
    end
  end
  if spec.years then
    iv.years = {}
    for i, s in ipairs(spec.years) do
      local a, b = range(s, nil, "years[" .. i .. "]")
      if a > b then error({ format("years[%d]: start year cannot be after end year", i) }, 0) end
      iv.years[i] = { a, b }
    end
  end
  return setmetatable(iv, Interval)
end

-- new(spec) -> interval, or nil, err.
function M.new(spec)
  local ok, res = pcall(build, spec)
  if ok then return res end
  if type(res) == "table" then return nil, res[1] end
  error("timeintervals.new: " .. tostring(res), 2)
end

local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
local DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local function days_in_month(y, m) return (m == 2 and leap(y)) and 29 or DAYS[m] end

local function in_any(ranges, v)
  for _, r in ipairs(ranges) do
    if v >= r[1] and v <= r[2] then return true end
  end
  return false
end

-- contains(t) -> boolean; t in Unix seconds.
function Interval:contains(t)
  if type(t) ~= "number" then error("interval:contains: t: number (Unix seconds) expected, got " .. type(t), 2) end
  local year, month, day, hour, min, _, wday = self.zone:civil(t)
  if self.times then
    local mins, hit = hour * 60 + min, false
    for _, r in ipairs(self.times) do
      if mins >= r[1] and mins < r[2] then hit = true break end
    end
    if not hit then return false end
  end
  if self.days_of_month then
    local n, hit = days_in_month(year, month), false
    for _, r in ipairs(self.days_of_month) do
      local b = r[1] < 0 and n + r[1] + 1 or r[1]
      local e = r[2] < 0 and n + r[2] + 1 or r[2]
      if b <= n then -- a range starting after the month's end does not wrap into the next
        if e > n then e = n end
        if day >= b and day <= e then hit = true break end
      end
    end
    if not hit then return false end
  end
  if self.weekdays and not in_any(self.weekdays, wday) then return false end
  if self.months and not in_any(self.months, month) then return false end
  if self.years and not in_any(self.years, year) then return false end
  return true
end

-- edges(a, b) -> sorted instants in (a, b] where contains() may change its answer: the
-- local midnights, the starts and ends of `times` (every other field changes at midnight),
-- and the zone's own transitions (the hour repeated in autumn passes a time twice).
-- For callers that build timelines (on-call schedules) without probing every minute.
function Interval:edges(a, b)
  local z = self.zone
  local out = z:transitions(a, b)
  local d0, d1 = floor(z:wall(a) / 86400), floor(z:wall(b) / 86400) + 1
  for d = d0, d1 do
    local base = d * 86400
    -- Both instants of a wall-clock time that occurs twice.
    local function add(w)
      local u, v = z:from_wall(w), z:from_wall(w, true)
      if u > a and u <= b then out[#out + 1] = u end
      if v ~= u and v > a and v <= b then out[#out + 1] = v end
    end
    add(base)
    for _, r in ipairs(self.times or {}) do
      if r[1] < 1440 then add(base + r[1] * 60) end
      if r[2] < 1440 then add(base + r[2] * 60) end
    end
  end
  table.sort(out)
  return out
end

local Set = {}
Set.__index = Set

-- set{name = {interval spec, ...}, ...} -> set, or nil, err: Alertmanager's time_intervals
-- list, where a name is active when any of its intervals contains the instant.
function M.set(named)
  if type(named) ~= "table" then error("timeintervals.set: named: table expected, got " .. type(named), 2) end
  local s = { intervals = {} }
  for name, list in pairs(named) do
    if type(name) ~= "string" or type(list) ~= "table" then
      error("timeintervals.set: named: {name = {interval, ...}} expected", 2)
    end
    local out = {}
    for i, spec in ipairs(list) do
      local iv, err = M.new(spec)
      if not iv then return nil, format("time_intervals.%s[%d]: %s", name, i, err) end
      out[i] = iv
    end
    s.intervals[name] = out
  end
  return setmetatable(s, Set)
end

-- active(name, t) -> boolean, or nil, err for an unknown name.
function Set:active(name, t)
  local list = self.intervals[name]
  if not list then return nil, "time interval " .. tostring(name) .. " does not exist" end
  for _, iv in ipairs(list) do
    if iv:contains(t) then return true end
  end
  return false
end

-- muted(route, t) -> boolean, or nil, err: a route is muted while one of its
-- mute_time_intervals is active, or when it has active_time_intervals and none is.
function Set:muted(r, t)
  for _, name in ipairs(r.mute_time_intervals or {}) do
    local on, err = self:active(name, t)
    if on == nil then return nil, err end
    if on then return true end
  end
  local act = r.active_time_intervals or {}
  if #act == 0 then return false end
  for _, name in ipairs(act) do
    local on, err = self:active(name, t)
    if on == nil then return nil, err end
    if on then return false end
  end
  return true
end

return M
