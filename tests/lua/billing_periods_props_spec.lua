-- steward.billing.periods, properties over many random cases (the seed is printed; set
-- BILLING_SEED to replay one): consecutive periods tile time with no gap and no overlap, in
-- zones with DST (New York, Paris), a half-hour DST (Lord Howe), a DST change at midnight (Sao
-- Paulo until 2019: the day starts at 01:00) and across leap years, for every interval and both
-- billing times, with anniversaries on the 28th-31st; every instant of a period finds that
-- period; and the prorated parts of a period split at random days sum exactly to the whole.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local periods = require "steward.billing.periods"
local time = require "steward.time"

local seed = tonumber(os.getenv("BILLING_SEED") or "") or os.time()
t.diag("seed " .. seed)
math.randomseed(seed)
local random = math.random

local ZONES = { "UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "America/Sao_Paulo" }
local function day(y, m, d, zone) return assert(time.zone(zone)):from_local({ year = y, month = m, day = d, hour = 0 }) end

local from, to = day(2016, 1, 1, "UTC"), day(2029, 1, 1, "UTC")
for _, zone in ipairs(ZONES) do
  for _, interval in ipairs(periods.INTERVALS) do
    for _, bt in ipairs({ "calendar", "anniversary" }) do
      local anchors = { day(2016, 1, 31, zone), day(2016, 2, 29, zone), day(2017, 8, 30, zone) + 3600 * 15,
                        day(2015 + random(0, 3), random(1, 12), random(1, 31) % 28 + 1, zone) + random(0, 86399) }
      for _, anchor in ipairs(anchors) do
        local opts = { billing_time = bt, timezone = zone }
        local span_to = interval == "weekly" and from + 3 * 366 * 86400 or to
        local list = periods.list(interval, anchor, from, span_to, opts)
        local bad
        for i, p in ipairs(list) do
          local nxt = list[i + 1]
          if p.to <= p.from then bad = ("period %d is empty"):format(i) end
          if nxt and nxt.from ~= p.to then bad = ("a gap or an overlap after %s"):format(time.format(p.to, nil, zone)) end
          if p.days ~= periods.days(p.from, p.to, zone) then bad = ("period %d: %d days, counted %d"):format(i, p.days, periods.days(p.from, p.to, zone)) end
          local at = p.from + random(0, p.to - p.from - 1)
          local q = periods.bounds(interval, anchor, at, opts)
          if q.from ~= p.from or q.to ~= p.to then bad = "an instant inside a period finds another one: " .. time.format(at, nil, zone) end
          local l = time.localtime(p.from, zone)
          if l.min ~= 0 or (l.hour ~= 0 and not (zone == "America/Sao_Paulo" and l.hour == 1)) then
            bad = "a period starts at " .. time.format(p.from, nil, zone)
          end
          if bad then break end
        end
        local name = ("%s %s %s, anchor %s: %d periods tile time"):format(zone, interval, bt, time.format(anchor, nil, zone), #list)
        t.ok(not bad and #list > 0 and list[1].from <= from and list[#list].to >= span_to, name)
        if bad then t.diag(bad) end
      end
    end
  end
end

-- any instant, any anchor from 1970 to 2100, in any of the zones: the period holds it, is 1
-- to 366 days long, and the next one starts where it ends
local holds, what = true, nil
local MAXD = { weekly = 7, monthly = 31, quarterly = 92, semiannual = 184, yearly = 366 }
for _ = 1, 3000 do
  local zone = ZONES[random(#ZONES)]
  local interval = periods.INTERVALS[random(#periods.INTERVALS)]
  local opts = { billing_time = random(2) == 1 and "calendar" or "anniversary", timezone = zone }
  local anchor, at = random(0, 4102444800), random(0, 4102444800)
  local p = periods.bounds(interval, anchor, at, opts)
  local q = periods.next(interval, anchor, p, opts)
  if not (p.from <= at and at < p.to and p.days >= 1 and p.days <= MAXD[interval] and q.from == p.to
          and p.days >= (interval == "weekly" and 7 or interval == "monthly" and 28 or 89)) then
    holds, what = false, ("%s %s %s anchor %d at %d: %s .. %s (%d days)"):format(zone, interval, opts.billing_time, anchor, at,
      time.format(p.from, nil, zone), time.format(p.to, nil, zone), p.days)
    break
  end
end
t.ok(holds, "3000 random instants from 1970 to 2100: each in its period, of a plausible length, followed by the next")
if what then t.diag(what) end

-- months nest in quarters, half-years and years of the same anchor (a yearly plan billing its
-- charges monthly, Lago's bill_charges_monthly): every long period's bounds are monthly bounds
local nested, why = true, nil
for _, zone in ipairs(ZONES) do
  for _, bt in ipairs({ "calendar", "anniversary" }) do
    local am = random(1, 12)
    local anchor = day(2016, am, math.min(random(26, 31), periods.days_in_month(2016, am)), zone)
    local opts = { billing_time = bt, timezone = zone }
    local starts = {}
    for _, m in ipairs(periods.list("monthly", anchor, from, to, opts)) do starts[m.from] = true end
    for _, interval in ipairs({ "quarterly", "semiannual", "yearly" }) do
      local list = periods.list(interval, anchor, from + 400 * 86400, to, opts)
      for _, q in ipairs(list) do
        if not starts[q.from] then nested, why = false, ("%s %s %s: %s is no month's start"):format(zone, bt, interval, time.format(q.from, nil, zone)) end
      end
    end
  end
end
t.ok(nested, "months nest in quarters, half-years and years of the same anchor, in every zone")
if why then t.diag(why) end

-- anniversaries on the 29th-31st keep their day where the month has it
local p = periods.bounds("monthly", day(2023, 1, 31, "UTC"), day(2023, 3, 15, "UTC"), { billing_time = "anniversary" })
t.is(time.format(p.from, "%F"), "2023-02-28", "Jan 31 anniversary: February's period starts on the 28th")
t.is(time.format(p.to, "%F"), "2023-03-31", "... and March's on the 31st again")

-- prorated parts split at local midnights sum exactly to the whole
local ok_all, detail = true, nil
for n = 1, 300 do
  local zone = ZONES[random(#ZONES)]
  local interval = periods.INTERVALS[random(#periods.INTERVALS)]
  local opts = { billing_time = random(2) == 1 and "calendar" or "anniversary", timezone = zone }
  local per = periods.bounds(interval, day(2016, random(1, 12), random(1, 31) % 28 + 1, zone), from + random(0, to - from), opts)
  local amount = decimal(tostring(random(0, 10 ^ 6)) .. "." .. ("%02d"):format(random(0, 99)))
  local cuts, z = {}, assert(time.zone(zone))
  local l0 = z:to_local(per.from)
  for _ = 1, random(1, 6) do
    cuts[#cuts + 1] = z:from_local({ year = l0.year, month = l0.month, day = l0.day + random(1, per.days - 1), hour = 0 })
  end
  table.sort(cuts)
  local total, at = decimal(0), per.from
  for _, c in ipairs(cuts) do
    total = total + periods.prorate(amount, at, c, per)
    at = c
  end
  total = total + periods.prorate(amount, at, per.to, per)
  if total ~= amount then
    ok_all, detail = false, ("case %d: %s %s in %s: parts sum to %s, not %s"):format(n, interval, opts.billing_time, zone, tostring(total), tostring(amount))
    break
  end
end
t.ok(ok_all, "300 random periods split at random days: the prorated parts sum exactly to the whole")
if detail then t.diag(detail) end
t.done()
