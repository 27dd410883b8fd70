-- steward.billing.periods: billing periods as Lago computes them. A period is a run of whole
-- local days in the customer's time zone, {from, to} in epoch seconds with `to` exclusive (the
-- next period's `from`), so consecutive periods tile time across DST changes. Calendar billing
-- starts periods on Monday / the 1st / a quarter's or half-year's first month / January 1st;
-- anniversary billing on the subscription's own weekday or day of month, where a day the month
-- lacks (the 29th-31st) falls on the month's last day without dragging the following periods.
-- Proration counts local days, a day begun counting whole (Lago's date_diff_with_timezone).
local time = require "steward.time"
local decimal = require "steward.decimal"

local floor, type, tostring, error, setmetatable = math.floor, type, tostring, error, setmetatable

local M = {}

-- Months per period; weekly periods are 7 days.
local MONTHS = { monthly = 1, quarterly = 3, semiannual = 6, yearly = 12 }
M.INTERVALS = { "weekly", "monthly", "quarterly", "semiannual", "yearly" }

local MAX_LIST = 100000 -- periods.list: a bound so a bad range cannot spin for ever

-- Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm): no detour
-- through a time zone, so day arithmetic is exact.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  return yoe + era * 400 + (m <= 2 and 1 or 0), m, doy - floor((153 * mp + 2) / 5) + 1
end

local function days_in_month(y, m)
  if m == 2 then return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28 end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end
M.days_in_month = days_in_month

local zones = setmetatable({}, { __mode = "v" })

local function zone_of(name, fn)
  name = name or "UTC"
  if type(name) ~= "string" then error(fn .. ": timezone: IANA zone name expected, got " .. type(name), 3) end
  local z = zones[name]
  if z then return z end
  local zone, err = time.zone(name)
  if not zone then error(fn .. ": timezone: " .. tostring(err), 3) end
  zones[name] = zone
  return zone
end

-- The local day number of instant t in zone z.
local function day_of(z, t)
  local y, m, d = z:civil(floor(t))
  return days_from_civil(y, m, d)
end

-- The instant a local day begins (a midnight inside a DST gap: the first instant after it).
local function midnight(z, dn)
  local y, m, d = civil_from_days(dn)
  return z:from_local({ year = y, month = m, day = d, hour = 0, min = 0, sec = 0 })
end

local function check_time(v, fn, what)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    error(fn .. ": " .. what .. ": epoch seconds expected, got " .. (type(v) == "number" and tostring(v) or type(v)), 3)
  end
end

local function options(opts, fn)
  if opts ~= nil and type(opts) ~= "table" then error(fn .. ": opts: table expected, got " .. type(opts), 3) end
  opts = opts or {}
  local bt = opts.billing_time or "calendar"
  if bt ~= "calendar" and bt ~= "anniversary" then
    error(fn .. ": opts.billing_time: \"calendar\" or \"anniversary\" expected, got " .. tostring(bt), 3)
  end
  return bt, opts.timezone or "UTC"
end

-- The first local day of the period holding local day `dn`, and the first day of the next one.
local function period_days(interval, bt, z, anchor, dn)
  if interval == "weekly" then
    -- day 0 (1970-01-01) was a Thursday: Monday is 4 days later
    local first = bt == "calendar" and 4 or day_of(z, anchor)
    local start = dn - (dn - first) % 7
    return start, start + 7
  end
  local step = MONTHS[interval]
  local am, aday -- anchor month (as year*12 + month-1) and day of month
  if bt == "calendar" then
    am, aday = 0, 1
  else
    local y, m, d = civil_from_days(day_of(z, anchor))
    am, aday = y * 12 + m - 1, d
  end
  local function start_of(mi) -- the period start day in month index mi
    local y, m = floor(mi / 12), mi % 12 + 1
    local d = aday
    local dim = days_in_month(y, m)
    if d > dim then d = dim end
    return days_from_civil(y, m, d)
  end
  local y, m = civil_from_days(dn)
  local mi = y * 12 + m - 1
  local n = floor((mi - am) / step)
  local s = start_of(am + n * step)
  if s > dn then
    n = n - 1
    s = start_of(am + n * step)
  end
  return s, start_of(am + (n + 1) * step)
end

local function check_interval(interval, fn)
  if interval ~= "weekly" and not MONTHS[interval] then
    error(fn .. ": interval: one of weekly, monthly, quarterly, semiannual, yearly expected, got " .. tostring(interval), 3)
  end
end

local function make(z, zname, first, next_first)
  local from, to = midnight(z, first), midnight(z, next_first)
  return { from = from, to = to, days = next_first - first, seconds = to - from, timezone = zname }
end

-- bounds(interval, anchor, at [, opts]) -> {from, to, days, seconds, timezone}: the period
-- holding `at`.
-- anchor: the subscription's start (anniversary billing takes its local weekday or day of month).
-- opts: billing_time = "calendar" (default) | "anniversary", timezone = IANA name (default UTC).
function M.bounds(interval, anchor, at, opts)
  check_interval(interval, "periods.bounds")
  check_time(anchor, "periods.bounds", "anchor")
  check_time(at, "periods.bounds", "at")
  local bt, zname = options(opts, "periods.bounds")
  local z = zone_of(zname, "periods.bounds")
  local first, next_first = period_days(interval, bt, z, anchor, day_of(z, at))
  return make(z, zname, first, next_first)
end

