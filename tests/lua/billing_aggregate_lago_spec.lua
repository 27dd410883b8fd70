-- steward.billing.aggregate against Lago: the cases of lago-api's
-- spec/services/billable_metrics/aggregations/{count,sum,max,latest,unique_count,weighted_sum}
-- _service_spec.rb and prorated_aggregations/unique_count_service_spec.rb, each case naming its
-- Lago context, same units (Lago's prorated and weighted results are ceil(5) / round(5) of the
-- exact value we return, so we compare after the same rounding). Where we differ on purpose the
-- case says so: a fractional JSON number is refused (send "4.5"), and a value that is not a
-- number is refused with its event and field named rather than silently not billed.
-- Lago reads a recurring metric's past from its event store; we carry the `state` a run returns.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local aggregate = require "steward.billing.aggregate"
local periods = require "steward.billing.periods"
local time = require "steward.time"

local DAY, HOUR = 86400, 3600
local function utc(y, m, d, h, mi, s)
  return assert(time.zone("UTC")):from_local({ year = y, month = m, day = d, hour = h or 0, min = mi or 0, sec = s or 0 })
end

local n = 0
local function ev(ts, props)
  n = n + 1
  return { transaction_id = "tx-" .. n, timestamp = ts, properties = props or {} }
end
local function rep(k, ts, props)
  local out = {}
  for i = 1, k do out[i] = ev(ts, props) end
  return out
