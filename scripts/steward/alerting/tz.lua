-- steward.alerting.tz: IANA time zones from the system's tz database (Debian's tzdata in
-- /usr/share/zoneinfo), for time intervals and on-call schedules: UTC offsets at an instant,
-- local calendar fields, and local wall-clock times back to instants (gaps and overlaps).
--
-- TZif files (RFC 8536): the version 2+ block with 64-bit transition times is used (version 1
-- files only have the 32-bit block), and the footer's POSIX TZ string
-- ("CET-1CEST,M3.5.0,M10.5.0/3") answers for instants after the last transition, so a slim
-- tzdata file (rules only, no precomputed transitions) works as well as a fat one. Leap-second
-- records are skipped: steward's clock is POSIX time, so the "right/" zones are read as if
-- they were the plain ones.
--
-- Reading: zones are loaded when a time interval or schedule is compiled, never when one is
-- evaluated, and each name is read once per process (cached). Inside a task the file is read
-- with steward.fs (libuv's thread pool, the loop keeps running) — that is where the daemon
-- compiles its configuration (policy loading and handlers are tasks). Where a task cannot
-- suspend (outside any task, a module's top-level code during require, a metamethod) the
-- file is read with io.open instead: a few kilobytes from the page cache, once per zone;
-- refusing there would make `steward eval --local` and plain Lua callers unable to use zones
-- for no practical gain.
local type, error, tonumber, tostring, setmetatable, pcall, ipairs, floor =
  type, error, tonumber, tostring, setmetatable, pcall, ipairs, math.floor
local byte, sub, format, find = string.byte, string.sub, string.format, string.find

local M = {}

local DIR = "/usr/share/zoneinfo"
local MAX_FILE = 256 * 1024
-- No offset in the database reaches 26 hours; windows around a local time use this.
local SPAN = 30 * 3600

---------------------------------------------------------------------------------------------
-- Calendar arithmetic (proleptic Gregorian, days since 1970-01-01; H. Hinnant's algorithms).

-- Days from and to civil dates: the store's RFC 3339 code has them already.
local cal = require "steward.runtime.store.util"
local days_from_civil, civil_from_days = cal.days_from_civil, cal.civil_from_days

local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local function days_in_month(y, m) return (m == 2 and leap(y)) and 29 or MDAYS[m] end

M.days_from_civil, M.civil_from_days, M.days_in_month = days_from_civil, civil_from_days, days_in_month

---------------------------------------------------------------------------------------------
-- POSIX TZ strings (the TZif footer), with RFC 8536's extensions (hours up to 167, negative
-- transition times).

-- "[+-]hh[:mm[:ss]]" at position i -> seconds, next position; nil when absent.
local function ptime(s, i, maxh)
  local sign, h, rest, j = 1, nil, nil, i
  local c = sub(s, j, j)
  if c == "+" or c == "-" then sign = c == "-" and -1 or 1; j = j + 1 end
  local a, b = find(s, "^%d+", j)
  if not a then return nil end
  h = tonumber(sub(s, a, b))
  if b - a > 2 or h > maxh then return nil end
  local secs = h * 3600
  j = b + 1
  for _, mult in ipairs({ 60, 1 }) do
    a, b, rest = find(s, "^:(%d%d)", j)
    if not a then break end
    if tonumber(rest) > 59 then return nil end
    secs = secs + tonumber(rest) * mult
    j = b + 1
  end
  return sign * secs, j
end

-- A zone designation: three or more letters, or letters, digits, "+" and "-" inside <...>.
local function pname(s, i)
  local a, b, n = find(s, "^<([%w+-]+)>", i)
  if a then return n, b + 1 end
  a, b = find(s, "^%a%a%a+", i)
  if a then return sub(s, a, b), b + 1 end
  return nil
end

-- A rule date: "Jn" (1..365, February 29 never counted), "n" (0..365), "Mm.w.d".
local function pdate(s, i)
  local a, b, n = find(s, "^J(%d+)", i)
  if a then
    n = tonumber(n)
    if n < 1 or n > 365 then return nil end
    return { kind = "J", n = n }, b + 1
  end
  local m, w, d
  a, b, m, w, d = find(s, "^M(%d%d?)%.(%d)%.(%d)", i)
  if a then
    m, w, d = tonumber(m), tonumber(w), tonumber(d)
    if m < 1 or m > 12 or w < 1 or w > 5 or d > 6 then return nil end
    return { kind = "M", m = m, w = w, d = d }, b + 1
  end
  a, b, n = find(s, "^(%d+)", i)
  if a then
    n = tonumber(n)
    if n > 365 then return nil end
    return { kind = "n", n = n }, b + 1
  end
  return nil
end

local function prule(s, i)
  local r, j = pdate(s, i)
  if not r then return nil end
  r.time = 7200
  if sub(s, j, j) == "/" then
    r.time, j = ptime(s, j + 1, 167)
    if not r.time then return nil end
  end
  return r, j
end

-- Parses a POSIX TZ string -> {std_off, std_abbr, dst_off, dst_abbr, start, stop} (offsets in
-- seconds east of UTC), or nil.
local function parse_posix(s)
  local std, i = pname(s, 1)
  if not std then return nil end
  local off
  off, i = ptime(s, i, 24)
  if not off then return nil end
  local p = { std_abbr = std, std_off = -off }
  if i > #s then return p end
  local dst
  dst, i = pname(s, i)
  if not dst then return nil end
  p.dst_abbr, p.dst_off = dst, p.std_off + 3600
  if i <= #s and sub(s, i, i) ~= "," then
    off, i = ptime(s, i, 24)
    if not off then return nil end
    p.dst_off = -off
  end
  if i > #s then
    -- No rule: POSIX leaves it to the implementation; glibc and zic use the US rules.
    p.start = { kind = "M", m = 3, w = 2, d = 0, time = 7200 }
    p.stop = { kind = "M", m = 11, w = 1, d = 0, time = 7200 }
    return p
  end
  if sub(s, i, i) ~= "," then return nil end
  p.start, i = prule(s, i + 1)
  if not p.start or sub(s, i, i) ~= "," then return nil end
  p.stop, i = prule(s, i + 1)
  if not p.stop or i <= #s then return nil end
  return p
end
M._parse_posix = parse_posix

-- The day (days since the epoch) a rule date falls on in year y.
local function rule_day(r, y)
  if r.kind == "J" then
    local n = r.n - 1
    if leap(y) and r.n >= 60 then n = n + 1 end
    return days_from_civil(y, 1, 1) + n
  elseif r.kind == "n" then
    return days_from_civil(y, 1, 1) + r.n
  end
  local first = days_from_civil(y, r.m, 1)
  local wd = (first + 4) % 7 -- 1970-01-01 was a Thursday
  local day = 1 + (r.d - wd) % 7 + 7 * (r.w - 1)
  local n = days_in_month(y, r.m)
  while day > n do day = day - 7 end
  return first + day - 1
end

-- The instants (UTC) DST starts and ends in year y.
local function rule_bounds(p, y)
  local s = rule_day(p.start, y) * 86400 + p.start.time - p.std_off
  local e = rule_day(p.stop, y) * 86400 + p.stop.time - p.dst_off
  return s, e
end

-- offset, abbreviation, isdst at t by the POSIX rule.
local function posix_offset(p, t)
  if not p.dst_abbr then return p.std_off, p.std_abbr, false end
  local y = civil_from_days(floor((t + p.std_off) / 86400))
  local s, e = rule_bounds(p, y)
  local dst
  if s < e then dst = t >= s and t < e else dst = t < e or t >= s end
  if dst then return p.dst_off, p.dst_abbr, true end
  return p.std_off, p.std_abbr, false
end

-- Transitions of the POSIX rule in (a, b], in order -> array of instants.
local function posix_transitions(p, a, b)
  local out = {}
  if not p.dst_abbr then return out end
  local y0 = civil_from_days(floor((a + p.std_off) / 86400)) - 1
  local y1 = civil_from_days(floor((b + p.std_off) / 86400)) + 1
  for y = y0, y1 do
    local s, e = rule_bounds(p, y)
    if s > e then s, e = e, s end
    if s > a and s <= b then out[#out + 1] = s end
    if e > a and e <= b then out[#out + 1] = e end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- TZif

local function u32(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function i32(s, i)
  local v = u32(s, i)
  return v >= 2147483648 and v - 4294967296 or v
end
local function i64(s, i)
  return i32(s, i) * 4294967296 + u32(s, i + 4)
end

local function header(s, i)
  if #s < i + 43 or sub(s, i, i + 3) ~= "TZif" then return nil end
  local h = { version = byte(s, i + 4) }
  h.isutcnt, h.isstdcnt, h.leapcnt = u32(s, i + 20), u32(s, i + 24), u32(s, i + 28)
  h.timecnt, h.typecnt, h.charcnt = u32(s, i + 32), u32(s, i + 36), u32(s, i + 40)
  return h
end

local function block_len(h, tsize)
  return h.timecnt * tsize + h.timecnt + h.typecnt * 6 + h.charcnt + h.leapcnt * (tsize + 4) +
      h.isstdcnt + h.isutcnt
end

-- Parses TZif data -> zone fields, or nil, reason.
local function parse_tzif(s)
  local h = header(s, 1)
  if not h then return nil, "not a TZif file" end
  local i, tsize, rd = 45, 4, i32
  if h.version ~= 0 then
    local h2 = header(s, 45 + block_len(h, 4))
    if not h2 then return nil, "truncated TZif file" end
    h, i, tsize, rd = h2, 45 + block_len(h, 4) + 44, 8, i64
  end
  if h.typecnt == 0 or #s < i + block_len(h, tsize) - 1 then return nil, "truncated TZif file" end
  local trans, idx, types = {}, {}, {}
  for k = 1, h.timecnt do trans[k] = rd(s, i + (k - 1) * tsize) end
  i = i + h.timecnt * tsize
  for k = 1, h.timecnt do
    idx[k] = byte(s, i + k - 1) + 1
    if idx[k] > h.typecnt then return nil, "bad transition type" end
  end
  i = i + h.timecnt
  local abbr_at = i + h.typecnt * 6
  for k = 1, h.typecnt do
    local p = i + (k - 1) * 6
    local ai = byte(s, p + 5)
    local z = find(s, "\0", abbr_at + ai, true)
    types[k] = { off = i32(s, p), isdst = byte(s, p + 4) ~= 0,
                 abbr = sub(s, abbr_at + ai, (z or abbr_at + h.charcnt) - 1) }
  end
  local z = { trans = trans, idx = idx, types = types }
  if h.version ~= 0 then
    local foot_at = i + block_len(h, tsize) - h.timecnt * tsize - h.timecnt
    local tzs = s:match("^\n([^\n]*)\n", foot_at)
    if tzs and tzs ~= "" then
      z.posix = parse_posix(tzs)
      if not z.posix then return nil, "bad TZ string " .. format("%q", tzs) end
    end
  end
  return z
end

---------------------------------------------------------------------------------------------
-- Zones

local Zone = {}
Zone.__index = Zone

-- offset(t) -> seconds east of UTC, abbreviation, isdst.
function Zone:offset(t)
  if type(t) ~= "number" then error("zone:offset: t: number (Unix seconds) expected, got " .. type(t), 2) end
  if self.fixed then return self.fixed, self.abbr, false end
  local trans = self.trans
  local n = #trans
  if n == 0 or t >= trans[n] then
    if self.posix then return posix_offset(self.posix, t) end
    local ty = self.types[n == 0 and 1 or self.idx[n]]
    return ty.off, ty.abbr, ty.isdst
  end
  if t < trans[1] then -- RFC 8536: before the first transition, time type 0
    local ty = self.types[1]
    return ty.off, ty.abbr, ty.isdst
  end
  local lo, hi = 1, n -- trans[lo] <= t < trans[hi]
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if trans[mid] <= t then lo = mid else hi = mid end
  end
  local ty = self.types[self.idx[lo]]
  return ty.off, ty.abbr, ty.isdst
end

-- civil(t) -> year, month, day, hour, min, sec, wday, yday, offset, abbr, isdst: to_local's
-- fields as values, for callers that ask often (time intervals) and allocate nothing.
function Zone:civil(t)
  local off, abbr, isdst = self:offset(t)
  local l = floor(t) + off
  local days = floor(l / 86400)
  local secs = l - days * 86400
  local y, m, d = civil_from_days(days)
  return y, m, d, floor(secs / 3600), floor(secs / 60) % 60, secs % 60, (days + 4) % 7,
      days - days_from_civil(y, 1, 1) + 1, off, abbr, isdst
end

-- to_local(t) -> {year, month, day, hour, min, sec, wday (0 = Sunday), yday (1 = January 1),
-- isdst, offset, abbr}.
function Zone:to_local(t)
  if type(t) ~= "number" then error("zone:to_local: t: number (Unix seconds) expected, got " .. type(t), 2) end
  local y, m, d, h, mi, sec, wday, yday, off, abbr, isdst = self:civil(t)
  return { year = y, month = m, day = d, hour = h, min = mi, sec = sec, wday = wday, yday = yday,
           isdst = isdst, offset = off, abbr = abbr }
end

-- Every offset in force somewhere in [a, b].
local function offsets_near(z, a, b)
  local set, list = {}, {}
  local function add(o) if not set[o] then set[o] = true; list[#list + 1] = o end end
  add((z:offset(a)))
  local trans = z.trans
  local lo, hi = 1, #trans + 1 -- first k with trans[k] > a
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if trans[mid] > a then hi = mid else lo = mid + 1 end
  end
  for k = lo, #trans do
    local tk = trans[k]
    if tk > b then break end
    if tk > a then add(z.types[z.idx[k]].off) end
  end
  if z.posix and (#trans == 0 or b >= trans[#trans]) then
    for _, tt in ipairs(posix_transitions(z.posix, a, b)) do add((z:offset(tt))) end
  end
  return list
end

-- transitions(a, b) -> the instants in (a, b] where the offset changes, in order.
function Zone:transitions(a, b)
  local out = {}
  if self.fixed then return out end
  local trans = self.trans
  local lo, hi = 1, #trans + 1 -- first k with trans[k] > a
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if trans[mid] > a then hi = mid else lo = mid + 1 end
  end
  for k = lo, #trans do
    if trans[k] > b then break end
    out[#out + 1] = trans[k]
  end
  if self.posix then
    local last = trans[#trans]
    for _, tt in ipairs(posix_transitions(self.posix, last and last > a and last or a, b)) do
      out[#out + 1] = tt
    end
  end
  return out
end

-- from_wall(L) -> Unix seconds for L, a wall-clock time in this zone counted like Unix
-- seconds (days_from_civil(y, m, d) * 86400 + seconds into the day). A wall-clock time that
-- occurs twice (the hour DST ends) gives the earlier instant; one that does not occur
-- (skipped when DST starts) gives the first instant after the gap, the transition itself.
-- With `later`, a repeated wall-clock time gives the later instant instead.
function Zone:from_wall(L, later)
  if type(L) ~= "number" then error("zone:from_wall: number expected, got " .. type(L), 2) end
  if self.fixed then return L - self.fixed end
  local best
  for _, o in ipairs(offsets_near(self, L - SPAN, L + SPAN)) do
    local u = L - o
    if self:offset(u) == o and (not best or (later and u > best) or (not later and u < best)) then best = u end
  end
  if best then return best end
  -- In a gap: the transition that ends it is the first u whose wall-clock time is past L.
  local lo, hi = floor(L - SPAN), floor(L + SPAN) + 1
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if mid + self:offset(mid) > L then hi = mid else lo = mid end
  end
  return hi
end

local FIELDS = { "year", "month", "day" }

-- from_local{year, month, day [, hour, min, sec]} -> Unix seconds, by from_wall's rules for
-- gaps and overlaps. Fields may overflow (month 13, day 32, hour 25) as with os.time.
function Zone:from_local(f)
  if type(f) ~= "table" then error("zone:from_local: table expected, got " .. type(f), 2) end
  for _, k in ipairs(FIELDS) do
    if type(f[k]) ~= "number" then error("zone:from_local: " .. k .. ": number expected, got " .. type(f[k]), 2) end
  end
  local y, mo = f.year, f.month - 1
  y, mo = y + floor(mo / 12), mo % 12 + 1
  return self:from_wall((days_from_civil(y, mo, 1) + f.day - 1) * 86400 + (f.hour or 0) * 3600 +
    (f.min or 0) * 60 + (f.sec or 0))
end

-- wall(t) -> the wall-clock time at t, counted as from_wall takes it.
function Zone:wall(t)
  return t + (self:offset(t))
end

function Zone:__tostring() return "zone " .. self.name end

---------------------------------------------------------------------------------------------
-- Loading

local cache = {}

local function fixed_zone(name, secs)
  return setmetatable({ name = name, fixed = secs, abbr = name, trans = {}, types = {} }, Zone)
end

-- "+02:00", "-0530", "+02" -> seconds east of UTC.
local function parse_fixed(name)
  local sign, h, m = name:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then sign, h = name:match("^([+-])(%d%d)$"); m = "00" end
  if not sign then return nil end
  h, m = tonumber(h), tonumber(m)
  if h > 23 or m > 59 then return nil end
  return (sign == "-" and -1 or 1) * (h * 3600 + m * 60)
end
M.parse_fixed = parse_fixed

local fs_read -- steward.fs.read, when steward.fs is available (not in plain LuaJIT)
do
  local ok, fs = pcall(require, "steward.fs")
  if ok and type(fs) == "table" then fs_read = fs.read end
end

-- How many zone files were read each way (for tests and the REPL).
M.reads = { fs = 0, io = 0 }

local function read_file(path)
  if fs_read then
    local ok, data, err = pcall(fs_read, path, { max = MAX_FILE })
    if ok then
      M.reads.fs = M.reads.fs + 1
      return data, err
    end
    -- Only "no task here" falls back to a synchronous read; anything else is real.
    local msg = tostring(data)
    if not (find(msg, "must be called from inside a task", 1, true) or find(msg, "cannot suspend here", 1, true)) then
      error(data, 0)
    end
  end
  M.reads.io = M.reads.io + 1
  local fh, err = io.open(path, "rb")
  if not fh then return nil, err end
  local data = fh:read(MAX_FILE + 1)
  fh:close()
  if not data then return nil, "EISDIR: not a file: " .. path end
  if #data > MAX_FILE then return nil, "EFBIG: file too large: " .. path end
  return data
end

-- load(name) -> zone, or nil, err. name: an IANA name ("Europe/Berlin", "Etc/GMT+5"), "UTC",
-- or a fixed offset ("+02:00", "-0530", "+02").
function M.load(name)
  if type(name) ~= "string" then error("tz.load: name: string expected, got " .. type(name), 2) end
  local z = cache[name]
  if z then return z end
  if name == "UTC" or name == "Z" then
    z = fixed_zone(name, 0)
    z.abbr = "UTC"
  else
    local secs = parse_fixed(name)
    if secs then
      z = fixed_zone(name, secs)
    else
      if name == "" or sub(name, 1, 1) == "/" or find(name, "..", 1, true) or
          not name:match("^[%w_+%-/.]+$") then
        return nil, format("invalid time zone name %q", name)
      end
      local data, err = read_file(DIR .. "/" .. name)
      if not data then
        if err and (find(err, "ENOENT", 1, true) or find(err, "No such file", 1, true) or
              find(err, "EISDIR", 1, true) or find(err, "ENOTDIR", 1, true) or find(err, "Is a directory", 1, true)) then
          return nil, format("unknown time zone %q", name)
        end
        return nil, format("time zone %q: %s", name, tostring(err))
      end
      local fields, perr = parse_tzif(data)
      if not fields then return nil, format("time zone %q: %s", name, perr) end
      fields.name = name
      z = setmetatable(fields, Zone)
    end
  end
  cache[name] = z
  return z
end

-- fixed(seconds east of UTC) -> zone with that constant offset.
function M.fixed(secs)
  if type(secs) ~= "number" or secs ~= floor(secs) or secs <= -86400 or secs >= 86400 then
    error("tz.fixed: seconds east of UTC (an integer under a day) expected, got " .. tostring(secs), 2)
  end
  local sign = secs < 0 and "-" or "+"
  local a = secs < 0 and -secs or secs
  local name = format("%s%02d:%02d", sign, floor(a / 3600), floor(a / 60) % 60)
  if a % 60 ~= 0 then name = format("%s:%02d", name, a % 60) end
  return fixed_zone(name, secs)
end

-- posix(tzstring) -> zone, or nil, err: a zone from a POSIX TZ string alone
-- ("EST5EDT,M3.2.0,M11.1.0"), as glibc's TZ variable takes it. Not cached.
function M.posix(s)
  if type(s) ~= "string" then error("tz.posix: string expected, got " .. type(s), 2) end
  local p = parse_posix(s)
  if not p then return nil, format("invalid POSIX TZ string %q", s) end
  return setmetatable({ name = s, posix = p, trans = {}, idx = {}, types = {} }, Zone)
end

-- The instants in (a, b] where a zone built by posix() changes offset (for tests).
function M._posix_transitions(z, a, b) return posix_transitions(z.posix, a, b) end

M.UTC = fixed_zone("UTC", 0)
M.UTC.abbr = "UTC"
cache.UTC = M.UTC

return M