-- next(interval, anchor, period_or_at [, opts]) -> the period after `period` (or after the one
-- holding the instant given).
function M.next(interval, anchor, p, opts)
  check_interval(interval, "periods.next")
  if type(p) == "number" then p = M.bounds(interval, anchor, p, opts) end
  if type(p) ~= "table" then error("periods.next: argument #3: a period or epoch seconds expected, got " .. type(p), 2) end
  check_time(p.to, "periods.next", "period.to")
  return M.bounds(interval, anchor, p.to, opts)
end

-- list(interval, anchor, from, to [, opts]) -> the periods meeting [from, to), in order.
function M.list(interval, anchor, from, to, opts)
  check_interval(interval, "periods.list")
  check_time(from, "periods.list", "from")
  check_time(to, "periods.list", "to")
  local out = {}
  if to <= from then return out end
  local p = M.bounds(interval, anchor, from, opts)
  while p.from < to do
    out[#out + 1] = p
    if #out > MAX_LIST then error("periods.list: more than " .. MAX_LIST .. " periods between from and to", 2) end
    p = M.bounds(interval, anchor, p.to, opts)
  end
  return out
end

-- clip(period, from, to) -> the part of `period` inside [from, to) (either may be nil), keeping
-- the whole period's `days` and `seconds`: a first period starting mid-way or a terminated one
-- is prorated against the full period (Lago's single_day_price, charges_duration).
function M.clip(p, from, to)
  if type(p) ~= "table" then error("periods.clip: argument #1: period expected, got " .. type(p), 2) end
  local f, t = p.from, p.to
  if from ~= nil then check_time(from, "periods.clip", "from"); if from > f then f = from end end
  if to ~= nil then check_time(to, "periods.clip", "to"); if to < t then t = to end end
  if t < f then t = f end
  return { from = f, to = t, days = p.days, seconds = p.seconds or (p.to - p.from), timezone = p.timezone }
end

-- days(from, to [, timezone]) -> the number of local days [from, to) touches: a day begun
-- counts whole, so [10:00 on the 15th, midnight after the 31st) is 17 days; an empty span is 0.
function M.days(from, to, zname)
  check_time(from, "periods.days", "from")
  check_time(to, "periods.days", "to")
  if to <= from then return 0 end
  local z = zone_of(zname, "periods.days")
  local last = day_of(z, to)
  -- `to` is exclusive: a span ending exactly at a midnight does not touch the day it opens
  if midnight(z, last) >= to then last = last - 1 end
  return last - day_of(z, from) + 1
end

local function to_decimal(v, fn, what)
  if decimal.is(v) then return v end
  local ok, d = pcall(decimal.new, v)
  if not ok then error(fn .. ": " .. what .. ": " .. tostring(d):gsub("^decimal%.new: argument #1: ", ""), 3) end
  return d
end

-- prorate(amount, part_from, part_to, period [, timezone]) -> the exact share of `amount` for
-- the days of [part_from, part_to) inside the period: amount * part days / period days. Not
-- rounded: the formula that bills it rounds once (d:money). Parts split at local midnights sum
-- to the whole; a part beginning or ending mid-day counts that day whole, as Lago does.
function M.prorate(amount, part_from, part_to, p, zname)
  amount = to_decimal(amount, "periods.prorate", "amount")
  if type(p) ~= "table" then error("periods.prorate: argument #4: period expected, got " .. type(p), 2) end
  check_time(part_from, "periods.prorate", "part_from")
  check_time(part_to, "periods.prorate", "part_to")
  zname = zname or p.timezone
  local f, t = part_from, part_to
  if f < p.from then f = p.from end
  if t > p.to then t = p.to end
  local total = p.days or M.days(p.from, p.to, zname)
  if total <= 0 then error("periods.prorate: period: an empty period cannot be prorated", 2) end
  local used = M.days(f, t, zname)
  if used == total then return amount end
  return amount * used / total
end

-- fraction(part_from, part_to, period [, timezone]) -> the part's share of the period (a decimal
-- in [0, 1]), for charges prorated by h2's formulas.
function M.fraction(part_from, part_to, p, zname)
  return M.prorate(1, part_from, part_to, p, zname)
end

-- trial_end(started, trial_days) -> the instant a trial ends: whole 24-hour days after the
-- start, as Lago's trial_end_datetime.
function M.trial_end(started, trial_days)
  check_time(started, "periods.trial_end", "started")
  if trial_days == nil then return started end
  if type(trial_days) ~= "number" or trial_days < 0 or trial_days ~= floor(trial_days) then
    error("periods.trial_end: trial_days: a whole number of days >= 0 expected, got " .. tostring(trial_days), 2)
  end
  return started + trial_days * 86400
end

-- grace_closed(period, grace, now) -> whether the grace window after the period has passed:
-- usage stamped inside the period is refused as late from then on. grace: seconds or a
-- duration string ("3d").
function M.grace_closed(p, grace, now)
  if type(p) ~= "table" then error("periods.grace_closed: argument #1: period expected, got " .. type(p), 2) end
  check_time(p.to, "periods.grace_closed", "period.to")
  if type(grace) == "string" then
    local s, err = time.parse_duration(grace)
    if not s then error("periods.grace_closed: grace: " .. tostring(err), 2) end
    grace = s
  end
  if type(grace) ~= "number" or grace < 0 then
    error("periods.grace_closed: grace: seconds >= 0 or a duration expected, got " .. tostring(grace), 2)
  end
  check_time(now, "periods.grace_closed", "now")
  return now >= p.to + grace
end

M.days_from_civil, M.civil_from_days = days_from_civil, civil_from_days

return M
