-- steward.billing.periods against Lago's date services: the cases of lago-api's
-- spec/services/subscriptions/dates/{weekly,monthly,quarterly,semiannual,yearly}_service_spec.rb (each
-- case names its Lago context), same from/to. Lago asks with the day it bills: for a period
-- billed in arrears that is the day after the period, and its services step back one interval
-- (compute_base_date, a short month's last day keeping the anniversary day); for pay in
-- advance, a termination or current usage, the billing day's own period. lago_at below makes
-- that translation and periods.bounds answers with the period holding the instant. Lago's
-- to_datetime is the last second of the last day; ours is exclusive, the next day's midnight.
-- Then proration by days (Lago's date_diff_with_timezone), the first period clipped to the
-- start, trials and the grace window; and misuse named.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local periods = require "steward.billing.periods"
local time = require "steward.time"

local MONTHS = { weekly = 0, monthly = 1, quarterly = 3, semiannual = 6, yearly = 12 }

local function date_of(s) -- "2022-03-01" -> y, m, d
  local y, m, d = s:match("^(%d+)-(%d+)-(%d+)")
  return tonumber(y), tonumber(m), tonumber(d)
end

-- local midnight of a date in a zone
local function midnight(s, zone)
  local y, m, d = date_of(s)
  return assert(time.zone(zone or "UTC")):from_local({ year = y, month = m, day = d, hour = 0 })
end

local function utc(s) -- "2022-03-01 05:00" in UTC
  local base = midnight(s:sub(1, 10))
  local h, mi = s:match(" (%d+):(%d+)")
  return base + (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60
end

-- The instant Lago's service looks at, from its billing_at (midnight UTC) and mode.
local function lago_at(c)
  local zone = assert(time.zone(c.tz or "UTC"))
  local l = zone:to_local(utc(c.billing))
  local y, m, d = l.year, l.month, l.day
  if c.mode == "arrears" then
    if c.interval == "weekly" then
      return zone:from_local({ year = y, month = m, day = d - 7, hour = 0 })
    end
    local k = MONTHS[c.interval]
    local py, pm = y, m - k
    while pm < 1 do pm = pm + 12; py = py - 1 end
    local dim = periods.days_in_month(py, pm)
    local _, _, ad = date_of(c.sub)
    if c.billing_time == "anniversary" and d == periods.days_in_month(y, m) and d < ad then
      d = math.min(ad, dim) -- compute_base_date: the last day of a short month keeps the anniversary
    elseif d > dim then
      d = dim
    end
    return zone:from_local({ year = py, month = pm, day = d, hour = 0 })
  end
  return zone:from_local({ year = y, month = m, day = d, hour = 0 })
end

-- {Lago's context, interval, billing_time, subscription_at, billing_at, mode, tz, from, to (exclusive)}
local CASES = {
  -- monthly_service_spec.rb
  { "monthly #from_datetime calendar: the beginning of the previous month", "monthly", "calendar", "2021-02-02", "2022-03-01", "arrears", nil, "2022-02-01", "2022-03-01" },
  { "monthly #from_datetime calendar with customer timezone", "monthly", "calendar", "2021-02-02", "2022-03-01", "arrears", "America/New_York", "2022-01-01 05:00", "2022-02-01 05:00" },
  { "monthly #to_datetime calendar when plan is pay in advance", "monthly", "calendar", "2021-02-02", "2022-03-01", "advance", nil, "2022-03-01", "2022-04-01" },
  { "monthly #from_datetime calendar when subscription is just terminated", "monthly", "calendar", "2021-02-02", "2022-03-10", "terminated", nil, "2022-03-01", "2022-04-01" },
  { "monthly #from_datetime anniversary: the day in the previous month", "monthly", "anniversary", "2021-02-02", "2022-03-02", "arrears", nil, "2022-02-02", "2022-03-02" },
  { "monthly #to_datetime anniversary when billing last month of year", "monthly", "anniversary", "2021-02-02", "2022-01-04", "arrears", nil, "2021-12-02", "2022-01-02" },
  { "monthly #to_datetime anniversary when subscription day does not exist in the month", "monthly", "anniversary", "2022-01-31", "2022-02-28", "arrears", nil, "2022-01-31", "2022-02-28" },
  { "monthly #to_datetime ... when subscription is not the last day of the month", "monthly", "anniversary", "2022-01-30", "2022-02-28", "arrears", nil, "2022-01-30", "2022-02-28" },
  { "monthly #to_datetime when anniversary date is first day of the month", "monthly", "anniversary", "2022-01-01", "2022-03-02", "arrears", nil, "2022-02-01", "2022-03-01" },
  { "monthly #to_datetime anniversary when plan is pay in advance", "monthly", "anniversary", "2021-02-02", "2022-03-02", "advance", nil, "2022-03-02", "2022-04-02" },
  { "monthly #from_datetime anniversary terminated: the previous month day", "monthly", "anniversary", "2021-02-02", "2022-03-10", "terminated", nil, "2022-03-02", "2022-04-02" },
  { "monthly ... terminated when billing day after last day of billing month", "monthly", "anniversary", "2021-03-31", "2022-03-29", "terminated", nil, "2022-02-28", "2022-03-31" },
  -- (terminated_at stays the enclosing context's 9 Mar 2022: mark_as_terminated! sets it with ||=, so Lago bills in arrears)
  { "monthly ... terminated when billing day on first month of the year", "monthly", "anniversary", "2021-03-27", "2022-01-28", "arrears", nil, "2021-12-27", "2022-01-27" },
  { "monthly when plan is in advance and date is on the last day of month", "monthly", "anniversary", "2021-03-31", "2021-04-30", "advance", nil, "2021-04-30", "2021-05-31" },
  { "monthly ... when billing month is longer than subscription one", "monthly", "anniversary", "2020-01-31", "2020-02-29", "advance", nil, "2020-02-29", "2020-03-31" },
  { "monthly when plan is in arrear and date is on the last day of month", "monthly", "anniversary", "2021-03-31", "2021-04-30", "arrears", nil, "2021-03-31", "2021-04-30" },
  { "monthly ... when subscription month is shorter than billing one", "monthly", "anniversary", "2019-04-30", "2020-03-30", "arrears", nil, "2020-02-29", "2020-03-30" },
  -- weekly_service_spec.rb
  { "weekly from_datetime calendar", "weekly", "calendar", "2021-02-02", "2022-03-07", "arrears", nil, "2022-02-28", "2022-03-07" },
  { "weekly from_datetime calendar with customer timezone", "weekly", "calendar", "2021-02-02", "2022-03-07", "arrears", "America/New_York", "2022-02-21 05:00", "2022-02-28 05:00" },
  { "weekly to_datetime calendar when plan is pay in advance", "weekly", "calendar", "2021-02-02", "2022-03-07", "advance", nil, "2022-03-07", "2022-03-14" },
  { "weekly from_datetime calendar when subscription is just terminated", "weekly", "calendar", "2021-02-02", "2022-03-10", "terminated", nil, "2022-03-07", "2022-03-14" },
  { "weekly from_datetime anniversary", "weekly", "anniversary", "2021-02-02", "2022-03-09", "arrears", nil, "2022-03-01", "2022-03-08" },
  { "weekly to_datetime anniversary when plan is pay in advance", "weekly", "anniversary", "2021-02-02", "2022-03-09", "advance", nil, "2022-03-08", "2022-03-15" },
  { "weekly from_datetime anniversary when subscription is just terminated", "weekly", "anniversary", "2021-02-02", "2022-03-09", "terminated", nil, "2022-03-08", "2022-03-15" },
  -- quarterly_service_spec.rb
  { "quarterly from_datetime calendar", "quarterly", "calendar", "2021-02-02", "2022-07-01", "arrears", nil, "2022-04-01", "2022-07-01" },
  { "quarterly from_datetime calendar with customer timezone", "quarterly", "calendar", "2021-02-02", "2022-07-01", "arrears", "America/New_York", "2022-01-01 05:00", "2022-04-01 04:00" },
  { "quarterly from_datetime calendar when subscription is just terminated", "quarterly", "calendar", "2021-02-02", "2022-07-10", "terminated", nil, "2022-07-01", "2022-10-01" },
  { "quarterly from_datetime anniversary", "quarterly", "anniversary", "2021-02-02", "2022-05-02", "arrears", nil, "2022-02-02", "2022-05-02" },
  { "quarterly from_datetime anniversary when date is in first quarter", "quarterly", "anniversary", "2021-02-02", "2022-02-02", "arrears", nil, "2021-11-02", "2022-02-02" },
  { "quarterly from_datetime anniversary when date is on the last day of the month", "quarterly", "anniversary", "2021-02-28", "2022-05-31", "arrears", nil, "2022-02-28", "2022-05-28" },
  { "quarterly ... terminated: when billing day after last day of billing month", "quarterly", "anniversary", "2021-05-30", "2022-05-29", "terminated", nil, "2022-02-28", "2022-05-30" },
  { "quarterly ... terminated: when billing day in the second month of the year", "quarterly", "anniversary", "2021-02-28", "2022-02-27", "terminated", nil, "2021-11-28", "2022-02-28" },
  { "quarterly when plan is in advance and date is on the last day of month", "quarterly", "anniversary", "2021-01-31", "2021-04-30", "advance", nil, "2021-04-30", "2021-07-31" },
  { "quarterly when date is not on a billing month (current usage)", "quarterly", "anniversary", "2023-04-06", "2023-08-08", "current", nil, "2023-07-06", "2023-10-06" },
  { "quarterly when date is not on a billing month and day is less than subscription day", "quarterly", "anniversary", "2023-04-06", "2023-08-04", "current", nil, "2023-07-06", "2023-10-06" },
  -- #next_end_of_period (the billing day's own period) in monthly, quarterly, yearly_service_spec.rb
  { "monthly #next_end_of_period calendar", "monthly", "calendar", "2021-02-02", "2022-03-07", "current", nil, "2022-03-01", "2022-04-01" },
  { "monthly #next_end_of_period calendar with customer timezone", "monthly", "calendar", "2021-02-02", "2022-03-07", "current", "America/New_York", "2022-03-01 05:00", "2022-04-01 04:00" },
  { "monthly #next_end_of_period anniversary", "monthly", "anniversary", "2021-02-02", "2022-03-07", "current", nil, "2022-03-02", "2022-04-02" },
  { "monthly #next_end_of_period anniversary with customer timezone (Feb 2 00:00 UTC is Feb 1 in New York)", "monthly", "anniversary", "2021-02-02", "2022-03-07", "current", "America/New_York", "2022-03-01 05:00", "2022-04-01 04:00" },
  { "monthly #next_end_of_period when end of billing month is in next year", "monthly", "anniversary", "2021-02-02", "2021-12-07", "current", nil, "2021-12-02", "2022-01-02" },
  { "quarterly next_end_of_period calendar", "quarterly", "calendar", "2021-02-02", "2022-07-02", "current", nil, "2022-07-01", "2022-10-01" },
  { "quarterly next_end_of_period calendar with customer timezone", "quarterly", "calendar", "2021-02-02", "2022-07-02", "current", "America/New_York", "2022-07-01 04:00", "2022-10-01 04:00" },
  { "quarterly next_end_of_period anniversary", "quarterly", "anniversary", "2021-02-02", "2022-05-07", "current", nil, "2022-05-02", "2022-08-02" },
  { "quarterly next_end_of_period anniversary with customer timezone", "quarterly", "anniversary", "2021-02-02", "2022-05-07", "current", "America/New_York", "2022-05-01 04:00", "2022-08-01 04:00" },
  { "quarterly next_end_of_period when end of billing month is in next year", "quarterly", "anniversary", "2021-02-02", "2021-11-02", "current", nil, "2021-11-02", "2022-02-02" },
  { "yearly next_end_of_period calendar", "yearly", "calendar", "2021-02-02", "2022-03-07", "current", nil, "2022-01-01", "2023-01-01" },
  { "yearly next_end_of_period calendar with customer timezone", "yearly", "calendar", "2021-02-02", "2022-03-07", "current", "America/New_York", "2022-01-01 05:00", "2023-01-01 05:00" },
  { "yearly next_end_of_period anniversary", "yearly", "anniversary", "2021-02-02", "2022-03-07", "current", nil, "2022-02-02", "2023-02-02" },
  { "yearly next_end_of_period anniversary with customer timezone", "yearly", "anniversary", "2021-02-02", "2022-03-07", "current", "America/New_York", "2022-02-01 05:00", "2023-02-01 05:00" },
  -- semiannual_service_spec.rb
  { "semiannual from_datetime calendar", "semiannual", "calendar", "2021-02-02", "2022-07-01", "arrears", nil, "2022-01-01", "2022-07-01" },
  { "semiannual from_datetime calendar with customer timezone", "semiannual", "calendar", "2021-02-02", "2022-07-01", "arrears", "America/New_York", "2021-07-01 04:00", "2022-01-01 05:00" },
  { "semiannual from_datetime calendar when subscription is just terminated", "semiannual", "calendar", "2021-02-02", "2022-07-10", "terminated", nil, "2022-07-01", "2023-01-01" },
  { "semiannual from_datetime anniversary", "semiannual", "anniversary", "2021-11-02", "2022-05-02", "arrears", nil, "2021-11-02", "2022-05-02" },
  { "semiannual from_datetime anniversary when date is on the last day of the month", "semiannual", "anniversary", "2021-11-30", "2022-05-31", "arrears", nil, "2021-11-30", "2022-05-30" },
  { "semiannual ... terminated: when billing day after last day of billing month", "semiannual", "anniversary", "2021-05-30", "2022-05-29", "terminated", nil, "2021-11-30", "2022-05-30" },
  { "semiannual ... terminated: when billing day in the second month of the year", "semiannual", "anniversary", "2021-02-28", "2022-02-27", "terminated", nil, "2021-08-28", "2022-02-28" },
  { "semiannual when plan is in advance and date is on the last day of month", "semiannual", "anniversary", "2021-01-31", "2021-04-30", "advance", nil, "2021-01-31", "2021-07-31" },
  { "semiannual when date is not on a billing month (current usage)", "semiannual", "anniversary", "2023-01-06", "2023-08-08", "current", nil, "2023-07-06", "2024-01-06" },
  { "semiannual when date is not on a billing month and day is less than subscription day", "semiannual", "anniversary", "2023-01-06", "2023-08-04", "current", nil, "2023-07-06", "2024-01-06" },
  -- yearly_service_spec.rb
  { "yearly from_datetime calendar", "yearly", "calendar", "2019-02-02", "2022-01-01", "arrears", nil, "2021-01-01", "2022-01-01" },
  { "yearly from_datetime calendar with customer timezone", "yearly", "calendar", "2019-02-02", "2022-01-01", "arrears", "America/New_York", "2020-01-01 05:00", "2021-01-01 05:00" },
  { "yearly from_datetime calendar when subscription is just terminated", "yearly", "calendar", "2019-02-02", "2022-03-10", "terminated", nil, "2022-01-01", "2023-01-01" },
  { "yearly from_datetime anniversary", "yearly", "anniversary", "2021-02-02", "2022-02-02", "arrears", nil, "2021-02-02", "2022-02-02" },
  { "yearly when current usage is true and current month is the same as starting month", "yearly", "anniversary", "2023-03-29", "2024-03-15", "current", nil, "2023-03-29", "2024-03-29" },
  { "yearly when subscription date on 29/02 of a leap year", "yearly", "anniversary", "2020-02-29", "2025-02-28", "arrears", nil, "2024-02-29", "2025-02-28" },
  { "yearly terminated: when subscription date on 29/02 of a leap year", "yearly", "anniversary", "2020-02-29", "2022-03-28", "terminated", nil, "2022-02-28", "2023-02-28" },
  { "yearly terminated: when billing month is before subscription month", "yearly", "anniversary", "2021-02-02", "2022-01-03", "terminated", nil, "2021-02-02", "2022-02-02" },
}

for _, c in ipairs(CASES) do
  local case = { name = c[1], interval = c[2], billing_time = c[3], sub = c[4], billing = c[5], mode = c[6], tz = c[7] }
  local anchor = utc(case.sub) -- Lago's subscription_at is parsed in UTC, then read in the customer's zone
  local p = periods.bounds(case.interval, anchor, lago_at(case), { billing_time = case.billing_time, timezone = case.tz })
  t.is(time.format(p.from, nil, "UTC") .. " .. " .. time.format(p.to, nil, "UTC"),
       time.format(utc(c[8]), nil, "UTC") .. " .. " .. time.format(utc(c[9]), nil, "UTC"), case.name)
end

-- compute_duration: the days of the period (a proration's denominator)
t.is(periods.bounds("monthly", midnight("2022-01-31"), midnight("2022-02-10"), { billing_time = "anniversary" }).days, 28,
     "monthly compute_duration: Jan 31 anniversary, the period Jan 31 .. Feb 27 has 28 days")
t.is(periods.bounds("yearly", midnight("2020-02-29"), midnight("2024-03-01"), { billing_time = "anniversary" }).days, 365,
     "yearly: Feb 29 2024 .. Feb 27 2025 (the next starts on Feb 28) is 365 days")
t.is(periods.bounds("yearly", midnight("2020-02-29"), midnight("2023-03-01"), { billing_time = "anniversary" }).days, 366,
     "yearly: Feb 28 2023 .. Feb 28 2024 (the next starts on Feb 29) is 366 days")
t.is(periods.bounds("weekly", 0, midnight("2022-03-09")).days, 7, "weekly compute_duration: 7")

-- Proration by days (Lago's first_subscription_amount / terminated_amount: days * amount / period days)
local march = periods.bounds("monthly", 0, midnight("2022-03-15"))
t.is(march.days, 31, "March has 31 days")
t.is(tostring(periods.prorate("31.00", utc("2022-03-03 10:00"), march.to, march)), "29",
     "started on the 3rd at 10:00: the 3rd counts whole, 29 of 31 days (date_diff_with_timezone's ceil)")
t.is(tostring(periods.prorate("31", march.from, utc("2022-03-20 10:30"), march)), "20",
     "terminated on the 20th at 10:30: 20 days billed, the day of the termination whole")
t.is(tostring(periods.prorate("10", march.from, midnight("2022-03-20"), march)), "190/31",
     "an exclusive end at midnight does not touch the day it opens: 19 days, exact (10 * 19 / 31 unrounded)")
t.is(periods.prorate("10", march.from, midnight("2022-03-20"), march):money("USD"), decimal("6.13"),
     "rounded once, by the formula that bills it")
local ny = periods.bounds("monthly", 0, midnight("2022-03-15", "America/New_York"), { timezone = "America/New_York" })
t.is(ny.days, 31, "March in New York (23 hours on the 13th) is still 31 days")
t.is(tostring(periods.prorate("31", ny.from, midnight("2022-03-14", "America/New_York"), ny)), "13",
     "a day of 23 hours counts as one day")
local clipped = periods.clip(march, utc("2022-03-10 08:00"))
t.is(clipped.from, utc("2022-03-10 08:00"), "clip: the first period starts at the subscription's start")
t.is(clipped.days, 31, "clip keeps the full period's days for the denominator")
t.is(tostring(periods.fraction(clipped.from, clipped.to, clipped)), "22/31", "fraction: 22 days of 31")

-- spec/services/fees/subscription_service_spec.rb, "when subscription has never been billed":
-- a plan of 1.00 EUR, the first (calendar) period prorated from the start, or from the trial's
-- end; precise_amount_cents, then amount_cents (half-up to the cent)
local FEES = {
  { "weekly, when subscription start is on Monday", "weekly", "2022-06-20 00:01", 0, "1.00" },
  { "weekly, Monday, when trial end during period (3 days)", "weekly", "2022-06-20 00:01", 3, "0.57", "4/7" },
  { "weekly, Monday, when trial end after end of period", "weekly", "2022-06-20 00:01", 45, "0.00" },
  { "weekly, when subscription start is on any other day", "weekly", "2022-06-22 00:00", 0, "0.71", "5/7" },
  { "weekly, any other day, when trial end during the period", "weekly", "2022-06-22 00:00", 3, "0.29", "2/7" },
  { "monthly, when subscription start is on the 1st of the month", "monthly", "2022-01-01 00:01", 0, "1.00" },
  { "monthly, the 1st, when trial end during period", "monthly", "2022-01-01 00:01", 3, "0.90", "28/31" },
  { "monthly, when subscription start is on any other day", "monthly", "2022-03-15 00:00", 0, "0.55", "17/31" },
  { "monthly, any other day, when trial end during the period", "monthly", "2022-03-15 00:00", 3, "0.45", "14/31" },
  { "monthly, any other day, when trial end after the period end", "monthly", "2022-03-15 00:00", 45, "0.00" },
}
for _, c in ipairs(FEES) do
  local started = utc(c[3])
  local p = periods.bounds(c[2], started, started)
  local from = math.max(started, periods.trial_end(started, c[4]))
  local fee = from >= p.to and decimal(0) or periods.prorate("1.00", from, p.to, p)
  t.is(fee:money("EUR"):format(2), c[5], "Fees::SubscriptionService " .. c[1] .. ": " .. c[5])
  if c[6] then t.is(tostring(fee), c[6], "... exactly " .. c[6] .. " before rounding") end
end

-- trials and grace
t.is(periods.trial_end(midnight("2022-03-01"), 14), midnight("2022-03-15"), "trial_end: 14 days of 24 hours")
t.is(periods.grace_closed(march, "3d", midnight("2022-04-03") + 86399), false, "grace 3d: open until 3 days after the end")
t.is(periods.grace_closed(march, "3d", midnight("2022-04-04")), true, "closed at end + 3 days")
t.is(periods.grace_closed(march, 0, march.to), true, "no grace: closed at the period's end")

-- misuse
t.raises(function() periods.bounds("daily", 0, 0) end, "periods.bounds: interval: one of weekly", "an unknown interval")
t.raises(function() periods.bounds("monthly", 0, 0, { billing_time = "fiscal" }) end, "opts.billing_time", "an unknown billing time")
t.raises(function() periods.bounds("monthly", 0, 0, { timezone = "Mars/Olympus" }) end, "periods.bounds: timezone: unknown time zone",
         "an unknown zone")
t.raises(function() periods.bounds("monthly", "0", 0) end, "periods.bounds: anchor: epoch seconds expected", "a string anchor")
t.raises(function() periods.prorate(0.5, 0, 1, march) end, "periods.prorate: amount: 0.5 is a Lua number with a fraction",
         "a Lua fraction as an amount")
t.raises(function() periods.grace_closed(march, "3 days", 0) end, "periods.grace_closed: grace:", "a bad duration")
t.done()
