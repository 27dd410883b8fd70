-- steward.billing.aggregate beyond Lago's cases: aggregation does not depend on the order the
-- events arrive in (random streams shuffled, every aggregation, grouped or not; the seed is
-- printed, BILLING_SEED replays one); a recurring metric carried period by period gives what
-- one run over the whole span gives; check() names the field; custom formulas are sandboxed,
-- bounded and name their metric; JSON numbers and strings as values; group_by and filters.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local aggregate = require "steward.billing.aggregate"
local json = require "steward.json"

local seed = tonumber(os.getenv("BILLING_SEED") or "") or os.time()
t.diag("seed " .. seed)
math.randomseed(seed)
local random = math.random

local P = { from = 1767225600, to = 1767225600 + 31 * 86400 } -- January 2026, UTC

local function stream(k)
  local out = {}
  for i = 1, k do
    local v = random(-50, 200)
    out[i] = { transaction_id = ("t%04d"):format(i), timestamp = P.from + random(0, 31 * 86400 - 1) + (i % 3 == 0 and 0.25 or 0),
               properties = { v = random(2) == 1 and v or (v .. "." .. random(0, 99)), id = "u" .. random(1, 12),
                              operation_type = random(4) == 1 and "remove" or "add", region = ({ "eu", "us", "ap" })[random(3)] } }
  end
  -- a few share a timestamp: the order among them must not matter either
  for i = 2, k, 7 do out[i].timestamp = out[i - 1].timestamp end
  return out
end

local function shuffled(list)
  local c = {}
  for i, e in ipairs(list) do c[i] = e end
  for i = #c, 2, -1 do
    local j = random(i)
    c[i], c[j] = c[j], c[i]
  end
  return c
end

