-- steward.runtime.store.cron: parsing and next/prev times against answers computed independently
-- (a minute-by-minute brute force in Python), including month ends, leap years and Vixie
-- cron's day-of-month / day-of-week OR rule.
local t = require "steward.tap"
local cron = require "steward.runtime.store.cron"
local util = require "steward.runtime.store.util"

local P, F = util.parse_rfc3339, util.format_rfc3339

local NEXT = {
  { "*/15 * * * *", "2024-01-01T00:07:00Z", "2024-01-01T00:15:00Z" },
  { "0 0 31 * *", "2024-04-15T00:00:00Z", "2024-05-31T00:00:00Z", "skips a 30-day month" },
  { "0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z", "Feb 29 waits for the next leap year" },
  { "0 0 29 2 *", "2023-01-01T00:00:00Z", "2024-02-29T00:00:00Z" },
  { "0 0 29 2 *", "2097-01-01T00:00:00Z", "2104-02-29T00:00:00Z", "2100 is not a leap year" },
  { "0 12 1 * mon", "2024-01-01T12:00:00Z", "2024-01-08T12:00:00Z", "dom OR dow: a Monday" },
  { "0 12 13 * 5", "2024-09-01T00:00:00Z", "2024-09-06T12:00:00Z", "dom OR dow: Friday before the 13th" },
  { "0 12 */2 * 5", "2024-09-01T00:00:00Z", "2024-09-13T12:00:00Z", "dom starting with * means AND" },
  { "@monthly", "2024-12-15T00:00:00Z", "2025-01-01T00:00:00Z", "@monthly across a year end" },
  { "30 9 * * mon-fri", "2024-05-31T10:00:00Z", "2024-06-03T09:30:00Z", "weekday range skips the weekend" },
  { "0 0 * * 7", "2024-06-03T00:00:00Z", "2024-06-09T00:00:00Z", "7 is Sunday" },
  { "59 23 31 12 *", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z", "strictly after" },
  { "5,10-12 3 * * *", "2024-01-01T03:10:30Z", "2024-01-01T03:11:00Z", "lists and ranges" },
  { "0 0 1,15 * 3", "2024-02-02T00:00:00Z", "2024-02-07T00:00:00Z" },
  { "0 */6 * feb-mar sun", "2024-01-31T00:00:00Z", "2024-02-04T00:00:00Z", "month names" },
  { "15 14 1 * *", "2024-01-31T23:00:00Z", "2024-02-01T14:15:00Z" },
  { "0 0 31 1-12/2 *", "2024-02-01T00:00:00Z", "2024-03-31T00:00:00Z", "stepped range" },
  { "@hourly", "2024-01-01T10:59:59Z", "2024-01-01T11:00:00Z" },
  { "@daily", "2024-02-28T00:00:00Z", "2024-02-29T00:00:00Z" },
  { "@weekly", "2024-06-03T00:00:00Z", "2024-06-09T00:00:00Z" },
  { "@yearly", "2024-06-03T00:00:00Z", "2025-01-01T00:00:00Z" },
  { "0 0 1 JAN *", "2024-06-03T00:00:00Z", "2025-01-01T00:00:00Z", "names are case-insensitive" },
}

local PREV = {
  { "*/15 * * * *", "2024-01-01T00:07:00Z", "2024-01-01T00:00:00Z" },
  { "0 0 29 2 *", "2024-03-01T00:00:00Z", "2024-02-29T00:00:00Z" },
  { "0 12 1 * mon", "2024-01-01T12:00:00Z", "2023-12-25T12:00:00Z" },
  { "30 9 * * mon-fri", "2024-06-03T09:00:00Z", "2024-05-31T09:30:00Z" },
  { "0 0 31 * *", "2024-05-01T00:00:00Z", "2024-03-31T00:00:00Z" },
}

local BAD = {
  { "60 * * * *", "minute" }, { "* 24 * * *", "hour" }, { "* * 0 * *", "day%-of%-month" },
  { "* * * 13 *", "month" }, { "* * * * 8", "day%-of%-week" }, { "*/0 * * * *", "step" },
  { "* * 5-1 * *", "backwards" }, { "* * * * * *", "5 fields" }, { "* * * *", "5 fields" },
  { "@reboot", "macro" }, { "* * * foo *", "month" }, { "1,,2 * * * *", "empty" },
}

t.plan(#NEXT + #PREV + #BAD + 9)

for _, c in ipairs(NEXT) do
  local s = assert(cron.parse(c[1]))
  t.is(F(s:next(P(c[2]))), c[3], c[1] .. " after " .. c[2] .. (c[4] and (": " .. c[4]) or ""))
end
for _, c in ipairs(PREV) do
  local s = assert(cron.parse(c[1]))
  t.is(F(s:prev(P(c[2]))), c[3], c[1] .. " before " .. c[2])
end
for _, c in ipairs(BAD) do
  local s, err = cron.parse(c[1])
  t.like(s == nil and err or "parsed!", c[2], ("%q is refused naming %s"):format(c[1], c[2]))
end

local never = assert(cron.parse("0 0 30 2 *"))
t.is(never:next(P("2024-01-01T00:00:00Z")), nil, "Feb 30 never comes: next is nil")
t.is(never:prev(P("2024-01-01T00:00:00Z")), nil, "and prev is nil")
t.raises(function() cron.parse(5) end, "cron.parse: expr: string expected", "a non-string expr raises")
t.raises(function() assert(cron.parse("* * * * *")):next("x") end, "after: number expected", "next needs a number")

local every = assert(cron.parse("* * * * *"))
local base = P("2024-01-01T00:00:00Z")
t.is(every:next(base), base + 60, "next is strictly after a whole minute")
t.is(every:next(base + 0.5), base + 60, "fractional seconds round up to the next minute")
t.ok(every:matches(base) and not assert(cron.parse("1 * * * *")):matches(base), "matches")
t.is(F(P("2024-02-29T23:59:59.5+01:00")), "2024-02-29T22:59:59Z", "RFC 3339 offsets are applied")
t.is(select(2, cron.parse("0 0 * * sun-sat")) , nil, "sun-sat is a valid range")

t.done()
