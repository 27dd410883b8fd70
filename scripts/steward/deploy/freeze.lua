-- steward.deploy.freeze: change freezes as a pure function of (windows, request, time). A
-- window is either recurring — Alertmanager time_intervals (steward.alerting.timeintervals),
-- read in the window's IANA zone, so "friday 15:00" stays 15:00 local across DST — or an
-- absolute range of local dates (a holiday freeze). It applies to some services and
-- environments, except others; an approved approval with subject "freeze-override:<service>"
-- lets one deploy through. No I/O once compiled: zones are loaded by compile.
local timeintervals = require "steward.alerting.timeintervals"
local tz = require "steward.alerting.tz"
local util = require "steward.runtime.store.util"

local type, pairs, ipairs, tostring, tonumber, error, pcall = type, pairs, ipairs, tostring, tonumber, error, pcall
local next, setmetatable, getmetatable = next, setmetatable, getmetatable
local format, sort, concat = string.format, table.sort, table.concat

local M = {}

-- How far ahead the end of a recurring freeze is looked for (a window that never ends in a
-- year is reported as open-ended).
M.HORIZON = 366 * 86400

local KNOWN = { name = true, location = true, time_intervals = true, start = true, ["end"] = true,
  services = true, environments = true, except_services = true, except_environments = true, reason = true }

local function fail(path, reason) error({ path .. ": " .. reason }, 0) end

-- "pay-*" style names: * matches any run of characters.
local function glob(p)
  return "^" .. p:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", ".*") .. "$"
end

local function names(v, path)
  if v == nil then return nil end
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then fail(path, "a list of names or patterns (\"pay-*\") expected") end
  local out = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then fail(format("%s[%d]", path, i), "a non-empty string expected") end
    out[i] = glob(s)
  end
  return out
end

local function any(pats, s)
  if type(s) ~= "string" then return false end
  for _, p in ipairs(pats) do
    if s:match(p) then return true end
  end
  return false
end

-- A date or time in the window's zone: "2026-12-24", "2026-12-24T18:00[:SS]" (wall clock
-- there), or an RFC 3339 time with its own offset.
local function instant(s, zone, path)
  if type(s) ~= "string" then fail(path, "a date (\"2026-12-24\") or local time (\"2026-12-24T18:00\") expected") end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  local h, mi, sec = 0, 0, 0
  if not y then
    local hh, mm, ss
    y, m, d, hh, mm, ss = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):?(%d?%d?)$")
    if y then h, mi, sec = tonumber(hh), tonumber(mm), tonumber(ss) or 0 end
  end
  if y then
    y, m, d = tonumber(y), tonumber(m), tonumber(d)
    if m < 1 or m > 12 or d < 1 or d > tz.days_in_month(y, m) or h > 23 or mi > 59 or sec > 59 then
      fail(path, format("%q is not a valid date or time", s))
    end
    return zone:from_local({ year = y, month = m, day = d, hour = h, min = mi, sec = sec })
  end
  local t = util.parse_rfc3339(s)
  if not t then fail(path, format("%q is not a date, a local time or an RFC 3339 time", s)) end
  return t
end

local Compiled = {}
Compiled.__index = Compiled

local function compile_window(w, i)
  local path = format("windows[%d]", i)
  if type(w) ~= "table" then fail(path, "a table expected") end
  for k in pairs(w) do
    if not KNOWN[k] then fail(path .. "." .. tostring(k), "unknown field") end
  end
  if type(w.name) ~= "string" or not w.name:match("^[%w_.:-]+$") then
    fail(path .. ".name", "a name of letters, digits, '.', '_', ':' or '-' expected")
  end
  path = format("windows[%d] (%s)", i, w.name)
  local loc = w.location or "UTC"
  if type(loc) ~= "string" then fail(path .. ".location", "an IANA zone name (\"Europe/Berlin\") expected") end
  local zone, zerr = tz.load(loc)
  if not zone then fail(path .. ".location", zerr) end
  local c = { name = w.name, location = loc, zone = zone, reason = w.reason,
    services = names(w.services, path .. ".services"), environments = names(w.environments, path .. ".environments"),
    except_services = names(w.except_services, path .. ".except_services"),
    except_environments = names(w.except_environments, path .. ".except_environments") }
  if w.reason ~= nil and type(w.reason) ~= "string" then fail(path .. ".reason", "a string expected") end
  local recurring, absolute = w.time_intervals ~= nil, (w.start ~= nil or w["end"] ~= nil)
  if recurring == absolute then
    fail(path, "either time_intervals (recurring) or start and end (a date range) expected")
  end
  if recurring then
    if type(w.time_intervals) ~= "table" or w.time_intervals[1] == nil then
      fail(path .. ".time_intervals", "a non-empty list of time intervals expected")
    end
    c.intervals = {}
    for j, spec in ipairs(w.time_intervals) do
      if type(spec) ~= "table" then fail(format("%s.time_intervals[%d]", path, j), "a table expected") end
      local s = {}
      for k, v in pairs(spec) do s[k] = v end
      if s.location == nil then s.location = loc end
      local iv, err = timeintervals.new(s)
      if not iv then fail(format("%s.time_intervals[%d]", path, j), err) end
      c.intervals[j] = iv
    end
  else
    if w.start == nil or w["end"] == nil then fail(path, "a date range needs both start and end") end
    c.start = instant(w.start, zone, path .. ".start")
    c.stop = instant(w["end"], zone, path .. ".end")
    if c.stop <= c.start then fail(path .. ".end", "must be after start") end
  end
  return c
