-- steward.alerting.oncall: on-call schedules as PagerDuty and Grafana OnCall have them —
-- layers of rotations, each optionally restricted to time windows, later layers on top of
-- earlier ones where they have coverage, overrides on top of everything — evaluated in the
-- schedule's time zone (steward.alerting.tz).
--
-- Rotation boundaries are wall-clock times: a layer's handoffs are the start's (or the
-- handoff's) time of day plus whole rotations counted on the local clock, so a weekly
-- Monday 09:00 handoff stays at 09:00 when DST starts or ends, and a shift spanning the change
-- is an hour shorter or longer. A boundary in a skipped hour moves to the end of the gap; one
-- in a repeated hour takes the earlier instant (tz's from_wall rules).
--
-- on_call(t) is what escalation asks at every step, so it does no I/O (zones and intervals
-- are loaded when the schedule is built) and costs O(layers + overrides): each layer keeps its
-- current shift's bounds, so asking about nearby instants needs no calendar arithmetic.
local type, error, ipairs, pairs, pcall, setmetatable, tostring, tonumber =
  type, error, ipairs, pairs, pcall, setmetatable, tostring, tonumber
local format, floor, sort = string.format, math.floor, table.sort
local tz = require "steward.alerting.tz"
local timeintervals = require "steward.alerting.timeintervals"

local M = {}

-- A configuration mistake: returned as nil, "path: reason".
local function fail(path, msg) error({ path .. ": " .. msg }, 0) end
-- A wrong Lua type: raised.
local function misuse(path, msg) error("oncall.schedule: " .. path .. ": " .. msg, 0) end

local function want(v, ty, path, optional)
  if v == nil and optional then return end
  if type(v) ~= ty then misuse(path, format("%s expected, got %s", ty, type(v))) end
end

---------------------------------------------------------------------------------------------
-- Parsing

-- "2026-01-05T09:00:00" (wall-clock time in the schedule's zone), "2026-01-05 09:00",
-- "2026-01-05", or RFC 3339 with "Z" / "+01:00" (an instant); a number is Unix seconds.
-- -> instant, wall-clock seconds (both), or nil.
local function parse_time(v, zone)
  if type(v) == "number" then return v, zone:wall(v) end
  local y, mo, d, rest = v:match("^(%d%d%d%d)-(%d%d)-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local h, mi, sec, off = 0, 0, 0, nil
  if rest ~= "" then
    local hh, mm, r = rest:match("^[Tt ](%d%d):(%d%d)(.*)$")
    if not hh then return nil end
    h, mi = tonumber(hh), tonumber(mm)
    local ss, r2 = r:match("^:(%d%d)(.*)$")
    if ss then sec, r = tonumber(ss), r2:gsub("^%.%d+", "") end
    if r == "Z" or r == "z" then
      off = 0
    elseif r ~= "" then
      local sign, oh, om = r:match("^([+-])(%d%d):?(%d%d)$")
      if not sign then return nil end
      off = (sign == "-" and -1 or 1) * (tonumber(oh) * 3600 + tonumber(om) * 60)
    end
  end
  if mo < 1 or mo > 12 or d < 1 or d > tz.days_in_month(y, mo) or h > 23 or mi > 59 or sec > 59 then
    return nil
  end
  local L = tz.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
  if off then
    local t = L - off
    return t, zone:wall(t)
  end
  return zone:from_wall(L), L
end

local UNITS = { w = 604800, d = 86400, h = 3600, m = 60, s = 1 }

-- "daily", "weekly", "12h", "2w", "1d12h", or seconds -> seconds, or nil.
local function parse_rotation(v)
  if v == "daily" then return 86400 end
  if v == "weekly" then return 604800 end
  if type(v) == "number" then return v end
  local total, pos = 0, 1
  while pos <= #v do
    local a, b, n, u = v:find("^(%d+)([wdhms])", pos)
    if not a then return nil end
    total, pos = total + tonumber(n) * UNITS[u], b + 1
  end
  return pos > 1 and total or nil
end

-- A user, or a group on call together: -> array of names.
local function parse_group(v, path)
  if type(v) == "string" then
    if v == "" then fail(path, "user name expected, got an empty string") end
    return { v }
  end
  want(v, "table", path)
  if #v == 0 then fail(path, "a group needs at least one user") end
  local g = {}
  for i, u in ipairs(v) do
    want(u, "string", path .. "[" .. i .. "]")
    if u == "" then fail(path .. "[" .. i .. "]", "user name expected, got an empty string") end
    g[i] = u
  end
  return g
end

local LAYER_FIELDS = { name = true, users = true, start = true, rotation = true, handoff = true,
  restrictions = true }

local function parse_layer(spec, path, zone, zone_name, n)
  want(spec, "table", path)
  for k in pairs(spec) do
    if not LAYER_FIELDS[k] then fail(path .. "." .. tostring(k), "unknown field") end
  end
  want(spec.name, "string", path .. ".name", true)
  local ly = { name = spec.name or ("layer " .. n), zone = zone, groups = {} }

  want(spec.users, "table", path .. ".users")
  if #spec.users == 0 then fail(path .. ".users", "at least one user expected") end
  for i, u in ipairs(spec.users) do ly.groups[i] = parse_group(u, path .. ".users[" .. i .. "]") end

  if spec.start == nil then fail(path .. ".start", "required (e.g. \"2026-01-05T09:00:00\")") end
  if type(spec.start) ~= "string" and type(spec.start) ~= "number" then
    misuse(path .. ".start", "string or number expected, got " .. type(spec.start))
  end
  local start_t, start_L = parse_time(spec.start, zone)
  if not start_t then
    fail(path .. ".start", format("invalid time %q (\"2026-01-05T09:00:00\" local, or RFC 3339 with an offset)", spec.start))
  end
  ly.start_t = start_t

  if spec.rotation == nil then fail(path .. ".rotation", "required (\"daily\", \"weekly\" or a duration like \"12h\")") end
  if type(spec.rotation) ~= "string" and type(spec.rotation) ~= "number" then
    misuse(path .. ".rotation", "string or number expected, got " .. type(spec.rotation))
  end
  local len = parse_rotation(spec.rotation)
  if not len then
    fail(path .. ".rotation", format("invalid rotation %q (\"daily\", \"weekly\" or a duration like \"12h\", \"2w\")", tostring(spec.rotation)))
  end
  if len < 60 or len ~= floor(len) then fail(path .. ".rotation", "at least one minute, in whole seconds") end
  ly.len = len

  -- The anchor A: boundaries are at wall-clock A + k * len; the first handoff is the first
  -- after the start.
  local A = start_L
  if spec.handoff ~= nil then
    want(spec.handoff, "string", path .. ".handoff")
    local hh, mm = spec.handoff:match("^(%d%d):(%d%d)$")
    if not hh or tonumber(hh) > 23 or tonumber(mm) > 59 then
      fail(path .. ".handoff", format("invalid time of day %q (HH:MM)", spec.handoff))
    end
    A = floor(start_L / 86400) * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60
    while A > start_L do A = A - len end
    while A + len <= start_L do A = A + len end
  end
  ly.A = A

  if spec.restrictions ~= nil then
    want(spec.restrictions, "table", path .. ".restrictions")
    ly.restrictions = {}
    for i, r in ipairs(spec.restrictions) do
      local rp = path .. ".restrictions[" .. i .. "]"
      want(r, "table", rp)
      local copy = {}
      for k, v in pairs(r) do copy[k] = v end
      if copy.location == nil then copy.location = zone_name end
      local ok, iv, err = pcall(timeintervals.new, copy)
      if not ok then misuse(rp, (tostring(iv):gsub("^timeintervals%.new: ", ""))) end
      if not iv then fail(rp, err) end
      ly.restrictions[i] = iv
    end
    if #ly.restrictions == 0 then fail(path .. ".restrictions", "at least one time interval expected (or leave it out)") end
  end
  ly.m_s, ly.m_e, ly.m_idx = 0, 0, 0 -- the memo: shift m_idx covers [m_s, m_e)
  return ly
end

local function parse_override(spec, path, zone)
  want(spec, "table", path)
  for k in pairs(spec) do
    if k ~= "user" and k ~= "starts_at" and k ~= "ends_at" then fail(path .. "." .. tostring(k), "unknown field") end
  end
  if spec.user == nil then fail(path .. ".user", "required") end
  local o = { group = parse_group(spec.user, path .. ".user") }
  for _, k in ipairs({ "starts_at", "ends_at" }) do
    local v = spec[k]
    if v == nil then fail(path .. "." .. k, "required") end
    if type(v) ~= "string" and type(v) ~= "number" then misuse(path .. "." .. k, "string or number expected, got " .. type(v)) end
    local t = parse_time(v, zone)
    if not t then fail(path .. "." .. k, format("invalid time %q", v)) end
    o[k] = t
  end
  if o.starts_at >= o.ends_at then fail(path, "starts_at must be before ends_at") end
  return o
end

---------------------------------------------------------------------------------------------
-- Evaluation

-- The instant shift k of a layer begins.
local function bound(ly, k)
  if k == 0 then return ly.start_t end
  return ly.zone:from_wall(ly.A + k * ly.len)
end

-- The shift index at t (t >= the layer's start); updates the layer's memo.
local function shift_at(ly, t)
  if t >= ly.m_s and t < ly.m_e then return ly.m_idx end
  local idx = floor((ly.zone:wall(t) - ly.A) / ly.len)
  if idx < 0 then idx = 0 end
  local s = bound(ly, idx)
  while idx > 0 and t < s do idx = idx - 1; s = bound(ly, idx) end
  local e = bound(ly, idx + 1)
  while t >= e do idx = idx + 1; s = e; e = bound(ly, idx + 1) end
  ly.m_idx, ly.m_s, ly.m_e = idx, s, e
  return idx
end

local function covered(ly, t)
  local rs = ly.restrictions
  if not rs then return true end
  for i = 1, #rs do
    if rs[i]:contains(t) then return true end
  end
  return false
end

local Schedule = {}
Schedule.__index = Schedule

-- The final group at t (a shared array: do not hand out) and where it comes from.
local function final_at(self, t)
  local ovs = self.overrides
  for i = #ovs, 1, -1 do
    local o = ovs[i]
    if t >= o.starts_at and t < o.ends_at then return o.group, "override" end
  end
  local layers = self.layers
  for i = #layers, 1, -1 do
    local ly = layers[i]
    if t >= ly.start_t and covered(ly, t) then
      local g = ly.groups[shift_at(ly, t) % #ly.groups + 1]
      return g, ly.name
    end
  end
  return nil
end

local function copy(g)
  local out = {}
  if g then for i = 1, #g do out[i] = g[i] end end
  return out
end

local function same(a, b)
  if a == b then return true end
  if not a or not b or #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- on_call(t) -> array of the user names on call at t (Unix seconds); {} when nobody is.
function Schedule:on_call(t)
  if type(t) ~= "number" then error("sched:on_call: t: number (Unix seconds) expected, got " .. type(t), 2) end
  return copy((final_at(self, t)))
end

-- Every instant in (a, b) where the final schedule may change, sorted, without repeats.
local function change_points(self, a, b)
  local pts = {}
  local function add(u) if u > a and u < b then pts[#pts + 1] = u end end
  for _, ly in ipairs(self.layers) do
    add(ly.start_t)
    if ly.start_t < b then
      local k = ly.start_t > a and 1 or shift_at(ly, a) + 1
      while true do
        local u = bound(ly, k)
        if u >= b then break end
        add(u)
        k = k + 1
      end
    end
    for _, iv in ipairs(ly.restrictions or {}) do
      for _, u in ipairs(iv:edges(a, b)) do add(u) end
    end
  end
  for _, o in ipairs(self.overrides) do add(o.starts_at); add(o.ends_at) end
  sort(pts)
  local out, last = {}, nil
  for _, u in ipairs(pts) do
    if u ~= last then out[#out + 1] = u; last = u end
  end
  return out
end

-- shifts(from, to) -> array of {user, users, starts_at, ends_at, layer}: the final schedule
-- in [from, to), clipped to it, adjacent shifts of the same users merged, gaps left out.
-- `user` is the first of `users` (a group has several); `layer` is the layer's name or
-- "override" (of the first part, when merged).
function Schedule:shifts(from, to)
  if type(from) ~= "number" then error("sched:shifts: from: number (Unix seconds) expected, got " .. type(from), 2) end
  if type(to) ~= "number" then error("sched:shifts: to: number (Unix seconds) expected, got " .. type(to), 2) end
  local out = {}
  if from >= to then return out end
  local pts = change_points(self, from, to)
  local prev
  for i = 0, #pts do
    local s = i == 0 and from or pts[i]
    local e = pts[i + 1] or to
    local g, src = final_at(self, s)
    if g then
      if prev and prev.ends_at == s and same(prev.users, g) then
        prev.ends_at = e
      else
        prev = { user = g[1], users = copy(g), starts_at = s, ends_at = e, layer = src }
        out[#out + 1] = prev
      end
    else
      prev = nil
    end
  end
  return out
end

local HORIZONS = { 86400, 8 * 86400, 35 * 86400, 400 * 86400, 3 * 366 * 86400 }

-- next_handoff(t) -> instant, users: the first instant after t at which the users on call
-- change (users: who is on call from then, {} for nobody), or nil when nothing changes within
-- three years.
function Schedule:next_handoff(t)
  if type(t) ~= "number" then error("sched:next_handoff: t: number (Unix seconds) expected, got " .. type(t), 2) end
  local cur = final_at(self, t)
  local from = t
  for _, h in ipairs(HORIZONS) do
    local to = t + h
    for _, u in ipairs(change_points(self, from, to)) do
      local g = final_at(self, u)
      if not same(g, cur) then return u, copy(g) end
    end
    from = to - 1
  end
  return nil
end

-- users() -> sorted array of every user the schedule names (for cross-references).
function Schedule:users()
  local seen, out = {}, {}
  local function add(g) for _, u in ipairs(g) do if not seen[u] then seen[u] = true; out[#out + 1] = u end end end
  for _, ly in ipairs(self.layers) do for _, g in ipairs(ly.groups) do add(g) end end
  for _, o in ipairs(self.overrides) do add(o.group) end
  sort(out)
  return out
end

function Schedule:__tostring()
  return format("schedule %s (%s, %d layers)", self.name or "?", self.zone.name, #self.layers)
end

local FIELDS = { time_zone = true, layers = true, overrides = true, description = true }

local function build(spec, name)
  local path = name and ("config.schedules." .. name) or "schedule"
  want(spec, "table", path)
  for k in pairs(spec) do
    if not FIELDS[k] then fail(path .. "." .. tostring(k), "unknown field") end
  end
  want(spec.time_zone, "string", path .. ".time_zone", true)
  local zone_name = spec.time_zone or "UTC"
  local zone, zerr = tz.load(zone_name)
  if not zone then fail(path .. ".time_zone", zerr) end
  local self = setmetatable({ name = name, zone = zone, layers = {}, overrides = {} }, Schedule)
  want(spec.layers, "table", path .. ".layers")
  if #spec.layers == 0 then fail(path .. ".layers", "at least one layer expected") end
  for i, l in ipairs(spec.layers) do
    self.layers[i] = parse_layer(l, path .. ".layers[" .. i .. "]", zone, zone_name, i)
  end
  if spec.overrides ~= nil then
    want(spec.overrides, "table", path .. ".overrides")
    for i, o in ipairs(spec.overrides) do
      self.overrides[i] = parse_override(o, path .. ".overrides[" .. i .. "]", zone)
    end
  end
  return self
end

-- schedule(spec, name) -> schedule, or nil, "config.schedules.<name>.<path>: reason"
-- ("schedule.<path>: ..." without a name). Wrong Lua types raise.
function M.schedule(spec, name)
  if name ~= nil and type(name) ~= "string" then
    error("oncall.schedule: name: string expected, got " .. type(name), 2)
  end
  local ok, res = pcall(build, spec, name)
  if ok then return res end
  if type(res) == "table" then return nil, res[1] end
  error(res, 2)
end

-- parse_time(v [, zone]) -> instant, wall-clock seconds; or nil: the time formats the
-- schedule accepts, for callers that take times the same way.
function M.parse_time(v, zone) return parse_time(v, zone or tz.UTC) end

return M
