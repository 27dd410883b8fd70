-- steward.alerting.timeintervals: Alertmanager's time_intervals fields, in UTC, at fixed offsets
-- and in IANA time zones.
local t = require "steward.tap"
local ti = require "steward.alerting.timeintervals"
local route = require "steward.alerting.route"

local function at(y, mo, d, h, mi) -- UTC instant, without the local zone getting involved
  local function leap(yy) return (yy % 4 == 0 and yy % 100 ~= 0) or yy % 400 == 0 end
  local days = 0
  for yy = 1970, y - 1 do days = days + (leap(yy) and 366 or 365) end
  local mdays = { 31, leap(y) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  for m = 1, mo - 1 do days = days + mdays[m] end
  return ((days + d - 1) * 24 + (h or 0)) * 3600 + (mi or 0) * 60
end
t.is(at(2024, 3, 1, 12, 0), 1709294400, "the test's own clock")

-- The docs' example: business hours, Monday to Friday.
local office = assert(ti.new{ weekdays = { "monday:friday" }, times = { { start_time = "09:00", end_time = "17:00" } } })
t.ok(office:contains(at(2024, 3, 1, 9, 0)), "Friday 09:00 is inside (start inclusive)")
t.ok(not office:contains(at(2024, 3, 1, 17, 0)), "17:00 is outside (end exclusive)")
t.ok(office:contains(at(2024, 3, 1, 16, 59)), "16:59 inside")
t.ok(not office:contains(at(2024, 3, 2, 12, 0)), "Saturday is outside")
t.ok(office:contains(at(2024, 3, 4, 12, 0)), "Monday inside")

-- days_of_month with negatives: the last three days of the month.
local month_end = assert(ti.new{ days_of_month = { "-3:-1" } })
t.ok(month_end:contains(at(2024, 2, 27, 0, 0)), "Feb 27 of a leap year is third-last")
t.ok(not month_end:contains(at(2024, 2, 26, 23, 59)), "Feb 26 is not")
t.ok(month_end:contains(at(2023, 2, 26, 0, 0)), "Feb 26 of a common year is")
t.ok(month_end:contains(at(2024, 1, 31, 0, 0)), "Jan 31")
local first_to_last = assert(ti.new{ days_of_month = { "1:-1" } })
t.ok(first_to_last:contains(at(2024, 4, 30, 0, 0)), "1:-1 is the whole month")
local d31 = assert(ti.new{ days_of_month = { "31" } })
t.ok(not d31:contains(at(2024, 4, 30, 0, 0)), "day 31 does not wrap into a 30-day month's end")
local d7 = assert(ti.new{ days_of_month = { "7:31" } })
t.ok(d7:contains(at(2024, 4, 30, 0, 0)), "an end past the month's end is clamped")

-- months, years, combinations.
local winter = assert(ti.new{ months = { "december", "january:february" }, years = { "2023:2024" } })
t.ok(winter:contains(at(2024, 1, 15)), "January 2024")
t.ok(winter:contains(at(2023, 12, 1)), "December 2023")
t.ok(not winter:contains(at(2025, 1, 15)), "2025 is outside the years")
t.ok(not winter:contains(at(2024, 3, 1)), "March is outside the months")
t.ok(assert(ti.new{ months = { "3" } }):contains(at(2024, 3, 9)), "months by number")
t.ok(assert(ti.new{ weekdays = { "Saturday", "SUNDAY" } }):contains(at(2024, 3, 3, 5)), "names are case-insensitive")
t.ok(assert(ti.new{ times = { { start_time = "00:00", end_time = "24:00" } } }):contains(at(2024, 3, 3, 23, 59)),
  "24:00 is the end of the day")

-- Locations: fixed offsets.
local tokyo = assert(ti.new{ times = { { start_time = "09:00", end_time = "10:00" } }, location = "+09:00" })
t.ok(tokyo:contains(at(2024, 3, 1, 0, 30)), "00:30 UTC is 09:30 at +09:00")
t.ok(not tokyo:contains(at(2024, 3, 1, 9, 30)), "09:30 UTC is not")
t.ok(assert(ti.new{ times = { { start_time = "09:00", end_time = "10:00" } }, location = -3600 }):contains(at(2024, 3, 1, 10, 30)),
  "location in seconds east of UTC (-3600: 10:30 UTC is 09:30)")

-- Locations: IANA zones. Wall-clock times follow the zone's DST.
local berlin = assert(ti.new{ weekdays = { "monday:friday" }, times = { { start_time = "09:00", end_time = "17:00" } },
                              location = "Europe/Berlin" })
t.ok(berlin:contains(at(2024, 1, 15, 8, 0)), "Berlin in winter (CET): 08:00 UTC is 09:00, inside")
t.ok(not berlin:contains(at(2024, 1, 15, 7, 59)), "07:59 UTC in winter is 08:59, outside")
t.ok(berlin:contains(at(2024, 7, 15, 7, 0)), "Berlin in summer (CEST): 07:00 UTC is 09:00, inside")
t.ok(not berlin:contains(at(2024, 7, 15, 15, 0)), "15:00 UTC in summer is 17:00, outside")
t.ok(berlin:contains(at(2024, 7, 15, 14, 59)), "14:59 UTC in summer is 16:59, inside")
t.ok(berlin:contains(at(2024, 3, 29, 12, 0)), "Friday March 29 2024 midday is inside")
t.ok(berlin:contains(at(2024, 4, 1, 7, 0)), "the Monday after the DST change: 09:00 CEST")
local ny = assert(ti.new{ weekdays = { "friday" }, location = "America/New_York" })
t.ok(ny:contains(at(2024, 3, 9, 4, 30)), "Saturday 04:30 UTC is still Friday 23:30 in New York (weekdays in local time)")
t.ok(not ny:contains(at(2024, 3, 9, 5, 0)), "Saturday 05:00 UTC is Saturday 00:00 in New York")
local nz_month_end = assert(ti.new{ days_of_month = { "-1" }, months = { "december" }, years = { "2024" },
                                    location = "Pacific/Auckland" })
t.ok(nz_month_end:contains(at(2024, 12, 30, 11, 0)), "December 30 11:00 UTC is December 31 00:00 in Auckland (+13)")
t.ok(not nz_month_end:contains(at(2024, 12, 31, 11, 0)), "December 31 11:00 UTC is already 2025 in Auckland")
local gap = assert(ti.new{ times = { { start_time = "02:00", end_time = "03:00" } }, location = "Europe/Berlin" })
t.ok(not gap:contains(at(2024, 3, 31, 1, 0)) and not gap:contains(at(2024, 3, 31, 0, 59)) and
  gap:contains(at(2024, 3, 30, 1, 30)), "the hour skipped in spring contains no instant that day")
t.ok(gap:contains(at(2024, 10, 27, 0, 30)) and gap:contains(at(2024, 10, 27, 1, 30)),
  "the hour repeated in autumn is inside both times")
-- edges(): where contains() may change, for timelines (on-call schedules).
local e = berlin:edges(at(2024, 3, 30, 12), at(2024, 4, 1, 12))
t.is_deeply(e, { at(2024, 3, 30, 16), at(2024, 3, 30, 23), at(2024, 3, 31, 1), at(2024, 3, 31, 7), at(2024, 3, 31, 15), at(2024, 3, 31, 22),
  at(2024, 4, 1, 7) }, "edges: midnights, 09:00 and 17:00 local, and the DST change")
local v, err = ti.new{ location = "Europe/Atlantis" }
t.is(err, 'location: unknown time zone "Europe/Atlantis"', "an unknown zone is an error: " .. tostring(v))
t.is(select(2, ti.new{ location = "../etc/passwd" }), 'location: invalid time zone name "../etc/passwd"', "paths are refused")
t.is(select(2, ti.new{ location = 1e6 }), "location: 1000000 seconds is not an offset (an integer under a day)", "offset out of range")
t.raises(function() ti.new{ location = true } end, "location: string or number expected", "a wrong location type raises")
local set_err = select(2, ti.set{ night = { { location = "Nowhere/Special" } } })
t.is(set_err, 'time_intervals.night[1]: location: unknown time zone "Nowhere/Special"', "set errors name the interval")

-- Errors.
local function fails(spec, pat)
  local iv, e = ti.new(spec)
  t.ok(iv == nil and e and e:find(pat, 1, true), pat .. ": " .. tostring(e))
end
fails({ times = { { start_time = "17:00", end_time = "09:00" } } }, "start time cannot be equal or greater than end time")
fails({ times = { { start_time = "25:00", end_time = "26:00" } } }, "invalid time of day")
fails({ weekdays = { "friday:monday" } }, "start day cannot be after end day")
fails({ weekdays = { "funday" } }, "invalid range")
fails({ days_of_month = { "0" } }, "is not a day of the month")
fails({ days_of_month = { "10:2" } }, "start day cannot be after end day")
fails({ months = { "13" } }, "invalid month range")
t.raises(function() ti.new{ weekday = {} } end, "unknown field weekday", "unknown field raises")

-- Named intervals and routes.
local set = assert(ti.set{ offhours = { { times = { { start_time = "17:00", end_time = "24:00" } } },
                                        { times = { { start_time = "00:00", end_time = "09:00" } } } },
                           office = { { weekdays = { "monday:friday" }, times = { { start_time = "09:00", end_time = "17:00" } } } } })
t.ok(set:active("offhours", at(2024, 3, 1, 20)), "a name is active when any of its intervals is")
t.ok(not set:active("offhours", at(2024, 3, 1, 12)), "and inactive otherwise")
t.is(select(2, set:active("nope", 0)), "time interval nope does not exist", "unknown name")
local tree = assert(route.new{ receiver = "r", routes = {
  { matchers = 'a="1"', mute_time_intervals = { "offhours" } },
  { matchers = 'a="2"', active_time_intervals = { "office" } } } })
t.ok(set:muted(tree.routes[1], at(2024, 3, 1, 20)), "muted during a mute interval")
t.ok(not set:muted(tree.routes[1], at(2024, 3, 1, 12)), "not outside it")
t.ok(set:muted(tree.routes[2], at(2024, 3, 2, 12)), "muted outside its active intervals")
t.ok(not set:muted(tree.routes[2], at(2024, 3, 1, 12)), "not inside them")
t.ok(not set:muted(tree, at(2024, 3, 2, 12)), "a route without intervals is never muted")
t.done()
