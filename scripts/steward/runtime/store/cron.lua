-- steward.runtime.store.cron: 5-field cron expressions (Vixie cron's syntax and day matching),
-- evaluated in UTC. Pure computation; durable schedules live in steward.runtime.store.schedules.
local util = require "steward.runtime.store.util"

local type, tonumber, error, setmetatable, ipairs, floor = type, tonumber, error, setmetatable, ipairs, math.floor
local days_from_civil, civil_from_days = util.days_from_civil, util.civil_from_days

local M = {}

local FIELDS = {
  { name = "minute", min = 0, max = 59 },
  { name = "hour", min = 0, max = 23 },
  { name = "day-of-month", min = 1, max = 31 },
  { name = "month", min = 1, max = 12,
    names = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 } },
  { name = "day-of-week", min = 0, max = 7, names = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 } },
}

local MACROS = {
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *", ["@monthly"] = "0 0 1 * *",
  ["@weekly"] = "0 0 * * 0", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *", ["@hourly"] = "0 * * * *",
}

local function value(s, f)
  local n = tonumber(s:match("^%d+$"))
  if not n and f.names then n = f.names[s:lower()] end
  if not n then return nil, "bad value " .. ("%q"):format(s) end
  if n < f.min or n > f.max then return nil, "value " .. n .. " out of range " .. f.min .. "-" .. f.max end
  return n
end

-- One field → set {[n] = true}; a list of ranges, each `*`, `a`, `a-b`, with an optional `/step`
-- (`a/step` means a through the maximum).
local function parse_field(text, f)
  local set = {}
  for item in (text .. ","):gmatch("([^,]*),") do
    if item == "" then return nil, "empty list item" end
    local range, step = item:match("^([^/]+)/(.+)$")
    if range then
      step = tonumber(step:match("^%d+$"))
      if not step or step < 1 then return nil, "bad step in " .. ("%q"):format(item) end
    else
      range, step = item, 1
    end
    local lo, hi
    if range == "*" then
      lo, hi = f.min, f.max
    else
      local a, b = range:match("^([^-]+)-([^-]+)$")
      local err
      if a then
        lo, err = value(a, f)
        if not lo then return nil, err end
        hi, err = value(b, f)
        if not hi then return nil, err end
        if hi < lo then return nil, "range " .. ("%q"):format(range) .. " goes backwards" end
      else
        lo, err = value(range, f)
        if not lo then return nil, err end
        hi = (step > 1 or item:find("/", 1, true)) and f.max or lo
      end
    end
    for n = lo, hi, step do set[n] = true end
  end
  return set
end

local Schedule = {}
Schedule.__index = Schedule

function M.parse(expr)
  if type(expr) ~= "string" then error("cron.parse: expr: string expected, got " .. type(expr), 2) end
  local text = expr:match("^%s*(.-)%s*$")
  if text:sub(1, 1) == "@" then
    local m = MACROS[text:lower()]
    if not m then return nil, "cron: unknown macro " .. ("%q"):format(text) end
    text = m
  end
  local parts = {}
  for p in text:gmatch("%S+") do parts[#parts + 1] = p end
  if #parts ~= 5 then return nil, "cron: 5 fields expected (minute hour day-of-month month day-of-week), got " .. #parts end
  local sets = {}
  for i, f in ipairs(FIELDS) do
    local set, err = parse_field(parts[i], f)
    if not set then return nil, "cron: " .. f.name .. ": " .. err end
    sets[i] = set
  end
  if sets[5][7] then sets[5][0] = true end -- 7 is Sunday too
  return setmetatable({
    expr = expr, minute = sets[1], hour = sets[2], dom = sets[3], month = sets[4], dow = sets[5],
    -- As in Vixie cron: a day field starting with "*" counts as unrestricted, and when both day
    -- fields are restricted a day matches if either does.
    dom_star = parts[3]:sub(1, 1) == "*", dow_star = parts[5]:sub(1, 1) == "*",
  }, Schedule)
end

function Schedule:day_matches(y, m, d)
  local days = days_from_civil(y, m, d)
  local wd = (days + 4) % 7 -- 1970-01-01 was a Thursday
  local dom_ok, dow_ok = self.dom[d] == true, self.dow[wd] == true
  if self.dom_star or self.dow_star then return dom_ok and dow_ok end
  return dom_ok or dow_ok
end

local function split(t)
  local days = floor(t / 86400)
  local rem = t - days * 86400
  local y, m, d = civil_from_days(days)
  return y, m, d, floor(rem / 3600), floor(rem / 60) % 60
end

local function join(y, m, d, h, mi)
  return days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60
end

-- Years searched before giving up: "0 0 29 2 mon" needs a leap year's Feb 29 on a Monday, so
-- that is up to 28 years (plus century rules) away.
local HORIZON = 60 * 366 * 86400

-- schedule:next(after) → the first matching minute strictly after `after` (seconds, UTC), or
-- nil when the expression never matches (e.g. "0 0 30 2 *").
function Schedule:next(after)
  if type(after) ~= "number" then error("schedule:next: after: number expected", 2) end
  local t = floor(after / 60) * 60 + 60
  local limit = t + HORIZON
  while t <= limit do
    local y, m, d, h, mi = split(t)
    if not self.month[m] then
      if m == 12 then t = join(y + 1, 1, 1, 0, 0) else t = join(y, m + 1, 1, 0, 0) end
    elseif not self:day_matches(y, m, d) then
      t = join(y, m, d, 0, 0) + 86400
    elseif not self.hour[h] then
      t = join(y, m, d, h, 0) + 3600
    elseif not self.minute[mi] then
      t = t + 60
    else
      return t
    end
  end
  return nil
end

-- schedule:prev(before) → the last matching minute strictly before `before`, or nil.
function Schedule:prev(before)
  if type(before) ~= "number" then error("schedule:prev: before: number expected", 2) end
  local t = math.ceil(before / 60) * 60 - 60
  local limit = t - HORIZON
  while t >= limit do
    local y, m, d, h, mi = split(t)
    if not self.month[m] then
      t = join(y, m, 1, 0, 0) - 60
    elseif not self:day_matches(y, m, d) then
      t = join(y, m, d, 0, 0) - 60
    elseif not self.hour[h] then
      t = join(y, m, d, h, 0) - 60
    elseif not self.minute[mi] then
      t = t - 60
    else
      return t
    end
  end
  return nil
end

function Schedule:matches(t)
  local y, m, d, h, mi = split(t)
  return self.month[m] == true and self:day_matches(y, m, d) and self.hour[h] == true and self.minute[mi] == true
end

function Schedule:__tostring() return "cron schedule " .. self.expr end

return M