end
local function cat(...)
  local out = {}
  for _, l in ipairs({ ... }) do for _, e in ipairs(l) do out[#out + 1] = e end end
  return out
end
local function run(m, events, p, opts) return assert(aggregate.run(m, events, p, opts)) end

-- A period as Lago's specs use "from_datetime .. to_datetime"
local P = { from = utc(2023, 6, 1), to = utc(2023, 7, 1) }
local near_end = P.to - DAY

-- count_service_spec.rb
local COUNT = { code = "api_calls", aggregation = "count" }
local r = run(COUNT, rep(4, near_end), P)
t.is(tostring(r.units), "4", "count: aggregates the events")
t.is(r.count, 4, "count: ... 4 events")
r = run(COUNT, rep(4, P.to + DAY), P)
t.is(tostring(r.units), "0", "count: when events are out of bounds")
r = run(COUNT, { ev(near_end, { total_count = 12, region = "europe" }), ev(near_end, { total_count = 8, region = "europe" }),
                 ev(near_end, { total_count = 12, region = "africa" }) }, P, { filters = { region = { "europe" } } })
t.is(tostring(r.units), "2", "count: when filters are given")

r = run(COUNT, cat(rep(3, near_end, { cloud = "aws" }), rep(1, near_end, { cloud = "gcp" })), P, { group_by = { "cloud" } })
t.is(tostring(r.groups.aws.units) .. " " .. tostring(r.groups.gcp.units), "3 1", "count: with presentation group keys (cloud)")
r = run(COUNT, { ev(near_end, { agent_name = "frodo", cloud = "aws" }), ev(near_end, { agent_name = "frodo", cloud = "aws" }),
                 ev(near_end, { agent_name = "frodo", cloud = "gcp" }), ev(near_end, { agent_name = "aragorn", cloud = "aws" }) },
        P, { group_by = { "agent_name", "cloud" } })
t.is(tostring(r.groups["frodo, aws"].units) .. " " .. tostring(r.groups["frodo, gcp"].units) .. " " ..
     tostring(r.groups["aragorn, aws"].units), "2 1 1", "count: ... with grouped_by (agent_name, cloud)")

-- sum_service_spec.rb
local SUM = { code = "sum_agg", aggregation = "sum", field = "total_count" }
local old = rep(2, P.from - 2 * 30 * DAY, { total_count = "2.5" }) -- Lago's 2.5 (a JSON float) travels as a string
local latest = rep(4, near_end, { total_count = 12 })
r = run(SUM, cat(old, latest), P)
t.is(tostring(r.units), "48", "sum: aggregates the events")
t.is(r.count, 4, "sum: ... count 4")
t.is(#r.per_event, 4, "sum: one value per event for percentage charges")
local RSUM = { code = "sum_agg", aggregation = "sum", field = "total_count", recurring = true }
local before = run(RSUM, old, { from = P.from - 3 * 30 * DAY, to = P.from })
r = run(RSUM, latest, P, { previous = before.state })
t.is(tostring(r.units), "53", "sum: when billable metric is recurring (the previous period's 5 carried)")
r = run(SUM, { ev(near_end, { total_count = 12, region = "europe" }), ev(near_end, { total_count = 8, region = "europe" }),
               ev(near_end, { total_count = 12, region = "africa" }) }, { from = P.from, to = P.to }, { filters = { region = { "europe" } } })
t.is(tostring(r.units), "20", "sum: when filters are given")
t.is(r.count, 2, "sum: ... count 2")
r = run({ code = "sum_agg", aggregation = "sum", field = "total_count", filters = { region = { "europe" } } },
        { ev(near_end, { total_count = 12, region = "europe" }), ev(near_end, { total_count = 8, region = "europe" }),
          ev(near_end, { total_count = 12, region = "africa" }) }, P)
t.is(tostring(r.units), "20", "sum: when filter is given (on the metric)")
r = run(SUM, rep(4, P.to + DAY, { total_count = 12 }), P)
t.is(tostring(r.units) .. "/" .. r.count, "0/0", "sum: when events are out of bounds")
r = run(SUM, rep(4, near_end, { other = 12 }), P)
t.is(tostring(r.units) .. "/" .. r.count, "0/0", "sum: when properties is not found on events: counts as zero")
r = run(SUM, cat(latest, { ev(near_end, { total_count = "4.5" }) }), P)
t.is(tostring(r.units), "52.5", "sum: when properties is a float (as a string)")
local _, err = aggregate.run(SUM, cat(latest, { ev(near_end, { total_count = 4.5 }) }), P)
t.like(err, "^events%[5%]%.properties%.total_count: 4%.5 is a JSON number with a fraction: send it as a string",
       "ours: a JSON float is refused, the event and field named")
_, err = aggregate.run(SUM, cat(latest, { ev(near_end, { total_count = "foo_bar" }) }), P)
t.like(err, "^events%[5%]%.properties%.total_count: \"foo_bar\" is not a decimal number %(transaction tx%-%d+%)",
       "ours: when properties is not a number, refused (Lago ignores the event)")

-- max_service_spec.rb
local MAX = { code = "max_agg", aggregation = "max", field = "total_count" }
local smalls = {}
for i = 1, 4 do smalls[i] = ev(P.to - 2 * DAY, { total_count = (i * 7) % 10 }) end
r = run(MAX, cat(smalls, { ev(near_end, { total_count = 12 }) }), P)
t.is(tostring(r.units) .. "/" .. r.count, "12/5", "max: aggregates the events")
r = run(MAX, rep(3, P.to + DAY, { total_count = 12 }), P)
t.is(tostring(r.units) .. "/" .. r.count, "0/0", "max: when events are out of bounds")
r = run(MAX, rep(3, near_end, {}), P)
t.is(tostring(r.units) .. "/" .. r.count, "0/0", "max: when properties is missing")
r = run(MAX, { ev(near_end, { total_count = "14.2" }) }, P)
t.is(tostring(r.units), "14.2", "max: when properties is a float")
r = run(MAX, { ev(near_end, { total_count = 12, region = "europe" }), ev(near_end, { total_count = 8, region = "europe" }),
               ev(near_end, { total_count = 20, region = "africa" }) }, P, { filters = { region = { "europe" } } })
t.is(tostring(r.units), "12", "max: when filters are given")

-- latest_service_spec.rb
local LATEST = { code = "latest_agg", aggregation = "latest", field = "total_count" }
r = run(LATEST, cat(rep(4, P.to - 2 * DAY, { total_count = 18 }), { ev(near_end, { total_count = 14 }) }), P)
t.is(tostring(r.units) .. "/" .. r.count, "14/5", "latest: aggregates the events")
r = run(LATEST, { ev(near_end, { total_count = "14.2" }) }, P)
t.is(tostring(r.units), "14.2", "latest: when properties is a float")
r = run(LATEST, { ev(near_end, { total_count = -5 }) }, P)
t.is(tostring(r.units), "0", "latest: when properties is negative: returns zero")
r = run(LATEST, { ev(near_end, {}) }, P)
t.is(tostring(r.units), "0", "latest: when properties is missing")
r = run(LATEST, { ev(P.to - 2, { total_count = 12, region = "europe" }), ev(P.to - 1, { total_count = 8, region = "europe" }),
                  ev(P.to - 1, { total_count = 12, region = "africa" }) }, P, { filters = { region = { "europe" } } })
t.is(tostring(r.units), "8", "latest: when filters are given")

-- unique_count_service_spec.rb: from 2022-07-09 to 2022-08-08 23:59:59
local UP = { from = utc(2022, 7, 9), to = utc(2022, 8, 9) }
local UC = { code = "unique_count_agg", aggregation = "unique_count", field = "unique_id" }
local RUC = { code = "unique_count_agg", aggregation = "unique_count", field = "unique_id", recurring = true }
local added_at = UP.from - 30 * DAY
local PREV = { from = UP.from - 60 * DAY, to = UP.from }
local carried = run(RUC, { ev(added_at, { unique_id = "u1" }) }, PREV).state
r = run(RUC, { ev(UP.from + 10 * DAY, { unique_id = "u2" }) }, UP, { previous = carried })
t.is(tostring(r.units), "2", "unique_count: when there is persisted event and event added in period")
r = run(UC, { ev(added_at, { unique_id = "u1" }), ev(UP.from + 10 * DAY, { unique_id = "u2" }) }, UP)
t.is(tostring(r.units), "1", "unique_count: ... but billable metric is not recurring: only the events of the period")
r = run(RUC, {}, UP, { previous = carried })
t.is(tostring(r.units), "1", "unique_count: with persisted metric on full period")
r = run(RUC, { ev(UP.to - 1 - 15 * DAY, { unique_id = "u1", operation_type = "remove" }) }, UP, { previous = carried })
t.is(tostring(r.units), "0", "unique_count: with persisted metrics terminated in the period")
r = run(RUC, { ev(UP.to - 1, { unique_id = "u1", operation_type = "remove" }) }, UP, { previous = carried })
t.is(tostring(r.units), "0", "unique_count: when removed on the last day of the period")
r = run(RUC, { ev(UP.from + 5 * DAY, { unique_id = "u3" }), ev(UP.from + 6 * DAY - 1, { unique_id = "u3", operation_type = "remove" }) }, UP)
t.is(tostring(r.units), "0", "unique_count: when added and removed the same day")

-- prorated_aggregations/unique_count_service_spec.rb (charges_duration 31)
local FULL = { from = UP.from, to = UP.to, days = 31 }
local function prorated(events, p, prev)
  return run(RUC, events, p or FULL, { previous = prev == nil and carried or prev or nil, prorated = true }).units
end
local function ceil5(x) return x:round(5, "ceiling") end
local function lago(num, den) return ceil5(decimal(num) / den) end
t.is(prorated({}), decimal(1), "prorated unique_count: with persisted metric on full period")
t.is(ceil5(prorated({ ev(UP.from + 10 * DAY, { unique_id = "u2" }) })), ceil5(1 + decimal(21) / 31),
     "prorated: when there is persisted event and event added in period: 1 + 21/31")
t.is(ceil5(prorated({}, periods.clip(FULL, nil, utc(2022, 7, 25)))), lago(16, 31),
     "prorated: when subscription was terminated in the period: 16/31")
t.is(ceil5(prorated({}, periods.clip(FULL, nil, utc(2022, 7, 24)))), lago(15, 31),
     "prorated: when subscription was upgraded in the period: 15/31")
t.is(ceil5(prorated({}, periods.clip(FULL, utc(2022, 8, 1)))), lago(8, 31),
     "prorated: when subscription was started in the period: 8/31")
t.is(ceil5(prorated({ ev(UP.from + 15 * DAY, { unique_id = "u4" }) }, nil, false)), lago(16, 31),
     "prorated: with persisted metrics added in the period: 16/31")
t.is(prorated({ ev(UP.from, { unique_id = "u4" }) }, nil, false), decimal(1),
     "prorated: when added on the first day of the period: the full duration")
t.is(ceil5(prorated({ ev(UP.to - 1 - 15 * DAY, { unique_id = "u1", operation_type = "remove" }) })), lago(16, 31),
     "prorated: with persisted metrics terminated in the period: 16/31")
t.is(prorated({ ev(UP.to - 1, { unique_id = "u1", operation_type = "remove" }) }), decimal(1),
     "prorated: when removed on the last day of the period: the full duration")
t.is(ceil5(prorated({ ev(UP.from + DAY, { unique_id = "u5" }), ev(UP.to - 1 - DAY, { unique_id = "u5", operation_type = "remove" }) }, nil, false)),
     lago(29, 31), "prorated: with persisted metrics added and terminated in the period: 29/31")
local a = UP.from + HOUR
t.is(ceil5(prorated({ ev(a, { unique_id = "u6" }), ev(a + HOUR, { unique_id = "u6", operation_type = "remove" }),
                      ev(a + 2 * HOUR, { unique_id = "u6" }), ev(a + 3 * HOUR, { unique_id = "u6", operation_type = "remove" }) }, nil, false)),
     lago(1, 31), "prorated: when added and removed the same day multiple times: 1/31")
local many = {}
for _, d in ipairs({ 0, 5, 10 }) do
  many[#many + 1] = ev(a + d * DAY, { unique_id = "u7" })
  many[#many + 1] = ev(a + d * DAY + HOUR, { unique_id = "u7", operation_type = "remove" })
end
t.is(ceil5(prorated(many, nil, false)), lago(3, 31), "prorated: when added and removed the same day multiple days: 3/31")
t.is(ceil5(prorated({ ev(UP.from + DAY, { unique_id = "u1" }), ev(UP.from + DAY + HOUR, { unique_id = "u1" }),
                      ev(UP.from + DAY + 2 * HOUR, { unique_id = "u1", operation_type = "remove" }),
                      ev(UP.from + DAY + 3 * HOUR, { unique_id = "u1" }),
                      ev(UP.from + 3 * DAY + HOUR, { unique_id = "u1" }),
                      ev(UP.from + 3 * DAY + 2 * HOUR, { unique_id = "u1", operation_type = "remove" }) })),
     lago(4, 31), "prorated: when added and removed several times a day during multiple days: 4/31")

-- prorated_aggregations/sum_service_spec.rb: a recurring sum, May 2023 (charges_duration 31),
-- 2 x 2.5 persisted before the period and 2 x 12 on May 26th
local MAY = { from = utc(2023, 5, 1), to = utc(2023, 6, 1), days = 31 }
local PSUM = { code = "sum_agg", aggregation = "sum", field = "total_count", recurring = true }
local persisted = run(PSUM, rep(2, utc(2023, 3, 1), { total_count = "2.5" }), { from = utc(2022, 12, 1), to = MAY.from }).state
local may26 = rep(2, MAY.from + 25 * DAY, { total_count = 12 })
r = run(PSUM, may26, MAY, { previous = persisted, prorated = true })
t.is(ceil5(r.units), decimal("9.64517"), "prorated sum: aggregates the events: 5 + (12*6/31) + (12*6/31)")
t.is(tostring(r.full_units), "29", "... the unprorated units (Lago's full_units_number)")
t.is(r.count, 2, "... the period's events")
r = run(PSUM, cat(may26, { ev(MAY.from + 30 * DAY, { total_count = "4.5" }) }), MAY, { previous = persisted, prorated = true })
t.is(ceil5(r.units), decimal("9.64517") + decimal("0.14516"), "prorated sum: when properties is a float: + 4.5 * 1/31")
r = run(PSUM, rep(2, MAY.to + DAY, { total_count = 12 }), MAY, { previous = persisted, prorated = true })
t.is(tostring(r.units), "5", "prorated sum: when events are out of bounds: the persisted 5")
r = run(PSUM, {}, periods.clip(MAY, nil, utc(2023, 5, 16)), { previous = persisted, prorated = true })
t.is(tostring(r.units), "75/31", "prorated sum, terminated on the 16th: the persisted value for 15 days of 31 (persisted_pro_rata)")

-- weighted_sum_service_spec.rb: August 2023 (31 days)
local AUG = { from = utc(2023, 8, 1), to = utc(2023, 9, 1) }
local WS = { code = "ws", aggregation = "weighted_sum", field = "value", weighted_interval = "seconds" }
local function at(h, mi) return AUG.from + h * HOUR + (mi or 0) * 60 end
r = run(WS, { ev(at(0), { value = 2 }), ev(at(1), { value = 3 }), ev(at(1, 30), { value = 1 }), ev(at(2), { value = -4 }),
              ev(at(4), { value = -2 }), ev(at(5), { value = 10 }), ev(at(5, 30), { value = -10 }) }, AUG)
t.is(tostring(r.units:round(5, "half_up")), "0.02218", "weighted_sum: aggregates the events (0.02218)")
t.is(r.count, 7, "weighted_sum: ... count 7")
r = run(WS, { ev(at(0), { value = 2, region = "eu" }), ev(at(1), { value = 3, region = "us" }), ev(at(2), { value = -1, region = "eu" }) },
        AUG, { group_by = { "region" } })
t.is(tostring(r.groups.eu.units:round(5, "half_up")), "1.00269", "weighted_sum: when using presentation_by: eu 1.00269")
t.is(tostring(r.groups.us.units:round(5, "half_up")), "2.99597", "weighted_sum: ... us 2.99597")
r = run(WS, { ev(at(0), { value = 1000 }) }, AUG)
t.is(tostring(r.units), "1000", "weighted_sum: with a single event")
r = run(WS, {}, AUG)
t.is(tostring(r.units) .. "/" .. r.count, "0/0", "weighted_sum: with no events")
r = run(WS, { ev(at(0), { value = 3 }), ev(at(0), { value = 3 }) }, AUG)
t.is(tostring(r.units) .. "/" .. r.count, "6/2", "weighted_sum: with events with the same timestamp")
local RWS = { code = "ws", aggregation = "weighted_sum", field = "value", recurring = true }
r = run(RWS, {}, AUG, { previous = { level = "1000" } })
t.is(tostring(r.units), "1000", "weighted_sum: when billable metric is recurring: the persisted value as initial value")
t.is(r.state.level, "1000", "... and carried on")
-- apply_rounding_service_spec.rb: units 123.456
local ROUND = {
  { "with round function", "round", 2, "123.46" }, { "round without precision", "round", nil, "123" },
  { "round with negative precision", "round", -2, "100" },
  { "with ceil function", "ceil", 2, "123.46" }, { "ceil without precision", "ceil", nil, "124" },
  { "ceil with negative precision", "ceil", -2, "200" },
  { "with floor function", "floor", 2, "123.45" }, { "floor without precision", "floor", nil, "123" },
  { "floor with negative precision", "floor", -2, "100" },
}
for _, c in ipairs(ROUND) do
  r = run({ code = "r", aggregation = "sum", field = "v", rounding_function = c[2], rounding_precision = c[3] },
          { ev(near_end, { v = "123.456" }) }, P)
  t.is(tostring(r.units), c[4], "ApplyRoundingService " .. c[1] .. ": " .. c[4])
end
r = run({ code = "r", aggregation = "sum", field = "v", rounding_function = "round" }, { ev(near_end, { v = "2.5" }) }, P)
t.is(tostring(r.units), "3", "round is half up (Ruby's BigDecimal#round)")
t.done()
