-- time.localtime / time.format / time.zone: local time in named zones, checked against the
-- system's zdump (tzdata) at every transition of a few zones, and against values zdump printed.
local t = require "steward.tap"
local time = require "steward.time"
local tz = require "steward.alerting.tz"

-- Values zdump -v printed for Europe/Paris in 2026 (DST starts 01:00 UT on March 29).
local lt = time.localtime(1774745999, "Europe/Paris")
t.is_deeply({ lt.year, lt.month, lt.day, lt.hour, lt.min, lt.sec, lt.abbr, lt.isdst, lt.offset },
  { 2026, 3, 29, 1, 59, 59, "CET", false, 3600 }, "one second before DST: 01:59:59 CET")
lt = time.localtime(1774746000, "Europe/Paris")
t.is_deeply({ lt.hour, lt.min, lt.abbr, lt.isdst, lt.offset, lt.wday, lt.yday, lt.zone },
  { 3, 0, "CEST", true, 7200, 1, 88, "Europe/Paris" }, "at the change: 03:00 CEST, a Sunday (wday 1, as os.date)")
t.is(time.format(1774746000, nil, "Europe/Paris"), "2026-03-29T03:00:00+02:00", "format defaults to RFC 3339 with the offset")
t.is(time.format(1774746000, "%d.%m.%Y %H:%M %Z (%z) 100%%", "Europe/Paris"), "29.03.2026 03:00 CEST (+0200) 100%",
  "%Z, %z and %% in a format")
t.is(time.format(1774746000.75), "2026-03-29T01:00:00+00:00", "UTC by default; fractions of a second dropped")
t.is(time.format(0, "%H:%M %:z", "-05:30"), "18:30 -05:30", "a fixed offset is a zone")
local nope, err = time.localtime(0, "Mars/Olympus")
t.ok(nope == nil and err:find("unknown time zone", 1, true), "an unknown zone: nil, err naming it")
t.is(select(2, time.format(0, nil, "Mars/Olympus")), 'unknown time zone "Mars/Olympus"', "format with an unknown zone: nil, err")
t.raises(function() time.localtime("now", "UTC") end, "time.localtime: t:", "t must be a number")
t.raises(function() time.format(0, 5) end, "time.format: fmt:", "fmt must be a string")
t.raises(function() time.format(0, "*t") end, "use time.localtime", "*t points at localtime")
t.raises(function() time.localtime(0, 2) end, "time.localtime: zone:", "zone must be a name")
t.is(time.zone("Europe/Paris"), tz.load("Europe/Paris"), "time.zone is the tz database's zone (shared with alerting)")
t.is(time.zone("Europe/Paris"):to_local(1774746000).hour, 3, "steward.alerting.tz keeps working")

-- Every transition zdump reports in 2025-2027, and the second before it.
local MON = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local zones = { "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo" }
local p = assert(io.popen("zdump -v -c 2025,2028 " .. table.concat(zones, " ") .. " 2>/dev/null"))
local checked, bad = 0, {}
for line in p:lines() do
  local zone, mon, d, h, mi, s, y, lmon, ld, lh, lmi, ls, ly, abbr, isdst, off = line:match(
    "^(%S+)%s+%a+ (%a+)%s+(%d+) (%d+):(%d+):(%d+) (%d+) UT = %a+ (%a+)%s+(%d+) (%d+):(%d+):(%d+) (%d+) (%S+) isdst=(%d) gmtoff=(%-?%d+)")
  if zone then
    local ut = tz.days_from_civil(tonumber(y), MON[mon], tonumber(d)) * 86400 + h * 3600 + mi * 60 + s
    local got = time.localtime(ut, zone)
    local want = { tonumber(ly), MON[lmon], tonumber(ld), tonumber(lh), tonumber(lmi), tonumber(ls), abbr, isdst == "1", tonumber(off) }
    local have = { got.year, got.month, got.day, got.hour, got.min, got.sec, got.abbr, got.isdst, got.offset }
    for i = 1, #want do
      if want[i] ~= have[i] then bad[#bad + 1] = line; break end
    end
    local text = time.format(ut, "%b %e %H:%M:%S %Y %Z", zone)
    if text ~= ("%s %2d %s:%s:%s %s %s"):format(lmon, ld, lh, lmi, ls, ly, abbr) then bad[#bad + 1] = line .. " / " .. text end
    checked = checked + 1
  end
end
p:close()
t.ok(checked >= 20, "zdump listed the transitions (" .. checked .. " lines)")
t.is(#bad, 0, "localtime and format agree with zdump at every transition" .. (bad[1] and (": " .. bad[1]) or ""))
t.done()
