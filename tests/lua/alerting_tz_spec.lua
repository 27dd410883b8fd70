-- steward.alerting.tz against the system's own tz code: every transition zdump lists for
-- 1970..2041, local calendar fields from `date` (glibc), POSIX TZ strings through glibc's TZ
-- variable, and the gap/overlap rules of from_local.
local t = require "steward.tap"
local tz = require "steward.alerting.tz"
local task = require "steward.task"

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local MON = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
  Oct = 10, Nov = 11, Dec = 12 }
local function utc(y, mo, d, h, mi, s)
  return tz.days_from_civil(y, mo, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60 + (s or 0)
end
t.is(utc(2024, 3, 1, 12), 1709294400, "the spec's own clock")

-- Every line of `zdump -v` ("... Sun Mar 29 01:00:00 2026 UT = ... isdst=1 gmtoff=7200") is
-- an instant on one side of a transition; the zone must give the same offset, abbreviation
-- and DST flag at each.
local function zdump_check(name, from, to, none)
  local z, err = tz.load(name)
  if not z then return t.ok(false, name .. ": " .. tostring(err)) end
  local n, bad = 0, {}
  for line in sh(string.format("zdump -v -c %d,%d %s", from, to, name)):gmatch("[^\n]+") do
    local mon, d, h, mi, s, y, abbr, isdst, off =
      line:match("%a+ (%a+) +(%d+) (%d+):(%d+):(%d+) (%d+) UT = %a+ %a+ +%d+ [%d:]+ %d+ (%S+) isdst=(%d) gmtoff=(%-?%d+)")
    if mon then
      n = n + 1
      local at = utc(tonumber(y), MON[mon], tonumber(d), tonumber(h), tonumber(mi), tonumber(s))
      local o, a, dst = z:offset(at)
      if o ~= tonumber(off) or a ~= abbr or dst ~= (isdst == "1") then
        bad[#bad + 1] = string.format("%d: got %s %s %s, zdump %s %s %s", at, o, a, dst, off, abbr, isdst)
      end
    end
  end
  if none then -- no transitions in the range: check one instant against zdump's "now" line
    local off = sh(string.format("zdump -v -c 2030,2031 %s", name)):match("gmtoff=(%-?%d+)")
    if not off then
      local out = sh(string.format("TZ=%q date -d @1900000000 +%%z", name))
      local sign, oh, om = out:match("([+-])(%d%d)(%d%d)")
      off = (sign == "-" and -1 or 1) * (tonumber(oh) * 3600 + tonumber(om) * 60)
    end
    return t.ok(n == 0 and z:offset(1900000000) == tonumber(off), name .. ": no transitions in " .. from .. ".." .. to .. ", offset " .. tostring(off))
  end
  t.ok(n > 0 and #bad == 0, string.format("%s: %d zdump instants %d..%d match", name, n, from, to))
  for i = 1, math.min(#bad, 5) do t.diag(bad[i]) end
  return n
end

-- Calendar fields from glibc for instants spread over 1970..2040 (a prime step, so every
-- time of day and weekday comes up), plus the instants around each listed transition.
local function date_check(name, z, extra)
  local ts = {}
  for at = 0, utc(2040, 12, 31), 86400 * 13 + 3607 do ts[#ts + 1] = at end
  for _, at in ipairs(extra or {}) do ts[#ts + 1] = at end
  local f = os.tmpname()
  local fh = assert(io.open(f, "w"))
  for _, at in ipairs(ts) do fh:write("@", at, "\n") end
  fh:close()
  local out = sh(string.format("TZ=%q date -f %s '+%%Y %%m %%d %%H %%M %%S %%w %%j %%z %%Z'", name, f))
  os.remove(f)
  local i, bad = 0, {}
  for line in out:gmatch("[^\n]+") do
    i = i + 1
    local l = z:to_local(ts[i])
    local sign, oh, om = line:match(" ([+-])(%d%d)(%d%d) %S+$")
    local off = (sign == "-" and -1 or 1) * (tonumber(oh) * 3600 + tonumber(om) * 60)
    local mine = string.format("%04d %02d %02d %02d %02d %02d %d %03d", l.year, l.month, l.day, l.hour,
      l.min, l.sec, l.wday, l.yday)
    if line:sub(1, #mine) ~= mine or l.offset ~= off or line:sub(-#l.abbr - 1) ~= " " .. l.abbr then
      bad[#bad + 1] = ts[i] .. ": got " .. mine .. " " .. l.offset .. " " .. l.abbr .. ", date " .. line
    end
    -- Round trip: a local time maps back to the instant, or to the earlier one in an overlap.
    local back = z:from_local(l)
    if back ~= ts[i] and not (back < ts[i] and select(1, z:offset(back)) ~= l.offset) then
      bad[#bad + 1] = ts[i] .. ": from_local gives " .. back
    end
  end
  t.ok(i == #ts and #bad == 0, string.format("%s: to_local and from_local agree with date for %d instants", name, #ts))
  for k = 1, math.min(#bad, 5) do t.diag(bad[k]) end
end

local ZONES = { "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
  "America/Sao_Paulo", "Pacific/Apia", "Africa/Casablanca", "Asia/Jerusalem", "America/Nuuk",
  "Europe/Dublin", "Etc/GMT+5" }
for _, name in ipairs(ZONES) do
  zdump_check(name, 1970, 2041, name == "Asia/Kolkata" or name == "Etc/GMT+5")
  local z = assert(tz.load(name))
  local extra = {}
  for k, at in ipairs(z.trans) do
    if at > 0 and at < utc(2041, 1, 1) and k % 2 == 0 then
      extra[#extra + 1] = at - 1; extra[#extra + 1] = at; extra[#extra + 1] = at + 1799
    end
  end
  date_check(name, z, extra)
end
-- Past the last transition of the file (2037 in fat files) the footer's rule answers.
zdump_check("Europe/Berlin", 2037, 2100)
zdump_check("Australia/Lord_Howe", 2037, 2100)
zdump_check("Asia/Jerusalem", 2037, 2100)

-- POSIX TZ strings alone, against glibc reading the same string from TZ: every rule form
-- (Mm.w.d, Jn, zero-based n), transition times negative and beyond 24 hours, half-hour
-- offsets, DST all year, the southern hemisphere.
local POSIX = {
  "CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT,M3.2.0,M11.1.0", "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
  "IST-2IDT,M3.4.4/26,M10.5.0", "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", "XXX3YYY,J60/2,J300/2",
  "XXX3YYY,59/2,299/2", "AAA3BBB,M3.2.0/-30,M10.1.0/100",
  "NZST-12NZDT,M9.5.0,M4.1.0/3", "IST-5:30", "<-0330>3:30<-0230>,M3.2.0,M11.1.0",
}
for _, s in ipairs(POSIX) do
  local z = assert(tz.posix(s))
  local ts = {}
  local a, b = utc(2023, 1, 1), utc(2031, 1, 1)
  for at = a, b, 86400 * 3 + 3600 * 5 + 17 do ts[#ts + 1] = at end
  for _, tt in ipairs(tz._posix_transitions(z, a, b)) do ts[#ts + 1] = tt - 1; ts[#ts + 1] = tt end
  local f = os.tmpname()
  local fh = assert(io.open(f, "w"))
  for _, at in ipairs(ts) do fh:write("@", at, "\n") end
  fh:close()
  local out = sh(string.format("TZ=%q date -f %s '+%%z'", s, f))
  os.remove(f)
  local i, bad = 0, 0
  for line in out:gmatch("[^\n]+") do
    i = i + 1
    local sign, oh, om = line:match("([+-])(%d%d)(%d%d)")
    local off = (sign == "-" and -1 or 1) * (tonumber(oh) * 3600 + tonumber(om) * 60)
    if z:offset(ts[i]) ~= off then
      bad = bad + 1
      if bad <= 3 then t.diag(string.format("%s at %d: got %d, glibc %d", s, ts[i], z:offset(ts[i]), off)) end
    end
  end
  t.ok(i == #ts and bad == 0, string.format("TZ=%s: %d instants (incl. each transition) match glibc", s, #ts))
end
-- DST all year (RFC 8536 section 3.3.1): glibc decides the hours around the new year by its
-- own reading, so this one is checked by hand.
local allyear = assert(tz.posix("EST5EDT,0/0,J365/25"))
local dst_all = true
for at = utc(2023, 12, 30), utc(2025, 1, 2), 1800 do
  if allyear:offset(at) ~= -14400 then dst_all = false end
end
t.ok(dst_all, "EST5EDT,0/0,J365/25 is DST all year, across the new year")
t.is(select(2, tz.posix("CET-1CEST,M13.5.0,M10.5.0")), 'invalid POSIX TZ string "CET-1CEST,M13.5.0,M10.5.0"',
  "a bad rule is refused")

-- from_local: gaps give the first instant after the gap, overlaps the earlier instant.
local berlin, ny = assert(tz.load("Europe/Berlin")), assert(tz.load("America/New_York"))
local lhi, apia = assert(tz.load("Australia/Lord_Howe")), assert(tz.load("Pacific/Apia"))
t.is(berlin:from_local{ year = 2026, month = 3, day = 29, hour = 2, min = 30 }, utc(2026, 3, 29, 1),
  "Berlin 02:30 on the spring-forward day does not exist: 03:00 CEST")
t.is(berlin:from_local{ year = 2026, month = 3, day = 29, hour = 3 }, utc(2026, 3, 29, 1), "03:00 CEST itself")
t.is(berlin:from_local{ year = 2026, month = 10, day = 25, hour = 2, min = 30 }, utc(2026, 10, 25, 0, 30),
  "Berlin 02:30 on the fall-back day happens twice: the earlier (CEST)")
t.is(berlin:from_wall(utc(2026, 10, 25, 2, 30), true), utc(2026, 10, 25, 1, 30), "from_wall(L, true): the later (CET)")
t.is(berlin:from_wall(utc(2026, 3, 29, 2, 30), true), utc(2026, 3, 29, 1), "in a gap `later` changes nothing")
t.is(berlin:from_local{ year = 2026, month = 10, day = 25, hour = 3 }, utc(2026, 10, 25, 2), "03:00 CET after the overlap")
t.is(ny:from_local{ year = 2026, month = 3, day = 8, hour = 2, min = 15 }, utc(2026, 3, 8, 7),
  "New York 02:15 on March 8 2026 is in the gap: 03:00 EDT")
t.is(ny:from_local{ year = 2026, month = 11, day = 1, hour = 1, min = 30 }, utc(2026, 11, 1, 5, 30),
  "New York 01:30 on November 1 2026: the earlier, EDT")
t.is(lhi:from_local{ year = 2026, month = 10, day = 4, hour = 2, min = 15 }, utc(2026, 10, 3, 15, 30),
  "Lord Howe's half-hour gap (02:00-02:30): 02:30 +11")
t.is(lhi:from_local{ year = 2026, month = 4, day = 5, hour = 1, min = 45 }, utc(2026, 4, 4, 14, 45),
  "Lord Howe's half-hour overlap: the earlier (+11)")
t.is(apia:from_local{ year = 2011, month = 12, day = 30, hour = 12 }, utc(2011, 12, 30, 10),
  "Apia skipped December 30 2011: the first instant after is December 31 00:00 +14")
t.is(berlin:from_local{ year = 2026, month = 13, day = 32, hour = 25 }, utc(2027, 2, 2, 0),
  "fields overflow as with os.time (month 13, day 32, hour 25)")
local l = ny:to_local(utc(2026, 11, 1, 6, 30))
t.is_deeply({ l.year, l.month, l.day, l.hour, l.min, l.sec, l.wday, l.yday, l.abbr, l.isdst },
  { 2026, 11, 1, 1, 30, 0, 0, 305, "EST", false }, "to_local fields (wday 0 = Sunday, yday from 1)")

t.is_deeply(berlin:transitions(utc(2026, 1, 1), utc(2027, 1, 1)), { utc(2026, 3, 29, 1), utc(2026, 10, 25, 1) },
  "transitions() from the file's table")
t.is_deeply(berlin:transitions(utc(2050, 1, 1), utc(2051, 1, 1)), { utc(2050, 3, 27, 1), utc(2050, 10, 30, 1) },
  "transitions() past the table, from the footer's rule")
t.is_deeply(assert(tz.load("Asia/Kolkata")):transitions(utc(2000, 1, 1), utc(2051, 1, 1)), {}, "no transitions in Kolkata")

-- Fixed offsets, UTC, Etc.
t.is(assert(tz.load("+02:00")):offset(0), 7200, "+02:00")
t.is(assert(tz.load("-0530")):offset(0), -19800, "-0530")
t.is(assert(tz.load("+14")):offset(0), 50400, "+14")
t.is(assert(tz.load("UTC")):offset(1e9), 0, "UTC")
t.is(assert(tz.load("Etc/GMT+5")):offset(1e9), -18000, "Etc/GMT+5 is five hours west (POSIX sign)")
t.is(assert(tz.load("-03:00")):from_local{ year = 2026, month = 1, day = 1 }, utc(2026, 1, 1, 3), "from_local at a fixed offset")

-- Errors and the cache.
t.is(select(2, tz.load("Mars/Olympus_Mons")), 'unknown time zone "Mars/Olympus_Mons"', "unknown zone")
t.is(select(2, tz.load("America")), 'unknown time zone "America"', "a directory is not a zone")
t.is(select(2, tz.load("../../etc/passwd")), 'invalid time zone name "../../etc/passwd"', "no .. components")
t.is(select(2, tz.load("/etc/localtime")), 'invalid time zone name "/etc/localtime"', "no absolute paths")
t.is(select(2, tz.load("+25:00")), 'invalid time zone name "+25:00"', "an offset out of range")
t.like(select(2, tz.load("zone.tab")), "^time zone \"zone.tab\": not a TZif file", "a file that is not TZif")
t.raises(function() tz.load(42) end, "tz.load: name: string expected, got number", "a name must be a string")
t.raises(function() berlin:offset("now") end, "number", "offset needs a number")
t.ok(tz.load("Europe/Berlin") == berlin, "zones are cached per name")

-- Loading works outside a task too (a plain coroutine cannot suspend: io fallback) and in one.
local io0, fs0 = tz.reads.io, tz.reads.fs
local co = coroutine.wrap(function() return tz.load("Asia/Tokyo") end)
local tokyo = co()
t.is(tokyo and tokyo:offset(0), 32400, "loaded in a plain coroutine")
t.ok(tz.reads.io == io0 + 1 and tz.reads.fs == fs0, "there, by a synchronous read (no task to suspend)")
local h = task.spawn(function() return tz.load("Europe/Lisbon") end)
local ok, lisbon = h:join()
t.is(ok and lisbon and lisbon:offset(utc(2026, 7, 1)), 3600, "loaded in a task")
t.ok(tz.reads.fs == fs0 + 1 and tz.reads.io == io0 + 1, "there, through steward.fs")
tz.load("Asia/Tokyo"); tz.load("Europe/Lisbon")
t.ok(tz.reads.fs == fs0 + 1 and tz.reads.io == io0 + 1, "loaded zones are not read again")
t.done()
