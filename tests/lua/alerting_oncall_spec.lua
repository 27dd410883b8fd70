-- steward.alerting.oncall: rotations (handoffs on the local clock across DST), layers and
-- restrictions, overrides, gaps, the flattened schedule, next handoff, validation.
local t = require "steward.tap"
local oncall = require "steward.alerting.oncall"
local tz = require "steward.alerting.tz"

local function utc(y, mo, d, h, mi)
  return tz.days_from_civil(y, mo, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60
end
local function who(s, at) return table.concat(s:on_call(at), ",") end

-- Weekly rotation in Berlin, Monday 09:00, across both DST changes of 2026 (March 29,
-- October 25): the handoff stays at 09:00 local, so it moves from 08:00 UTC to 07:00 UTC and
-- back.
local berlin = assert(oncall.schedule({ time_zone = "Europe/Berlin", layers = {
  { name = "primary", users = { "ana", "bo", "cy" }, start = "2026-03-02T09:00:00", rotation = "weekly" } } }, "db"))
t.is(who(berlin, utc(2026, 3, 2, 7, 59)), "", "nobody before the layer starts")
t.is(who(berlin, utc(2026, 3, 2, 8, 0)), "ana", "ana from Monday March 2 09:00 CET")
t.is(who(berlin, utc(2026, 3, 9, 7, 59)), "ana", "ana until 08:59 CET a week later")
t.is(who(berlin, utc(2026, 3, 9, 8, 0)), "bo", "bo from March 9 09:00 CET")
t.is(who(berlin, utc(2026, 3, 23, 8, 0)), "ana", "ana again on March 23 (three users)")
t.is(who(berlin, utc(2026, 3, 30, 6, 59)), "ana", "March 30 06:59 UTC is 08:59 CEST: still ana")
t.is(who(berlin, utc(2026, 3, 30, 7, 0)), "bo", "March 30 07:00 UTC is 09:00 CEST: bo (DST did not move the handoff)")
-- 34 weeks from March 2 to October 26: index 34 is bo's.
t.is(who(berlin, utc(2026, 10, 26, 7, 0)), "ana", "October 26 07:00 UTC is 08:00 CET: still ana")
t.is(who(berlin, utc(2026, 10, 26, 8, 0)), "bo", "October 26 08:00 UTC is 09:00 CET: bo")
local at, next_users = berlin:next_handoff(utc(2026, 3, 25))
t.is(at, utc(2026, 3, 30, 7, 0), "next_handoff across the spring change")
t.is_deeply(next_users, { "bo" }, "and who takes over")
t.is(berlin:next_handoff(utc(2026, 1, 1)), utc(2026, 3, 2, 8), "next_handoff before the start: the start")
local wk = berlin:shifts(utc(2026, 3, 20), utc(2026, 4, 10))
t.is_deeply(wk, {
  { user = "cy", users = { "cy" }, starts_at = utc(2026, 3, 20), ends_at = utc(2026, 3, 23, 8), layer = "primary" },
  { user = "ana", users = { "ana" }, starts_at = utc(2026, 3, 23, 8), ends_at = utc(2026, 3, 30, 7), layer = "primary" },
  { user = "bo", users = { "bo" }, starts_at = utc(2026, 3, 30, 7), ends_at = utc(2026, 4, 6, 7), layer = "primary" },
  { user = "cy", users = { "cy" }, starts_at = utc(2026, 4, 6, 7), ends_at = utc(2026, 4, 10), layer = "primary" },
}, "shifts: clipped to the range; the DST week is an hour shorter")

-- New York: a daily rotation with a 09:00 handoff that starts at midnight (the first shift
-- runs to the first handoff), across March 8 and November 1 2026.
local ny = assert(oncall.schedule{ time_zone = "America/New_York", layers = {
  { users = { "ana", "bo" }, start = "2026-03-05", rotation = "daily", handoff = "09:00" } } })
t.is(who(ny, utc(2026, 3, 5, 5)), "ana", "ana from midnight EST")
t.is(who(ny, utc(2026, 3, 5, 13, 59)), "ana", "to 08:59 EST")
t.is(who(ny, utc(2026, 3, 5, 14)), "bo", "bo from the first 09:00 handoff")
t.is(who(ny, utc(2026, 3, 7, 14)), "bo", "March 7 09:00 EST (14:00 UTC): bo")
t.is(who(ny, utc(2026, 3, 8, 12, 59)), "bo", "March 8 08:59 EDT: bo")
t.is(who(ny, utc(2026, 3, 8, 13)), "ana", "March 8 09:00 EDT (13:00 UTC): ana")
t.is(select(1, ny:next_handoff(utc(2026, 10, 31, 20))), utc(2026, 11, 1, 14), "November 1 09:00 EST is 14:00 UTC")
-- A weekly rotation whose start is an RFC 3339 instant.
local ny2 = assert(oncall.schedule{ time_zone = "America/New_York", layers = {
  { users = { "ana", "bo" }, start = "2026-10-26T09:00:00-04:00", rotation = "1w" } } })
t.is(who(ny2, utc(2026, 11, 2, 13, 59)), "ana", "November 2 08:59 EST: ana")
t.is(who(ny2, utc(2026, 11, 2, 14)), "bo", "November 2 09:00 EST: bo (the handoff followed the clock)")

-- 12-hour shifts with a 09:00 handoff: 09:00 and 21:00 local on both sides of the change.
local twelve = assert(oncall.schedule{ time_zone = "Europe/Berlin", layers = {
  { users = { "day", "night" }, start = "2026-03-27T09:00:00", rotation = "12h" } } })
local hs = {}
local from = utc(2026, 3, 27, 12)
for _ = 1, 6 do
  local h = twelve:next_handoff(from)
  local l = tz.load("Europe/Berlin"):to_local(h)
  hs[#hs + 1] = string.format("%02d:%02d %s %s", l.hour, l.min, l.abbr, who(twelve, h))
  from = h
end
t.is_deeply(hs, { "21:00 CET night", "09:00 CET day", "21:00 CET night", "09:00 CEST day", "21:00 CEST night",
  "09:00 CEST day" }, "12h shifts hand off at 09:00 and 21:00 local across the change")
-- A handoff in the skipped hour happens at the end of the gap.
local gap = assert(oncall.schedule{ time_zone = "Europe/Berlin", layers = {
  { users = { "a", "b" }, start = "2026-03-27T02:30:00", rotation = "daily" } } })
t.is(select(1, gap:next_handoff(utc(2026, 3, 28, 12))), utc(2026, 3, 29, 1), "02:30 on March 29 does not exist: 03:00 CEST")
t.is(select(1, gap:next_handoff(utc(2026, 3, 29, 12))), utc(2026, 3, 30, 0, 30), "and 02:30 CEST the day after")

-- Layers: business hours (restricted) over a 24/7 weekly rotation; overrides over both.
local spec = { time_zone = "Europe/Berlin",
  layers = {
    { name = "24x7", users = { "ana", "bo" }, start = "2026-01-05T09:00:00", rotation = "weekly" },
    { name = "business", users = { "cy", "dan" }, start = "2026-01-05T00:00:00", rotation = "weekly", handoff = "09:00",
      restrictions = { { weekdays = { "monday:friday" }, times = { { start_time = "09:00", end_time = "17:00" } } } } },
  },
  overrides = { { user = "eve", starts_at = "2026-01-14T12:00:00", ends_at = "2026-01-14T14:00:00" },
                { user = "fay", starts_at = "2026-01-17T00:00:00Z", ends_at = "2026-01-17T06:00:00+01:00" } },
}
local s = assert(oncall.schedule(spec, "web"))
-- The business layer starts at midnight with a 09:00 handoff: cy's first shift runs to the
-- first handoff (Monday 09:00, as PagerDuty does it), then dan has the week.
t.is(who(s, utc(2026, 1, 7, 9)), "dan", "Wednesday 10:00 CET: the business-hours layer (later layer wins)")
t.is(who(s, utc(2026, 1, 7, 17)), "ana", "Wednesday 18:00: outside the restriction, the 24/7 layer")
t.is(who(s, utc(2026, 1, 10, 9)), "ana", "Saturday 10:00: the 24/7 layer")
t.is(who(s, utc(2026, 1, 12, 9)), "cy", "the next week's business hours: cy")
t.is(who(s, utc(2026, 1, 12, 7)), "ana", "Monday 08:00 CET: before both handoffs and the business hours, ana's week")
t.is(who(s, utc(2026, 1, 14, 11)), "eve", "an override beats both layers")
t.is(who(s, utc(2026, 1, 14, 13)), "cy", "and ends at its end")
t.is(who(s, utc(2026, 1, 17, 2)), "fay", "an override given in UTC and with an offset")
t.is(who(s, utc(2026, 1, 17, 5)), "bo", "ends at 06:00+01:00")
local day = s:shifts(utc(2026, 1, 14), utc(2026, 1, 15))
local flat = {}
for _, sh in ipairs(day) do
  flat[#flat + 1] = string.format("%s %s-%s %s", sh.user, os.date("!%H:%M", sh.starts_at), os.date("!%H:%M", sh.ends_at), sh.layer)
end
t.is_deeply(flat, { "bo 00:00-08:00 24x7", "cy 08:00-11:00 business", "eve 11:00-13:00 override",
  "cy 13:00-16:00 business", "bo 16:00-00:00 24x7" }, "shifts: the final schedule of a Wednesday (UTC)")

-- Merging: the same user in adjacent parts is one shift.
local merged = assert(oncall.schedule{ time_zone = "Europe/Berlin", layers = {
  { users = { "ana" }, start = "2026-01-01", rotation = "daily" },
  { users = { "ana" }, start = "2026-01-01", rotation = "daily",
    restrictions = { { times = { { start_time = "09:00", end_time = "17:00" } } } } } } })
local m = merged:shifts(utc(2026, 1, 5), utc(2026, 1, 8))
t.is(#m, 1, "adjacent shifts of the same user are merged (layers, days)")
t.is(m[1] and m[1].ends_at, utc(2026, 1, 8), "over the whole range")
t.is(merged:next_handoff(utc(2026, 1, 5)), nil, "next_handoff: nil when nothing changes")

-- Gaps: a schedule with only a restricted layer has nobody on call outside it.
local nights = assert(oncall.schedule{ time_zone = "America/New_York", layers = {
  { users = { "owl" }, start = "2026-01-01", rotation = "weekly",
    restrictions = { { times = { { start_time = "22:00", end_time = "24:00" } } },
                     { times = { { start_time = "00:00", end_time = "06:00" } } } } } } })
t.is_deeply(nights:on_call(utc(2026, 1, 6, 18)), {}, "13:00 in New York: nobody ({})")
t.is(who(nights, utc(2026, 1, 6, 4)), "owl", "23:00 in New York: owl")
local n = nights:shifts(utc(2026, 1, 6, 12), utc(2026, 1, 8, 12))
t.is(#n, 2, "two night shifts in two days (gaps left out)")
t.is(n[1] and n[1].starts_at, utc(2026, 1, 7, 3), "22:00 EST is 03:00 UTC")
t.is(n[1] and n[1].ends_at, utc(2026, 1, 7, 11), "and the two windows join across midnight: until 06:00 EST")
local nat, nusers = nights:next_handoff(utc(2026, 1, 7, 5))
t.ok(nat == utc(2026, 1, 7, 11) and #nusers == 0, "next_handoff into a gap: nobody")

-- A restriction in the hour repeated in autumn: 00:00-02:30 in Berlin on October 25 2026
-- holds from 00:00 to 02:30 CEST and again from 02:00 to 02:30 CET.
local early = assert(oncall.schedule{ time_zone = "Europe/Berlin", layers = {
  { users = { "lark" }, start = "2026-10-01", rotation = "weekly",
    restrictions = { { times = { { start_time = "00:00", end_time = "02:30" } } } } } } })
local e = early:shifts(utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
t.is_deeply({ #e, e[1] and e[1].starts_at, e[1] and e[1].ends_at, e[2] and e[2].starts_at, e[2] and e[2].ends_at },
  { 2, utc(2026, 10, 24, 22), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30) },
  "a window in the repeated hour is covered twice")

-- Groups on call together; on_call hands out a copy.
local grp = assert(oncall.schedule{ layers = { { users = { { "ana", "bo" }, "cy" }, start = "2026-01-01T00:00:00Z", rotation = "1d" } } })
local g = grp:on_call(utc(2026, 1, 1, 12))
t.is_deeply(g, { "ana", "bo" }, "a group is on call together")
g[1] = "mallory"
t.is_deeply(grp:on_call(utc(2026, 1, 1, 12)), { "ana", "bo" }, "on_call returns a copy")
t.is_deeply(grp:users(), { "ana", "bo", "cy" }, "users(): every user named")

-- The flattened schedule agrees with on_call at every quarter hour of a month.
local bad = 0
local month = s:shifts(utc(2026, 1, 1), utc(2026, 2, 1))
for q = utc(2026, 1, 1), utc(2026, 2, 1) - 1, 900 do
  local want = ""
  for _, sh in ipairs(month) do
    if q >= sh.starts_at and q < sh.ends_at then want = table.concat(sh.users, ",") break end
  end
  if want ~= who(s, q) then bad = bad + 1 end
end
t.is(bad, 0, "shifts() and on_call() agree at every 15 minutes of January")

-- on_call stays cheap: escalation asks at every step.
local clock = os.clock()
for i = 1, 100000 do s:on_call(utc(2026, 1, 7) + i * 7) end
t.ok(os.clock() - clock < 2, string.format("100000 on_call calls over 8 days in %.2fs", os.clock() - clock))

-- Validation: nil, "config.schedules.<name>.<path>: reason"; wrong types raise.
local function err_of(sp, name) return select(2, oncall.schedule(sp, name)) end
local base = function() return { users = { "ana" }, start = "2026-01-01", rotation = "daily" } end
t.is(err_of({ time_zone = "Mars/Base", layers = { base() } }, "db"),
  'config.schedules.db.time_zone: unknown time zone "Mars/Base"', "unknown time zone")
t.is(err_of({ layers = { base(), { users = {}, start = "2026-01-01", rotation = "daily" } } }, "db"),
  "config.schedules.db.layers[2].users: at least one user expected", "empty users, with the path")
local l2 = base(); l2.rotation = "fortnightly"
t.like(err_of({ layers = { l2 } }, "db"), "^config%.schedules%.db%.layers%[1%]%.rotation: invalid rotation \"fortnightly\"", "bad rotation")
local l3 = base(); l3.start = "2026-02-30"
t.like(err_of({ layers = { l3 } }, "db"), "^config%.schedules%.db%.layers%[1%]%.start: invalid time", "bad start")
local l4 = base(); l4.handoff = "9am"
t.like(err_of({ layers = { l4 } }, "db"), "layers%[1%]%.handoff: invalid time of day", "bad handoff")
local l5 = base(); l5.restrictions = { { times = { { start_time = "17:00", end_time = "09:00" } } } }
t.is(err_of({ layers = { l5 } }, "db"),
  "config.schedules.db.layers[1].restrictions[1]: times[1]: start time cannot be equal or greater than end time", "bad restriction")
local l6 = base(); l6.rotaton = "daily"
t.is(err_of({ layers = { l6 } }, "db"), "config.schedules.db.layers[1].rotaton: unknown field", "unknown layer field")
t.is(err_of({ layers = {} }, "db"), "config.schedules.db.layers: at least one layer expected", "no layers")
t.is(err_of({ layers = { base() }, overrides = { { user = "x", starts_at = "2026-01-02", ends_at = "2026-01-01" } } }, "db"),
  "config.schedules.db.overrides[1]: starts_at must be before ends_at", "override ends before it starts")
t.is(err_of({ layers = { base() }, overrides = { { user = "x", starts_at = "2026-01-02" } } }),
  "schedule.overrides[1].ends_at: required", "without a name the path starts at schedule")
t.is(err_of({ layers = { base() }, zone = "UTC" }, "db"), "config.schedules.db.zone: unknown field", "unknown schedule field")
local l7 = base(); l7.rotation = "30s"
t.is(err_of({ layers = { l7 } }, "db"), "config.schedules.db.layers[1].rotation: at least one minute, in whole seconds", "too short")
t.raises(function() oncall.schedule({ layers = { { users = "ana", start = "2026-01-01", rotation = "daily" } } }, "db") end,
  "config%.schedules%.db%.layers%[1%]%.users: table expected, got string", "users as a string raises, naming the path")
t.raises(function() oncall.schedule("db") end, "schedule: table expected, got string", "a spec that is not a table raises")
t.raises(function() oncall.schedule({ time_zone = 1, layers = { base() } }, "db") end, "time_zone: string expected", "time_zone type")
t.raises(function() s:on_call("now") end, "on_call: t: number", "on_call needs a number")
t.done()
