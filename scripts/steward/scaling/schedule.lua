-- steward.scaling.schedule: scheduled scaling. A window opens at each match of a cron expression
-- in its time zone and stays open for its duration; while open it overrides the autoscaler's
-- min and/or max replicas. Pure: the caller passes the clock (zones come from the system's tz
-- database, read once per process by steward.alerting.tz).
local cron = require "steward.runtime.store.cron"
local tz = require "steward.alerting.tz"
local time = require "steward.time"
local json = require "steward.json"

local type, ipairs, pairs, error, format, tostring, floor, setmetatable, concat =
  type, ipairs, pairs, error, string.format, tostring, math.floor, setmetatable, table.concat

local M = {}

local function fail(field, reason) error(format("scaling: %s: %s", field, reason), 4) end

local function count(v, field)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= floor(v) or v < 0 then fail(field, "a whole number >= 0 expected, got " .. tostring(v)) end
  return v
end

local KNOWN = { name = true, cron = true, duration = true, min_replicas = true, max_replicas = true, timezone = true }

local CHECKED = setmetatable({}, { __mode = "k" })

local function zone_of(name, field)
  local z, err = tz.load(name)
  if not z then fail(field, tostring(err)) end
  return z
end

-- check(windows [, tz]) -> the windows normalised (cron parsed, duration in seconds, zone
-- loaded), or raises an error naming the field: `scaling: schedule[2].cron: cron: 5 fields
-- expected ...`. A window is {name, cron = "0 8 * * 1-5", duration = "10h", min_replicas,
-- max_replicas, timezone = "Europe/Paris"}; at least one of min_replicas and max_replicas; a
-- window without a timezone uses tz (default UTC).
function M.check(windows, default_zone)
  if CHECKED[windows] then return windows end
  if type(windows) ~= "table" then fail("schedule", "a list of windows expected, got " .. type(windows)) end
  local out, names = {}, {}
  for k in pairs(windows) do
    if type(k) ~= "number" or k < 1 or k > #windows or k ~= floor(k) then fail("schedule", "a list of windows expected (key " .. tostring(k) .. ")") end
  end
  for i, w in ipairs(windows) do
    local f = format("schedule[%d]", i)
    if type(w) ~= "table" then fail(f, "window table expected, got " .. type(w)) end
    for k in pairs(w) do if not KNOWN[k] then fail(f .. "." .. tostring(k), "unknown field") end end
    local name = w.name == nil and ("window " .. i) or w.name
    if type(name) ~= "string" or name == "" then fail(f .. ".name", "non-empty string expected") end
    if names[name] then fail(f .. ".name", format("%q is used by schedule[%d] too", name, names[name])) end
    names[name] = i
    if type(w.cron) ~= "string" then fail(f .. ".cron", "cron expression (\"0 8 * * 1-5\") expected, got " .. type(w.cron)) end
    local c, cerr = cron.parse(w.cron)
    if not c then fail(f .. ".cron", cerr) end
    local d = type(w.duration) == "string" and time.parse_duration(w.duration) or (type(w.duration) == "number" and w.duration)
    if type(d) ~= "number" or d <= 0 then fail(f .. ".duration", "a positive duration (\"10h\") expected, got " .. tostring(w.duration)) end
    local lo, hi = count(w.min_replicas, f .. ".min_replicas"), count(w.max_replicas, f .. ".max_replicas")
    if lo == nil and hi == nil then fail(f, "min_replicas or max_replicas (or both) expected") end
    if lo and hi and lo > hi then fail(f .. ".min_replicas", format("%d is above max_replicas %d", lo, hi)) end
    local zname = w.timezone or default_zone or "UTC"
    if type(zname) ~= "string" then fail(f .. ".timezone", "a zone name (\"Europe/Paris\") expected, got " .. type(zname)) end
    out[i] = { name = name, cron = w.cron, duration = d, min_replicas = lo, max_replicas = hi, timezone = zname,
               _cron = c, _zone = zone_of(zname, f .. ".timezone") }
  end
  CHECKED[out] = true
  return out
end

-- The last start of window w at or before now (Unix seconds), or nil. Cron matches wall-clock
-- minutes of the window's zone. A start in the hour skipped when DST begins happens at the
-- transition (as cron runs a skipped job); a start in the repeated hour when DST ends happens
-- once, the first time. Just after DST ends the wall clock is behind: the offsets in force
-- over the window's duration are all tried, so a start in the repeated hour is still found.
local function last_start(w, now)
  local z, c = w._zone, w._cron
  local offsets = { (z:offset(now)) }
  for _, tr in ipairs(z:transitions(now - w.duration - 86400, now)) do offsets[#offsets + 1] = (z:offset(tr - 1)) end
  local best
  for _, off in ipairs(offsets) do
    local wall = c:prev(now + off + 1)
    if wall then
      local t = z:from_wall(wall)
      if t <= now and (best == nil or t > best) then best = t end
    end
  end
  return best
end

-- active(windows, now [, tz]) -> the windows open at now, each {name, min_replicas,
-- max_replicas, since, ends}, in their order.
function M.active(windows, now, default_zone)
  windows = M.check(windows, default_zone)
  if type(now) ~= "number" then error("scaling: schedule.active: now: seconds expected, got " .. type(now), 2) end
  local open = json.array()
  for _, w in ipairs(windows) do
    local s = last_start(w, now)
    if s and now < s + w.duration then
      open[#open + 1] = { name = w.name, min_replicas = w.min_replicas, max_replicas = w.max_replicas,
                          since = s, ends = s + w.duration }
    end
  end
  return open
end

-- bounds(windows, now [, tz]) -> {min, max, window = "name[, name]", windows = {...}} for the
-- windows open at now, or nil when none is. Overlapping windows give the largest min and the
-- largest max that any of them sets (nil when none sets one); a min above the max raises the
-- max to it. Schedules exist to guarantee capacity for known peaks: the more generous window
-- wins both ways, so adding a window never takes capacity away from another.
function M.bounds(windows, now, default_zone)
  local open = M.active(windows, now, default_zone)
  if #open == 0 then return nil end
  local lo, hi, names = nil, nil, {}
  for i, w in ipairs(open) do
    names[i] = w.name
    if w.min_replicas and (lo == nil or w.min_replicas > lo) then lo = w.min_replicas end
    if w.max_replicas and (hi == nil or w.max_replicas > hi) then hi = w.max_replicas end
  end
  if lo and hi and lo > hi then hi = lo end
  return { min = lo, max = hi, window = concat(names, ", "), windows = open }
end

-- clamp(min_replicas, max_replicas, b) -> the autoscaler's bounds with a window's overrides.
function M.clamp(min_replicas, max_replicas, b)
  if not b then return min_replicas, max_replicas end
  local lo, hi = b.min or min_replicas, b.max or max_replicas
  if lo > hi then hi = lo end
  return lo, hi
end

return M
