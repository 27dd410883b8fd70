-- steward.slo over the event log: hand-computed SLIs and burn rates per window, the workbook
-- table, budget math, calendar periods, state-change events (no repeats while firing), misuse.
local t = require "steward.tap"
local slo = require "steward.slo"
local events = require "steward.runtime.events"
local crypto = require "steward.crypto"

local st, tmp = require("tests.support.test_store").open()
local run = crypto.hex(crypto.random(6))

-- workbook table ------------------------------------------------------------------------
t.is_deeply(slo.workbook_defaults(), {
  { severity = "page", long = "1h", short = "5m", factor = 14.4 },
  { severity = "page", long = "6h", short = "30m", factor = 6 },
  { severity = "ticket", long = "1d", short = "2h", factor = 3 },
  { severity = "ticket", long = "3d", short = "6h", factor = 1 },
}, "workbook defaults: page 1h&5m>=14.4, 6h&30m>=6; ticket 1d&2h>=3, 3d&6h>=1")
local wb = slo.workbook_defaults(); wb[1].factor = 1
t.is(slo.workbook_defaults()[1].factor, 14.4, "each call returns a fresh copy")

-- durations and calendar periods ----------------------------------------------------------
t.is(slo.parse_duration("5m"), 300, "5m"); t.is(slo.parse_duration("3d"), 259200, "3d")
t.is(slo.parse_duration("1w"), 604800, "1w")
t.raises(function() slo.parse_duration("1h30m") end, 'duration like "5m"', "compound durations are refused")
t.is(slo.period_start("month", 1700000000), 1698796800, "month of 2023-11-14T22:13:20Z starts 2023-11-01")
t.is(slo.period_start("week", 1700000000), 1699833600, "ISO week starts Monday 2023-11-13")
t.is(slo.period_start("week", 1699833600), 1699833600, "Monday 00:00 is its own week's start")
t.is(slo.period_start("month", 1709208000), 1706745600, "2024-02-29 12:00 is in February (leap year)")
t.is(slo.period_start("month", 951868800), 951868800, "2000-03-01 00:00 is its own month's start")

-- a synthetic log -------------------------------------------------------------------------
-- objective 1 - 1/32: the allowed error ratio 1/32 is exact in binary, so burn = 32 * errors/valid
-- exactly and the expected numbers below are computed by hand.
local T = 1700000000
local tenant = "slo-" .. run
local list = {}
local function add(at, n, bad, extra)
  for i = 1, n do
    list[#list + 1] = { type = extra and extra.type or "http.request", tenant = extra and extra.tenant or tenant,
      time = at, data = { code = i <= bad and 500 or 200, path = extra and extra.path or "/buy" } }
  end
end
add(T - 60, 4, 2)            -- in 5m:  4 valid, 2 bad
add(T - 20 * 60, 4, 0)       -- in 30m: +4
add(T - 50 * 60, 8, 6)       -- in 1h:  +8, 6 bad
add(T - 90 * 60, 16, 0)      -- in 2h:  +16
add(T - 5 * 3600, 32, 0)     -- in 6h:  +32
add(T - 20 * 3600, 64, 0)    -- in 1d:  +64
add(T - 2 * 86400, 128, 8)   -- in 3d:  +128, 8 bad
add(T - 10 * 86400, 768, 0)  -- in 30d: +768
add(T - 300, 0, 0)
add(T - 40 * 86400, 10, 10)                         -- before the 30 days: ignored
add(T - 60, 5, 5, { type = "http.other" })          -- other type: ignored
add(T - 60, 5, 5, { tenant = tenant .. "-x" })      -- other tenant: ignored
add(T - 60, 7, 7, { path = "/health" })             -- not valid: ignored
assert(events.append(st, list))

local src = slo.events {
  store = st, type = "http.request", tenant = tenant,
  valid = function(ev) return ev.data.path ~= "/health" end,
  good = function(ev) return ev.data.code < 500 end,
}
local s = slo.define { name = "checkout-availability", objective = 1 - 1 / 32, period = "30d", source = src }
local e = assert(s:evaluate(T))
t.is_deeply(e.burn, { ["5m"] = 16, ["30m"] = 8, ["1h"] = 16, ["2h"] = 8, ["6h"] = 4, ["1d"] = 2, ["3d"] = 2, budget = 0.5 },
  "burn rate per window (by hand: 2/4, 2/8, 8/16, 8/32, 8/64, 8/128, 16/256, 16/1024 errors, x32)")
t.is(e.sli["5m"], 0.5, "SLI over 5m = 2/4"); t.is(e.sli["3d"], 240 / 256, "SLI over 3d = 240/256")
t.is_deeply(e.counts["1h"], { good = 8, valid = 16 }, "counts over 1h")
t.is_deeply(e.budget, { from = T - 30 * 86400, to = T, valid = 1024, good = 1008, total = 32, consumed = 16, remaining = 16, remaining_ratio = 0.5 },
  "budget: 1024 valid allow 32 errors, 16 spent, half remains")