local function summary(r)
  local parts = { tostring(r.units), tostring(r.count) }
  for _, v in ipairs(r.per_event) do parts[#parts + 1] = tostring(v) end
  if r.groups then
    local keys = {}
    for k in pairs(r.groups) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(r.groups[k].units) end
  end
  return table.concat(parts, " ")
end

local METRICS = {
  { code = "c", aggregation = "count" },
  { code = "s", aggregation = "sum", field = "v" },
  { code = "m", aggregation = "max", field = "v" },
  { code = "l", aggregation = "latest", field = "v" },
  { code = "u", aggregation = "unique_count", field = "id" },
  { code = "w", aggregation = "weighted_sum", field = "v" },
  { code = "x", aggregation = "custom", custom = "function(state, e) local n = (state or 0) + 1 return n, n end" },
}
local events = stream(400)
for _, m in ipairs(METRICS) do
  for _, opts in ipairs({ {}, { group_by = { "region" } }, m.aggregation == "unique_count" and { prorated = true } or nil }) do
    local want = summary(assert(aggregate.run(m, events, P, opts)))
    local same = true
    for _ = 1, 5 do
      if summary(assert(aggregate.run(m, shuffled(events), P, opts))) ~= want then same = false end
    end
    t.ok(same, m.aggregation .. (opts.group_by and " grouped" or "") .. (opts.prorated and " prorated" or "") ..
               ": the same result in any arrival order")
  end
end

-- recurring: carried month by month = one run over the whole year
local year = { from = P.from, to = P.from + 365 * 86400 }
local long = {}
for i = 1, 300 do
  long[i] = { transaction_id = "y" .. i, timestamp = year.from + random(0, 365 * 86400 - 1),
              properties = { v = tostring(random(-9, 30)), id = "u" .. random(1, 20), operation_type = random(3) == 1 and "remove" or "add" } }
end
for _, m in ipairs({ { code = "rs", aggregation = "sum", field = "v", recurring = true },
                     { code = "ru", aggregation = "unique_count", field = "id", recurring = true } }) do
  local whole = assert(aggregate.run(m, long, year))
  local state, last
  local from = year.from
  for k = 1, 12 do
    local to = k == 12 and year.to or from + 30 * 86400
    -- each month's run sees only its own events plus the state carried, as the invoicing does
    last = assert(aggregate.run(m, long, { from = from, to = to }, { previous = state and json.decode(json.encode(state)) }))
    state = last.state
    from = to
  end
  t.is(tostring(last.units), tostring(whole.units), m.aggregation .. " recurring: twelve months carried (through JSON) = one run over the year")
end
local ws = { code = "rw", aggregation = "weighted_sum", field = "v", recurring = true }
local jan = assert(aggregate.run(ws, { { timestamp = P.from + 15.5 * 86400, properties = { v = "10" } } }, P))
t.is(jan.units * 31, decimal("155"), "weighted_sum: 10 held for 15.5 of 31 days")
local feb = assert(aggregate.run(ws, {}, { from = P.to, to = P.to + 28 * 86400 }, { previous = jan.state }))
t.is(tostring(feb.units), "10", "weighted_sum recurring: the level carried into a quiet month")

local periods = require "steward.billing.periods"
local aug = periods.bounds("monthly", 0, P.from + 220 * 86400)
local cut = periods.clip(aug, nil, aug.from + 15 * 86400)
local part = assert(aggregate.run(ws, {}, cut, { previous = { level = "10" } }))
t.is(tostring(part.units), "150/31", "weighted_sum over a terminated period: measured against the whole period (Lago's charges_duration)")
local paris = periods.bounds("monthly", 0, P.from + 80 * 86400, { timezone = "Europe/Paris" })
t.is(paris.seconds, 31 * 86400 - 3600, "March in Paris is an hour short")
local level = assert(aggregate.run(ws, {}, paris, { previous = { level = "7" } }))
t.is(tostring(level.units), "7", "weighted_sum: a level held all through a DST month is that level")

-- check(): each error names the field
local BAD = {
  { {}, "^code:" },
  { { code = "a b", aggregation = "count" }, "^code:" },
  { { code = "a", aggregation = "avg" }, "^aggregation: one of count, sum" },
  { { code = "a", aggregation = "sum" }, "^field: the property to aggregate is required for sum" },
  { { code = "a", aggregation = "max", field = "v", recurring = true }, "^recurring: a max metric cannot be recurring" },
  { { code = "a", aggregation = "count", recurring = "yes" }, "^recurring: boolean expected" },
  { { code = "a", aggregation = "count", filters = { region = {} } }, "^filters%.region: a non%-empty list" },
  { { code = "a", aggregation = "sum", field = "v", weighted_interval = "seconds" }, "^weighted_interval:" },
  { { code = "a", aggregation = "custom", custom = "function(" }, "^custom: metric:a:1:" },
  { { code = "a", aggregation = "custom", custom = "return 42" }, "^custom: the source must be a function" },
  { { code = "a", aggregation = "custom" }, "^custom: Lua source expected" },
  { { code = "a", aggregation = "sum", field = "v", custom = "function() end" }, "^custom: only for aggregation" },
  { { code = "a", aggregation = "sum", field = "v", rounding_function = "truncate" }, "^rounding_function: round, ceil or floor" },
  { { code = "a", aggregation = "sum", field = "v", rounding_function = "round", rounding_precision = 1.5 }, "^rounding_precision: an integer" },
  { { code = "a", aggregation = "sum", field = "v", rounding_precision = 2 }, "^rounding_precision: only with a rounding_function" },
}
for _, c in ipairs(BAD) do
  local ok, err = aggregate.check(c[1])
  t.ok(ok == nil and tostring(err):find(c[2]) ~= nil, "check refuses: " .. c[2] .. (ok == nil and "" or " (accepted)") ..
       (err and not tostring(err):find(c[2]) and (" got " .. err) or ""))
end
t.ok(aggregate.check({ code = "storage.gb", aggregation = "weighted_sum", field = "gb", recurring = true, weighted_interval = "seconds" }),
     "check accepts a recurring weighted_sum")
t.raises(function() aggregate.run({ code = "a", aggregation = "avg" }, {}, P) end, "aggregate%.run: metric: aggregation:",
         "run raises on a metric check refuses")
t.raises(function() aggregate.run({ code = "a", aggregation = "count" }, {}, { from = 2, to = 1 }) end, "argument #3: period",
         "run raises on a bad period")
t.raises(function() aggregate.run({ code = "a", aggregation = "max", field = "v" }, {}, P, { prorated = true }) end,
         "only sum and unique_count have prorated units", "prorated is sum's and unique_count's")

-- values
local SUM = { code = "s", aggregation = "sum", field = "v" }
local function units(vals)
  local evs = {}
  for i, v in ipairs(vals) do evs[i] = { timestamp = P.from + i, properties = { v = v } } end
  local r, err = aggregate.run(SUM, evs, P)
  return r and tostring(r.units) or err
end
t.is(units({ "0.1", "0.2" }), "0.3", "strings are exact decimals: 0.1 + 0.2 = 0.3")
t.is(units({ 3, "1e-3" }), "3.001", "an integer JSON number and an exponent string")
t.is(units({ 2 ^ 53 + 2 }), "events[1].properties.v: 9.007199254741e+15 is beyond 2^53: send it as a string", "past 2^53 refused")
t.is(units({ { 1 } }), "events[1].properties.v: a number or a decimal string expected, got table", "a table refused")
t.is(units({ json.null, "2" }), "2", "a JSON null is no value")
t.is(select(2, aggregate.value(SUM, { properties = { v = 0.5 } })), "event.properties.v: 0.5 is a JSON number with a fraction: " ..
     "send it as a string (\"0.5\") so it stays exact", "value(): the check the usage API makes at ingestion")
t.is(tostring(aggregate.value(SUM, { properties = { v = "12.50" } })), "12.5", "value(): a decimal string")
t.is(aggregate.value(SUM, { properties = {} }), nil, "value(): no such property is no usage")
local _, operr = aggregate.run({ code = "u", aggregation = "unique_count", field = "id" },
                                { { timestamp = P.from, properties = { id = "a", operation_type = "delete" } } }, P)
t.is(operr, "events[1].properties.operation_type: \"add\" or \"remove\" expected, got delete", "a bad operation_type named")

-- group_by and filters
local evs = {
  { timestamp = P.from + 1, properties = { v = "1.5", region = "eu", cloud = "aws" } },
  { timestamp = P.from + 2, properties = { v = "2", region = "eu", cloud = "gcp" } },
  { timestamp = P.from + 3, properties = { v = "4", region = "us", cloud = "aws" } },
  { timestamp = P.from + 4, properties = { v = "8", cloud = "aws" } },
}
local g = assert(aggregate.run(SUM, evs, P, { group_by = { "region", "cloud" } }))
t.is(tostring(g.groups["eu, aws"].units), "1.5", "group_by two properties: the key joins their values")
t.is(g.groups["eu, aws"].values.cloud, "aws", "... and values names them")
t.is(tostring(g.groups[", aws"].units), "8", "an event without a group property: an empty value in the key")
t.is(tostring(g.units), "15.5", "the groups sum to the units")
local f = assert(aggregate.run({ code = "s", aggregation = "sum", field = "v", filters = { cloud = { "aws" } } }, evs, P,
                               { filters = { region = { "eu", "us" } } }))
t.is(tostring(f.units), "5.5", "the metric's filter and the charge's filter both apply")

-- custom formulas: sandboxed, bounded, named
local function custom(src, list, opts)
  return aggregate.run({ code = "cx", aggregation = "custom", custom = src }, list or evs, P, opts)
end
local r = assert(custom([[function(state, e)
  local tier = decimal(e.properties.v) > decimal(3) and decimal("0.5") or decimal(1)
  return (state or 0) + 1, decimal(e.properties.v) * tier
end]]))
t.is(tostring(r.units), "9.5", "a custom formula with decimals: 1.5 + 2 + 4*0.5 + 8*0.5")
t.is(tostring(r.per_event[3]), "2", "... its units per event")
t.is(r.state, nil, "... a metered custom metric carries nothing")
local rec = { code = "cr", aggregation = "custom", recurring = true, custom = "return function(s, e) s = s or {n = 0} s.n = s.n + 1 return s, s.n end" }
local r1 = assert(aggregate.run(rec, evs, P))
local r2 = assert(aggregate.run(rec, evs, P, { previous = r1.state }))
t.is(tostring(r2.units), tostring(5 + 6 + 7 + 8), "a recurring custom metric's state carries into the next run (a chunk returning the function)")
local _, e1 = custom("function(s, e) return s, os.time() end")
t.like(e1, "^metric:cx:1: attempt to index global 'os'", "no os in a formula, the metric named")
local _, e2 = custom("function(s, e) return s, require('steward.fs') end")
t.like(e2, "global 'require'", "no require")
local _, e3 = custom("function(s, e) return s, string.dump(print) end")
t.like(e3, "field 'dump'", "no string.dump")
local _, e4 = custom("function(s, e) return s, math.random() end")
t.like(e4, "field 'random'", "no math.random (a bill must not change between two runs)")
assert(custom("function(s, e) decimal.new = function() return decimal(0) end string.format = nil math.floor = nil return s, decimal('1') end"))
t.is(tostring(decimal.new("2")), "2", "a formula cannot change steward.decimal for the daemon")
t.ok(string.format and math.floor, "... nor string or math")
local _, e5 = custom("function(s, e) while true do end end")
t.like(e5, "^metric:cx: custom aggregation: cpu budget exceeded %(1%.0004 s%)", "an endless loop is stopped by the CPU budget (1 s + 100 us per event)")
local _, e6 = custom("function(s, e) local s = 'x' for i = 1, 40 do s = s .. s end return s, 1 end")
t.like(e6, "^metric:cx: custom aggregation: memory budget exceeded", "a doubling string is stopped by the memory budget, not the daemon's heap")
local _, e7 = custom("function(s, e) return s, 0.5 end")
t.like(e7, "^metric cx: the units of event 1: 0%.5 is a JSON number with a fraction", "fractional Lua units refused, the metric named")
local _, e8 = custom("function(s, e) error('no plan for ' .. e.properties.region) end")
t.like(e8, "^metric:cx:1: no plan for eu", "a formula's own error names the metric")
local small = { code = "cb", aggregation = "custom", custom = "function(s, e) for i = 1, 1e5 do end return s, 1 end" }
t.ok(aggregate.run(small, evs, P), "a formula within its budget runs")
local _, e9 = aggregate.run({ code = "cb", aggregation = "custom", custom = "function(s, e) while true do end end" }, evs, P,
                            { budget = { cpu = 0.05 } })
t.like(e9, "cpu budget exceeded %(0%.05 s%)", "opts.budget sets it")
-- in a plain coroutine the guard cannot run: VM instructions are counted instead, pcall-proof
local co = coroutine.wrap(function()
  return aggregate.run({ code = "cc", aggregation = "custom",
                         custom = "function(s, e) local function f() while true do end end local ok = pcall or function(g) g() end ok(f) return s, 1 end" },
                       evs, P, { budget = { instructions = 200000 } })
end)
local _, e10 = co()
t.like(e10, "^metric:cc:1: custom aggregation over its budget of 200000 instructions", "in a plain coroutine: an instruction budget")
t.is(debug.gethook(), nil, "no hook is left behind")
-- inside a policy's guarded run the policy's own budgets bound the formula
local guard = require "steward.runtime.guard"
local gok, gr = guard.run({ name = "policy", cpu = 5 }, function() return aggregate.run(small, evs, P) end)
t.ok(gok and gr and tostring(gr.units) == "4", "inside a guarded run, a formula runs under the run's budgets")
local sok, serr, kind = guard.run({ name = "policy", cpu = 0.05 }, function()
  return aggregate.run({ code = "cd", aggregation = "custom", custom = "function(s, e) while true do end end" }, evs, P)
end)
t.ok(not sok and kind == "cpu", "... and the run's CPU budget stops a runaway one (" .. tostring(serr) .. ")")
local after = assert(aggregate.run({ code = "s", aggregation = "sum", field = "v" }, evs, P))
t.is(tostring(after.units), "15.5", "after a stopped formula, everything else runs (the hook is gone)")
t.done()