end

-- compile(windows) -> compiled windows, or nil, err naming the field ("windows[2] (xmas).location: ...").
function M.compile(windows)
  if getmetatable(windows) == Compiled then return windows end
  if type(windows) ~= "table" or (next(windows) ~= nil and windows[1] == nil) then
    return nil, "windows: a list of freeze windows expected"
  end
  local out, seen = { list = {} }, {}
  for i, w in ipairs(windows) do
    local ok, c = pcall(compile_window, w, i)
    if not ok then
      if type(c) == "table" then return nil, c[1] end
      error(c, 0)
    end
    if seen[c.name] then return nil, format("windows[%d].name: %q is used by windows[%d] too", i, c.name, seen[c.name]) end
    seen[c.name] = i
    out.list[i] = c
  end
  return setmetatable(out, Compiled)
end

-- validate(windows) -> true, or nil, err: for config schemas.
function M.validate(windows)
  local c, err = M.compile(windows)
  if not c then return nil, err end
  return true
end

local function applies(c, service, environment)
  if c.services and not any(c.services, service) then return false end
  if c.environments and not any(c.environments, environment) then return false end
  if c.except_services and any(c.except_services, service) then return false end
  if c.except_environments and any(c.except_environments, environment) then return false end
  return true
end

local function recurring_active(c, t)
  for _, iv in ipairs(c.intervals) do
    if iv:contains(t) then return true end
  end
  return false
end

-- The first instant after t at which a recurring window is no longer active (nil: not within
-- the horizon). Between two edges of its intervals the answer cannot change.
local function recurring_end(c, t)
  local b = t + M.HORIZON
  local edges, seen = {}, {}
  for _, iv in ipairs(c.intervals) do
    for _, e in ipairs(iv:edges(t, b)) do
      if not seen[e] then seen[e] = true; edges[#edges + 1] = e end
    end
  end
  sort(edges)
  for _, e in ipairs(edges) do
    if not recurring_active(c, e) then return e end
  end
  return nil
end

-- active(c, t) -> whether the compiled window c freezes at t, and when that freeze ends.
local function active(c, t)
  if c.intervals then
    if not recurring_active(c, t) then return false end
    return true, recurring_end(c, t)
  end
  if t >= c.start and t < c.stop then return true, c.stop end
  return false
end

local function overrides(o, service)
  return type(o) == "table" and o.state == "granted" and o.subject == "freeze-override:" .. tostring(service)
end

local function describe(c, ends)
  local until_ = " (no end within a year)"
  if ends then
    local y, mo, d, h, mi = c.zone:civil(ends)
    until_ = format(" until %s (%04d-%02d-%02d %02d:%02d %s)", util.format_rfc3339(ends), y, mo, d, h, mi, c.location)
  end
  return format("change freeze %q%s%s", c.name, c.reason and (" (" .. c.reason .. ")") or "", until_)
end

-- check(windows, {service, environment, time, override}) -> allow, window. window (when a
-- freeze applies) = {name, reason, location, ends (Unix seconds or nil), ends_at (RFC 3339),
-- message, overridden}. override: the approval record (steward.deploy.approvals.get) that
-- lets this deploy through; only a granted "freeze-override:<service>" counts.
function M.check(windows, req)
  local c, err = M.compile(windows)
  if not c then error("freeze.check: " .. err, 2) end
  if type(req) ~= "table" then error("freeze.check: request: table expected, got " .. type(req), 2) end
  if type(req.service) ~= "string" or req.service == "" then error("freeze.check: request.service: non-empty string expected", 2) end
  if req.environment ~= nil and type(req.environment) ~= "string" then
    error("freeze.check: request.environment: string expected", 2)
  end
  local t = req.time
  if t == nil then t = require("steward.time").now() end
  if type(t) ~= "number" then error("freeze.check: request.time: Unix seconds expected, got " .. type(t), 2) end
  local hit
  for _, w in ipairs(c.list) do
    if applies(w, req.service, req.environment or "") then
      local on, ends = active(w, t)
      -- Of several freezes, the one that lasts longest is the one to name.
      if on and (not hit or (hit.ends and (not ends or ends > hit.ends))) then hit = { w = w, ends = ends } end
    end
  end
  if not hit then return true end
  local w = hit.w
  local window = { name = w.name, reason = w.reason, location = w.location, ends = hit.ends,
    ends_at = hit.ends and util.format_rfc3339(hit.ends) or nil, message = describe(w, hit.ends) }
  if overrides(req.override, req.service) then
    window.overridden = true
    return true, window
  end
  return false, window
end

-- names(compiled) -> the window names, for listings.
function M.names(windows)
  local c = assert(M.compile(windows))
  local out = {}
  for i, w in ipairs(c.list) do out[i] = w.name end
  return concat(out, ", ")
end

return M
