-- steward.capacity's cost models on fake clocks: the `costs` schema's errors name the field;
-- time-of-use windows in a zone (weekdays only, a tariff night crossing midnight, the nights
-- the clocks change: a wall-clock 22:00-06:00 is 7 or 9 real hours); the cost of a period
-- crossing price boundaries, per class (on-demand, spot); the cheapest start of a deferrable
-- job (in a cheap window, the earliest of equal slots, a job that cannot meet its deadline);
-- and the cost per service, tenant and revision from the supervisor's events in a real store.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local util = require "steward.runtime.store.util"
local prices = require "steward.capacity.prices"
local capacity = require "steward.capacity"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st

local function utc(y, m, d, h, mi) return util.days_from_civil(y, m, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60 end

local COSTS = { currency = "EUR", timezone = "Europe/Paris", prices = {
  { name = "peak", cron = "0 8 * * 1-5", duration = "12h", instance_hour = { on_demand = "0.12", spot = "0.05" } },
  { name = "night", cron = "0 22 * * *", duration = "8h", instance_hour = { on_demand = 0.02, spot = 0.01 } },
  { name = "day", instance_hour = { on_demand = "0.04", spot = "0.02" } },
} }

local function raises_check(c, pattern, name)
  local ok, err = pcall(prices.check, c)
  t.ok(not ok, name)
  t.like(tostring(err), pattern, "... " .. pattern)
end

local function main()
  -- schema
  local m = prices.check(COSTS)
  t.is(m.currency, "EUR", "the model keeps its currency")
  raises_check({ prices = {} }, "^costs%.prices: non%-empty list", "no prices")
  raises_check({ prices = { { name = "a", cron = "0 8 * * *", duration = "1h", instance_hour = 1 } } },
    "^costs%.prices: one entry without cron", "no default price")
  raises_check({ prices = { { name = "a", cron = "0 25 * * *", duration = "1h", instance_hour = 1 }, { name = "b", instance_hour = 1 } } },
    "^costs%.prices%[1%]%.cron: cron: hour", "a bad cron names the entry and the field")
  raises_check({ prices = { { name = "a", cron = "0 8 * * *", instance_hour = 1 }, { name = "b", instance_hour = 1 } } },
    "^costs%.prices%[1%]%.duration: duration expected", "a window without a duration")
  raises_check({ prices = { { name = "b", instance_hour = "0.1234567" } } }, "^costs%.prices%[1%]%.instance_hour: at most 6 decimals",
    "more than a millionth")
  raises_check({ prices = { { name = "b", instance_hour = -1 } } }, "^costs%.prices%[1%]%.instance_hour: non%-negative", "a negative price")
  raises_check({ prices = { { name = "b", instance_hour = { spot = 1 } } } }, "instance_hour%.on_demand: price expected",
    "a class table needs on_demand")
  raises_check({ timezone = "Mars/Olympus", prices = { { name = "b", instance_hour = 1 } } }, "^costs%.timezone:", "an unknown zone")
  raises_check({ prices = { { name = "b", instance_hour = 1 } }, services = { batch = { class = "reserved" } } },
    "^costs%.services%.batch%.class: no price names class reserved", "a class no price names")
  raises_check({ prices = { { name = "b", instance_hour = 1 } }, colour = 1 }, "^costs%.colour: unknown field", "an unknown field")

  -- windows: Monday 7 December 2026, Paris is UTC+1 in winter
  local mon = utc(2026, 12, 7)
  local _, name = prices.price_at(m, mon + 6 * 3600)
  t.is(name, "day", "06:00 UTC (07:00 in Paris) on a Monday: day")
  t.is(select(2, prices.price_at(m, mon + 7 * 3600)), "peak", "07:00 UTC (08:00 in Paris): peak")
  t.is(select(2, prices.price_at(m, mon + 19 * 3600 - 1)), "peak", "a second before 20:00 in Paris: still peak")
  t.is(select(2, prices.price_at(m, mon + 19 * 3600)), "day", "20:00 in Paris: day again")
  t.is(select(2, prices.price_at(m, mon + 21 * 3600)), "night", "22:00 in Paris: night")
  t.is(select(2, prices.price_at(m, mon + 86400 + 4 * 3600 + 1800)), "night", "05:30 on Tuesday in Paris: still night")
  t.is(select(2, prices.price_at(m, utc(2026, 12, 12, 10))), "day", "Saturday 11:00 in Paris: no peak at weekends")
  t.is(prices.amount((prices.price_at(m, mon + 8 * 3600, "spot"))), "0.050000", "the spot class's peak price")

  -- a period crossing boundaries: Monday 05:00-10:00 Paris = 04:00-09:00 UTC:
  -- 1 h night (0.02) + 2 h day (0.04) + 2 h peak (0.12) = 0.34 for one instance
  local a, b = mon + 4 * 3600, mon + 9 * 3600
  local segs = assert(prices.segments(m, a, b))
  t.is(#segs, 3, "three price segments in Monday 05:00-10:00")
  t.is(prices.amount(prices.cost(segs, a, b, "on_demand", 1)), "0.340000", "their cost: 0.02 + 2 x 0.04 + 2 x 0.12")
  t.is(prices.amount(prices.cost(segs, a, b, "on_demand", 3)), "1.020000", "three instances cost three times as much")
  t.is(prices.amount(prices.cost(segs, a, b, "spot", 1)), "0.150000", "spot: 0.01 + 2 x 0.02 + 2 x 0.05")

  -- DST: Europe/Paris goes to summer time on Sunday 29 March 2026 at 02:00 (01:00 UTC): the
  -- night from 22:00 CET (21:00 UTC) to 06:00 CEST (04:00 UTC) is 7 hours.
  local sa, sb = utc(2026, 3, 28, 20), utc(2026, 3, 29, 6)
  segs = assert(prices.segments(m, sa, sb))
  local by = {}
  prices.cost(segs, sa, sb, "on_demand", 1, by)
  t.is(prices.amount(by.night), "0.140000", "spring forward: the 22:00-06:00 night is 7 hours (7 x 0.02)")
  t.is(prices.amount(by.day), "0.120000", "... and the 3 other hours of the 10 are day (3 x 0.04)")
  t.is(segs[2][1], utc(2026, 3, 28, 21), "... the night starts at 22:00 CET = 21:00 UTC")
  t.is(segs[2][2], utc(2026, 3, 29, 4), "... and ends at 06:00 CEST = 04:00 UTC")
  -- Winter time on Sunday 25 October 2026 at 03:00 CEST (01:00 UTC): 22:00 CEST (20:00 UTC) to
  -- 06:00 CET (05:00 UTC) is 9 hours.
  local fa, fb = utc(2026, 10, 24, 18), utc(2026, 10, 25, 8)
  by = {}
  prices.cost(assert(prices.segments(m, fa, fb)), fa, fb, "on_demand", 1, by)
  t.is(prices.amount(by.night), "0.180000", "fall back: the night is 9 hours (9 x 0.02)")

  -- cheapest
  local now = mon + 9 * 3600 -- 10:00 in Paris, peak
  local r = assert(prices.cheapest(m, { duration = 2 * 3600, deadline = now + 86400, now = now }))
  t.is(r.start, mon + 21 * 3600, "a 2 h job due in a day starts when the night starts (22:00 Paris)")
  t.is(r.amount, "0.040000", "... costing 2 x 0.02")
  t.is(r.now_amount, "0.240000", "... instead of 2 x 0.12 now")
  t.is(r.price, "night", "... at the night price")
  r = assert(prices.cheapest(m, { duration = 2 * 3600, deadline = mon + 19 * 3600, now = now }))
  t.is(r.start, now, "all peak until the deadline: the earliest start of equally cheap ones (now)")
  r = assert(prices.cheapest(m, { duration = 2 * 3600, deadline = mon + 20 * 3600 + 1800, now = now }))
  t.is(r.start, mon + 18 * 3600 + 1800, "deadline at 21:30 Paris: start 19:30, half the job after peak ends")
  t.is(r.amount, "0.120000", "... 0.5 h peak + 1.5 h day = 0.06 + 0.06")
  local none, err = prices.cheapest(m, { duration = 2 * 3600, deadline = now + 3600, now = now })
  t.is(none, nil, "a job longer than the time to its deadline gets no slot")
  t.is(err, "cannot meet the deadline: the job needs 2h00m and 1h00m is left before it", "... and says why")
  none, err = prices.cheapest(m, { duration = 60, deadline = now - 10, now = now })
  t.like(err, "^cannot meet the deadline: .* 0s is left", "a deadline in the past")

  -- cost from the supervisor's events, per service, tenant, revision
  store.set_default(st)
  capacity.configure({ costs = COSTS, services = { api = { tenant = "acme" }, batch = { tenant = "acme" } } })
  local T = mon + 10 * 3600 -- 11:00 Paris, peak
  local function ev(ty, svc, rev, idx, at)
    return { type = ty, time = at, source = "steward.deploy.supervisor", data = { service = svc, revision = rev, index = idx } }
  end
  assert(events.append(st, {
    ev("service.instance.started", "api", "r1", 1, T - 3600), -- runs through the period's start
    ev("service.instance.started", "api", "r1", 2, T),
    ev("service.instance.exited", "api", "r1", 2, T + 1800),
    ev("service.instance.started", "api", "r1", 2, T + 3600), -- a restart of the same instance
    ev("service.instance.started", "api", "r2", 1, T + 3600),
    ev("service.instance.exited", "api", "r2", 1, T + 2 * 3600),
    ev("service.instance.started", "lone", "r1", 1, T), -- no exit, not running now: counts until its next start (none)
    { type = "service.instance.started", time = T, source = "someone.else", data = { service = "api", revision = "r9", index = 1 } },
    { type = "service.instance.exited", time = T + 600, source = "someone.else", data = { service = "api", revision = "r9", index = 1 } },
  }, { now = T }))
  local c = assert(capacity.cost({ from = T, to = T + 2 * 3600, by = "service", now = T + 2 * 3600 }))
  t.is(c.currency, "EUR", "cost: the model's currency")
  t.is(#c.rows, 1, "one row per service with instances (the exit-less instance the supervisor does not run counts nothing)")
  -- api r1/1 and r1/2's restart have no exit and the supervisor runs neither: nothing;
  -- r1/2: 0.5 h; r2/1: 1 h (its exit at the period's end). Peak: 1.5 h x 0.12 = 0.18.
  t.is(c.rows[1].amount, "0.180000", "api: 1.5 instance hours at peak")
  t.is(c.rows[1].instance_hours, 1.5, "... instance hours")
  t.is(c.rows[1].instance_seconds, 5400, "... instance-seconds")
  t.is(c.total, "0.180000", "the total")
  local by_rev = assert(capacity.cost({ from = T, to = T + 2 * 3600, by = "revision", now = T + 2 * 3600 }))
  t.is(#by_rev.rows, 2, "by revision: two rows (another source's service.instance.started is not accounting)")
  t.is(by_rev.rows[1].key .. "=" .. by_rev.rows[1].amount, "api/r1=0.060000", "... api/r1")
  t.is(by_rev.rows[2].key .. "=" .. by_rev.rows[2].amount, "api/r2=0.120000", "... api/r2")
  local by_tenant = assert(capacity.cost({ from = T, to = T + 2 * 3600, by = "tenant", now = T + 2 * 3600 }))
  t.is(by_tenant.rows[1].key, "acme", "by tenant: the services' tenant")
  t.is(by_tenant.rows[1].amount, "0.180000", "... its cost")
  -- while the supervisor runs an instance, its open interval lasts until now
  local accounting = require "steward.capacity.accounting"
  local ivs = assert(accounting.intervals(st, T, T + 2 * 3600, { now = T + 5400,
    running = function(s, rev, idx) return s == "api" and rev == "r1" end }))
  local hours = {}
  for _, iv in ipairs(ivs) do hours[#hours + 1] = iv.service .. "/" .. iv.revision .. "/" .. iv.index .. "=" .. (iv.to - iv.from) / 3600 end
  t.is(table.concat(hours, " "), "api/r1/1=1.5 api/r1/2=0.5 api/r1/2=0.5 api/r2/1=1",
    "running instances count until now: r1/1 from the period's start, r1/2's restart from its start")
  t.raises(function() capacity.cost({ by = "colour" }) end, "by: service, tenant or revision", "a bad by raises naming it")
  t.raises(function() capacity.cost({ frm = 1 }) end, "frm: unknown field", "an unknown option raises naming it")
  -- defer: the cheapest slot as a durable timer keyed by the job's name, audited
  local timers = require "steward.runtime.store.timers"
  local audit = require "steward.runtime.store.audit"
  local job = { name = "reindex", duration = "2h", deadline = now + 86400, now = now, actor = "ana",
    event = { type = "batch.reindex", data = { table = "orders" } } }
  local d = assert(capacity.defer(job))
  t.is(d.start, mon + 21 * 3600, "defer: the job starts at the cheapest slot (the night)")
  t.is(d.timer, "k:capacity.defer:reindex", "... as the durable timer of its name")
  local again = assert(capacity.defer(job))
  t.ok(again.existing and again.start == d.start, "deferring the same name again schedules nothing new")
  local waiting = assert(capacity.deferred())
  t.is(#waiting == 1 and waiting[1].name .. "@" .. waiting[1].start, "reindex@" .. d.start, "deferred() lists it")
  t.is(#assert(timers.fire_due(st, d.start - 1)), 0, "nothing fires before its slot")
  local fired = assert(timers.fire_due(st, d.start + 0.3))
  t.is(#fired == 1 and fired[1].type, "batch.reindex", "at its slot its event fires")
  t.is(fired[1].data.table, "orders", "... with its data")
  t.is(fired[1].time, d.start, "... timed at the slot")
  t.is(#assert(timers.fire_due(st, d.start + 5)), 0, "... once")
  t.is(#assert(capacity.deferred()), 0, "and no longer waits")
  local late, lerr = capacity.defer({ name = "late", duration = "2h", deadline = now + 600, now = now,
    event = { type = "batch.late" } })
  t.ok(late == nil and lerr:match("^capacity%.defer: late: cannot meet the deadline"), "a job that cannot meet its deadline: nil and why")
  local seen = {}
  for _, e in ipairs(assert(audit.list(st, { limit = 50 })).entries) do
    local who = type(e.actor) == "string" and e.actor or "-"
    if e.command == "capacity.defer" then seen[#seen + 1] = e.target .. "/" .. e.outcome .. "/" .. who end
  end
  table.sort(seen)
  t.is(table.concat(seen, " "), "late/refused/- reindex/ok/ana", "both are in the audit log (the slot, or why not)")
  t.raises(function() capacity.defer({ name = "x", duration = "soon", deadline = now + 10, now = now, event = { type = "a.b" } }) end,
    "capacity%.defer: duration:", "a bad duration raises naming it")
  t.raises(function() capacity.defer({ name = "x", duration = "1h", deadline = now + 10, now = now, event = { type = "A B" } }) end,
    "event%.type", "a bad event type raises naming it")
  t.raises(function() capacity.defer({ name = "x", duration = "1h", deadline = {}, now = now, event = { type = "a.b" } }) end,
    "capacity%.defer: deadline:", "a bad deadline raises naming it")

  capacity.configure({})
  local nm, nerr = capacity.cost({})
  t.ok(nm == nil and nerr:match("no cost model"), "without the costs key: nil and why")
end

spec.run(main)
