-- steward.alerting.timeintervals: Alertmanager's time_intervals fields (UTC and fixed offsets).
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
local v, err = ti.new{ location = "Europe/Berlin" }
t.ok(v == nil and err:find("not supported", 1, true), "IANA names are refused, not guessed: " .. tostring(err))

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