local firing = {}
for _, a in ipairs(e.alerts) do firing[#firing + 1] = a.severity .. " " .. a.long .. "/" .. a.short .. "=" .. tostring(a.firing) end
t.is_deeply(firing, { "page 1h/5m=true", "page 6h/30m=false", "ticket 1d/2h=false", "ticket 3d/6h=true" },
  "page fires on 16,16 >= 14.4; 6h/30m (4,8) < 6; 1d/2h (2,8) < 3; ticket fires on 2,4 >= 1")
t.is(e.alerts[2].burn_short, 8, "an alert carries both burn rates (short above the factor)")

-- state changes ----------------------------------------------------------------------------
local ch = s:changes(e)
t.is(#ch, 2, "first evaluation: two alerts start firing")
t.is_deeply(ch[1], { type = "slo.burn", time = T, data = { slo = "checkout-availability", severity = "page", status = "firing",
  windows = { long = "1h", short = "5m" }, factor = 14.4, burn_rate = { long = 16, short = 16 } } }, "the page event")
t.is(ch[2].data.severity .. " " .. ch[2].data.windows.long, "ticket 3d", "the ticket event")
t.ok(events.validate(ch[1]), "an slo.burn event is a valid event for the log")
t.is(#s:changes(assert(s:evaluate(T))), 0, "no repeat while still firing")
-- 400 s later the 5m window holds nothing: no data, no page; the ticket windows still burn.
local later = assert(s:evaluate(T + 400))
t.is(later.burn["5m"], nil, "an empty window has no burn rate")
ch = s:changes(later)
t.is(#ch, 1, "one change")
t.is(ch[1] and ch[1].data.status .. " " .. ch[1].data.severity, "resolved page", "the page resolves when its short window empties")
t.is_deeply(s.state, { ["ticket:3d/6h"] = true }, "state holds only what fires")
t.is(#s:changes(later), 0, "resolved is said once")

-- custom alert table
local s2 = slo.define { name = "x", objective = 1 - 1 / 32, source = src, alerts = { { severity = "warn", long = "2h", short = "30m", factor = 8 } } }
local e2 = assert(s2:evaluate(T))
t.is(#e2.alerts, 1, "a custom alert table replaces the defaults")
t.ok(e2.alerts[1].firing, "8 >= 8 fires (inclusive)")
t.is_deeply(e2.burn, { ["30m"] = 8, ["2h"] = 8, budget = 0.5 }, "only the windows in use are measured")

-- window edges ---------------------------------------------------------------------------
local edge = "slo-edge-" .. run
list = {}
add(T - 300, 1, 1, { tenant = edge })       -- exactly 5m ago: inside [now-5m, now)
add(T - 301, 1, 0, { tenant = edge })
add(T, 3, 3, { tenant = edge }); add(T + 10, 3, 3, { tenant = edge }) -- at or after now: outside
assert(events.append(st, list))
local se = slo.define { name = "edge", objective = 1 - 1 / 32, source = slo.events { store = st, type = "http.request", tenant = edge,
  good = function(ev) return ev.data.code < 500 end } }
e = assert(se:evaluate(T))
t.is_deeply(e.counts["5m"], { good = 0, valid = 1 }, "a window is [now - length, now): its start is inside, now is not")
t.is_deeply(e.counts["30m"], { good = 1, valid = 2 }, "valid defaults to every event of the type")

-- calendar budget ------------------------------------------------------------------------
local cal = "slo-cal-" .. run
local M0 = 1698796800 -- 2023-11-01T00:00:00Z
list = {}
add(M0 + 60, 4, 0, { tenant = cal })   -- this month
add(M0 - 60, 4, 4, { tenant = cal })   -- last month: in the 3d window, not in the budget
assert(events.append(st, list))
local sc = slo.define { name = "cal", objective = 1 - 1 / 32, period = "month", source = slo.events { store = st, type = "http.request", tenant = cal,
  good = function(ev) return ev.data.code < 500 end } }
e = assert(sc:evaluate(M0 + 7200))
t.is_deeply(e.budget, { from = M0, to = M0 + 7200, valid = 4, good = 4, total = 0.125, consumed = 0, remaining = 0.125, remaining_ratio = 1 },
  "a calendar month budget starts at the month's first second")
t.is(e.burn["3d"], 16, "rolling alert windows still cross the month boundary (4 of 8 bad)")
local sw = slo.define { name = "wk", objective = 0.99, period = "week", source = sc.source }
t.is(assert(sw:evaluate(1700000000)).budget.from, 1699833600, "a week budget starts on Monday")

-- no data -----------------------------------------------------------------------------------
local sn = slo.define { name = "none", objective = 0.999, source = slo.events { store = st, type = "nothing.here", good = function() return true end } }
e = assert(sn:evaluate(T))
t.is(next(e.burn), nil, "no events: no burn rates")
t.is(e.budget.remaining_ratio, nil, "no events: no budget ratio")
t.is(#sn:changes(e), 0, "no data: no alert")

-- errors and misuse ---------------------------------------------------------------------------
local sb = slo.define { name = "boom", objective = 0.9, source = slo.events { store = st, type = "http.request", tenant = tenant,
  good = function() error("kaput") end } }
local r, err = sb:evaluate(T)
t.is(r, nil, "an error while counting returns nil")
t.like(err, "^slo boom: slo.events: .*kaput", "and names the SLO and the cause")
t.raises(function() slo.define { name = "a", objective = 1, source = src } end, "objective: number between 0 and 1", "objective 1 is refused")
t.raises(function() slo.define { name = "a", objective = 0.9 } end, "source: slo.events", "a source is required")
t.raises(function() slo.define { name = "a", objective = 0.9, source = src, period = "fortnight" } end, "period:", "a bad period is named")
t.raises(function() slo.define { name = "a", objective = 0.9, source = src, alerts = { { severity = "p", long = "1h", short = "5x", factor = 2 } } } end,
  "alerts%[1%]%.short", "a bad alert window is named")
t.raises(function() slo.define { name = "a", objective = 0.9, source = src, objectve = 1 } end, "unknown field 'objectve'", "typos are caught")
t.raises(function() slo.events { type = "x" } end, "good: function", "slo.events needs good")
t.raises(function() s:changes({}) end, "evaluation expected", "changes wants an evaluation")

st:close()
if tmp then for _, x in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. x) end end
t.done()
