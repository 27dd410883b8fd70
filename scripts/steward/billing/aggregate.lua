-- steward.billing.aggregate: billable metrics, Lago's aggregations over one billing period's
-- usage events, in exact decimals: count, sum, max, unique_count (add/remove, prorated),
-- latest, weighted_sum (time-weighted) and custom Lua. Pure: the caller reads the events
-- (steward.billing.usage) and keeps the recurring state a run returns for the next period.
-- Events may come in any order: they are sorted by (timestamp, transaction_id) first.
local decimal = require "steward.decimal"
local periods = require "steward.billing.periods"
local custom = require "steward.billing.aggregate_custom"
local json = require "steward.json"

local type, pairs, ipairs, tostring, tonumber, error, pcall = type, pairs, ipairs, tostring, tonumber, error, pcall
local floor = math.floor
local sort, concat = table.sort, table.concat

local M = {}

M.AGGREGATIONS = { "count", "sum", "max", "unique_count", "latest", "weighted_sum", "custom" }
local KNOWN = {}
for _, a in ipairs(M.AGGREGATIONS) do KNOWN[a] = true end
-- Lago lets only these carry their value from one period into the next
local RECURRING = { sum = true, unique_count = true, weighted_sum = true, custom = true }

-- Lago's rounding_function: Ruby's BigDecimal#round (half up), #ceil, #floor
local ROUNDING = { round = "half_up", ceil = "ceiling", floor = "floor" }
local MAX_SAFE = 2 ^ 53
local ZERO, ONE = decimal.new(0), decimal.new(1)

local function is_list_of_values(t)
  if type(t) ~= "table" or #t == 0 then return false end
  for k, v in pairs(t) do
    if type(k) ~= "number" then return false end
    if type(v) ~= "string" and not (type(v) == "number" and v == floor(v)) then return false end
  end
  return true
end

-- filters = { prop = {v, ...} }: an event matches when each prop's value is one of its list.
local function check_filters(f, where)
  if f == nil then return true end
  if type(f) ~= "table" then return nil, where .. ": table of property = {values} expected" end
  for prop, values in pairs(f) do
    if type(prop) ~= "string" or prop == "" then return nil, where .. ": property names must be strings" end
    if not is_list_of_values(values) then
      return nil, where .. "." .. prop .. ": a non-empty list of string values expected"
    end
  end
  return true
end

-- check(metric) -> true, or nil, "field: reason"
function M.check(m)
  if type(m) ~= "table" then return nil, "metric: table expected, got " .. type(m) end
  if type(m.code) ~= "string" or not m.code:match("^[%w_%.%-]+$") then
    return nil, "code: letters, digits, _ . - expected, got " .. tostring(m.code)
  end
  if m.name ~= nil and type(m.name) ~= "string" then return nil, "name: string expected" end
  if not KNOWN[m.aggregation] then
    return nil, "aggregation: one of " .. concat(M.AGGREGATIONS, ", ") .. " expected, got " .. tostring(m.aggregation)
  end
  if m.aggregation ~= "count" and m.aggregation ~= "custom" then
    if type(m.field) ~= "string" or m.field == "" then
      return nil, "field: the property to aggregate is required for " .. m.aggregation
    end
  elseif m.field ~= nil and type(m.field) ~= "string" then
    return nil, "field: string expected"
  end
  if m.recurring ~= nil and type(m.recurring) ~= "boolean" then return nil, "recurring: boolean expected" end
  if m.recurring and not RECURRING[m.aggregation] then
    return nil, "recurring: a " .. m.aggregation .. " metric cannot be recurring (only sum, unique_count, weighted_sum, custom)"
  end
  if m.weighted_interval ~= nil and (m.aggregation ~= "weighted_sum" or m.weighted_interval ~= "seconds") then
    return nil, "weighted_interval: \"seconds\" expected, and only for weighted_sum"
  end
  local ok, err = check_filters(m.filters, "filters")
  if not ok then return nil, err end
  if m.rounding_function ~= nil and not ROUNDING[m.rounding_function] then
    return nil, "rounding_function: round, ceil or floor expected, got " .. tostring(m.rounding_function)
  end
  local rp = m.rounding_precision
  if rp ~= nil and (type(rp) ~= "number" or rp ~= floor(rp) or rp < -20 or rp > 100) then
    return nil, "rounding_precision: an integer from -20 to 100 expected, got " .. tostring(rp)
  end
  if rp ~= nil and m.rounding_function == nil then
    return nil, "rounding_precision: only with a rounding_function"
  end
  if m.aggregation == "custom" then
    local fn, cerr = custom.compile(m.code, m.custom)
    if not fn then return nil, cerr end
  elseif m.custom ~= nil then
    return nil, "custom: only for aggregation = \"custom\""
  end
  return true
end

-- The exact value of a property: strings parse as decimals; a JSON number must be an integer,
-- since a fraction has already lost its exact value in a double.
local function parse_value(v, where)
  local tv = type(v)
  if tv == "string" then
    local ok, d = pcall(decimal.new, v)
    if not ok then return nil, where .. ": " .. ("%q"):format(v):sub(1, 60) .. " is not a decimal number" end
    return d
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil, where .. ": " .. tostring(v) .. " is not a number" end
    if v ~= floor(v) then
      return nil, where .. ": " .. tostring(v) .. " is a JSON number with a fraction: send it as a string (\"" ..
                  tostring(v) .. "\") so it stays exact"
    end
    if v > MAX_SAFE or v < -MAX_SAFE then
      return nil, where .. ": " .. tostring(v) .. " is beyond 2^53: send it as a string"
    end
    return decimal.new(v)
  elseif decimal.is(v) then
    return v
  end
  return nil, where .. ": a number or a decimal string expected, got " .. tv
end

local function prop_string(v)
  if v == nil then return nil end
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then return v == floor(v) and ("%d"):format(v) or tostring(v) end
  if tv == "boolean" or decimal.is(v) then return tostring(v) end
  return nil
end

local function matches(props, filters)
  if not filters then return true end
  for prop, values in pairs(filters) do
    local v = prop_string(props[prop])
    if v == nil then return false end
    local hit = false
    for _, w in ipairs(values) do
      if prop_string(w) == v then hit = true; break end
    end
    if not hit then return false end
  end
  return true
end

-- value(metric, event [, where]) -> the decimal its field carries (unique_count: the value as a
-- string); nil when the event has no such property (it is not aggregated); nil, err for a
-- value that cannot be billed exactly. For the usage API, which refuses such an event when it
-- arrives.
local function value_of(m, props, where)
  if not m.field then return nil end
  local v = props[m.field]
  if v == nil or v == json.null then return nil end
  if m.aggregation == "unique_count" then
    local s = prop_string(v)
    if not s then return nil, where .. ".properties." .. m.field .. ": a string or an integer expected" end
    return s
  end
  return parse_value(v, where .. ".properties." .. m.field)
end

function M.value(m, ev, where)
  local props = type(ev) == "table" and ev.properties or nil
  if type(props) ~= "table" then return nil, (where or "event") .. ".properties: table expected" end
  return value_of(m, props, where or "event")
end

local function check_period(p, fn)
  if type(p) ~= "table" or type(p.from) ~= "number" or type(p.to) ~= "number" or p.to < p.from then
    error(fn .. ": argument #3: period {from, to} (epoch seconds, from <= to) expected", 3)
  end
end

local function ms(t) return floor(t * 1000 + 0.5) end

-- The period's events, validated and in a canonical order.
local function select_events(m, events, p, opts)
  if type(events) ~= "table" then error("aggregate.run: argument #2: list of events expected, got " .. type(events), 3) end
  local out = {}
  for i, ev in ipairs(events) do
    local where = "events[" .. i .. "]"
    if type(ev) ~= "table" then return nil, where .. ": table expected" end
    local ts = ev.timestamp
    if type(ts) ~= "number" or ts ~= ts then return nil, where .. ".timestamp: epoch seconds expected" end
    local props = ev.properties or {}
    if type(props) ~= "table" then return nil, where .. ".properties: table expected" end
    if ts >= p.from and ts < p.to and matches(props, m.filters) and matches(props, opts.filters) then
      local v, err = value_of(m, props, where)
      if err then
        return nil, err .. (ev.transaction_id ~= nil and " (transaction " .. tostring(ev.transaction_id) .. ")" or "")
      end
      local op = props.operation_type
      if m.aggregation == "unique_count" and op ~= nil and op ~= "add" and op ~= "remove" then
        return nil, where .. ".properties.operation_type: \"add\" or \"remove\" expected, got " .. tostring(op)
      end
      -- an event without the field is not this metric's usage (Lago counts only events carrying it)
      if v ~= nil or m.aggregation == "count" or m.aggregation == "custom" then
        out[#out + 1] = { ev = ev, ts = ts, ms = ms(ts), id = tostring(ev.transaction_id or ""), v = v, props = props,
                          op = op or "add", key = v ~= nil and tostring(v) or "" }
      end
    end
  end
  local function before(a, b)
    if a.ms ~= b.ms then return a.ms < b.ms end
    if a.id ~= b.id then return a.id < b.id end
    return a.key < b.key
  end
  -- the store hands events over in order: a look costs less than a sort
  for i = 2, #out do
    if before(out[i], out[i - 1]) then
      sort(out, before)
      break
    end
  end
  return out
end

-- ---- the aggregations: fn(m, list, p, prev, opts) -> units, per_event, state ----

local function count(_, list)
  local per = {}
  for i = 1, #list do per[i] = ONE end
  return decimal.new(#list), per
end

-- The local day of t counted from the period's first day (1), in the run's zone.
local function day_in(p, t, tz) return periods.days(p.from, t + 0.001, tz) end

-- sum; prorated (Lago's prorated sum, for recurring charges billed by the day): the value
-- carried in counts for the days of the period billed, each event's value for the days from
-- its own (whole) to the end, over the whole period's days.
local function sum(m, list, p, prev, opts)
  local per = {}
  for i = 1, #list do per[i] = list[i].v end
  local total = #per > 0 and decimal.sum(per) or ZERO -- one C loop, no intermediate values
  local carried = m.recurring and prev and prev.units and decimal.new(prev.units) or nil
  if carried then total = total + carried end
  local state = m.recurring and { units = decimal.string(total) } or nil
  if not opts.prorated then return total, per, state end
  local tz = opts.timezone or p.timezone or "UTC"
  local days = periods.days(p.from, p.to, tz)
  local whole = p.days or days
  if whole <= 0 then return ZERO, per, state, total end
  local terms = { carried and carried * days or ZERO }
  for i, e in ipairs(list) do terms[i + 1] = e.v * (days - day_in(p, e.ts, tz) + 1) end
  return decimal.sum(terms) / whole, per, state, total
end

local function max(_, list)
  local best, per = nil, {}
  for _, e in ipairs(list) do
    if e.v ~= nil then
      per[#per + 1] = e.v
      if best == nil or e.v > best then best = e.v end
    end
  end
  return best or ZERO, per
end

local function latest(_, list)
  local last, per = nil, {}
  for _, e in ipairs(list) do
    if e.v ~= nil then
      per[#per + 1] = e.v
      last = e.v
    end
  end
  -- Lago bills a negative latest value as zero
  if last == nil or last < ZERO then return ZERO, per end
  return last, per
end

-- unique_count: a value is active from its "add" to its "remove"; a repeated add or a remove of
-- an inactive value changes nothing. Units are the values active at the end of the period
-- (Lago sums +1 per effective add and -1 per effective remove). Prorated: each value counts
-- the local days it was active in the period (the day of its add and of its remove both
-- whole; a remove undone by an add the same day is no gap) over the period's days.
local function unique_count(m, list, p, prev, opts)
  local active, since = {}, {}
  if m.recurring and prev and type(prev.active) == "table" then
    for v, t in pairs(prev.active) do active[v] = true; since[v] = tonumber(t) or p.from end
  end
  local per, n = {}, 0
  for _ in pairs(active) do n = n + 1 end
  local spans -- prorated: value -> list of {first_day, last_day}
  local tz = opts.timezone or p.timezone or "UTC"
  if opts.prorated then spans = {} end
  local function day(t) return day_in(p, t, tz) end
  local open = {}
  if spans then for v in pairs(active) do open[v] = 1; spans[v] = {} end end
  for _, e in ipairs(list) do
    if e.v ~= nil then
      local v = e.v
      if e.op == "add" then
        if active[v] then
          per[#per + 1] = ZERO
        else
          active[v], since[v] = true, e.ts
          n = n + 1
          per[#per + 1] = ONE
          if spans then
            local d = day(e.ts)
            local s = spans[v]
            if s and #s > 0 and s[#s][2] == d then
              open[v] = table.remove(s)[1] -- removed earlier the same day: no gap
            else
              spans[v] = s or {}
              open[v] = d
            end
          end
        end
      else
        if active[v] then
          active[v], since[v] = nil, nil
          n = n - 1
          per[#per + 1] = decimal.new(-1)
          if spans then
            local s = spans[v]
            s[#s + 1] = { open[v], day(e.ts) }
            open[v] = nil
          end
        else
          per[#per + 1] = ZERO
        end
      end
    end
  end
  local units, full = decimal.new(n), nil
  if spans then
    full = units
    local total = p.days or periods.days(p.from, p.to, tz)
    local last = periods.days(p.from, p.to, tz)
    local used = 0
    for v, s in pairs(spans) do
      for _, sp in ipairs(s) do used = used + sp[2] - sp[1] + 1 end
      if open[v] then used = used + last - open[v] + 1 end
    end
    units = total > 0 and decimal.new(used) / total or ZERO
  end
  local state
  if m.recurring then
    state = { active = {} }
    for v in pairs(active) do state.active[v] = since[v] end
  end
  return units, per, state, full
end

-- weighted_sum: each event's value is a change of a level (+3, -1); the level times the
-- seconds it held, over the period's seconds (Lago's time-weighted sum). A recurring metric
-- starts the period at the level the previous one ended on.
local function weighted_sum(m, list, p, prev)
  local level = ZERO
  if m.recurring and prev and prev.level then level = decimal.new(prev.level) end
  local from_ms, to_ms = ms(p.from), ms(p.to)
  local seconds = p.seconds or (p.to - p.from)
  if seconds <= 0 or to_ms <= from_ms then return ZERO, {}, m.recurring and { level = decimal.string(level) } or nil end
  -- Σ level × time held = the starting level over the whole period plus each change over the
  -- time left after it: the same integral, one product per event.
  local terms, per = { level * (to_ms - from_ms) }, {}
  for i, e in ipairs(list) do
    per[i] = e.v
    terms[i + 1] = e.v * (to_ms - e.ms)
  end
  if #per > 0 then level = level + decimal.sum(per) end
  local units = decimal.sum(terms) / floor(seconds * 1000 + 0.5)
  return units, per, m.recurring and { level = decimal.string(level) } or nil
end

local function to_units(v, where)
  if v == nil then return ZERO end
  return parse_value(v, where)
end

local function run_custom(m, list, _, prev, opts)
  local fn, err = custom.compile(m.code, m.custom)
  if not fn then error("aggregate.run: metric " .. tostring(m.code) .. ": " .. err, 3) end
  local state = m.recurring and prev and prev.custom or nil
  local per, total = {}, ZERO
  local function body()
    for i, e in ipairs(list) do
      local props = {}
      for k, v in pairs(e.props) do props[k] = v end
      local units
      state, units = fn(state, { transaction_id = e.ev.transaction_id, timestamp = e.ts, properties = props })
      local u, uerr = to_units(units, "metric " .. m.code .. ": the units of event " .. i)
      if not u then error(uerr, 0) end
      per[#per + 1] = u
      total = total + u
    end
  end
  local ok, rerr = custom.guarded(custom.budget(#list, opts.budget), m.code, body)
  if not ok then
    rerr = tostring(rerr)
    if not rerr:find("metric[ :]" .. m.code:gsub("%p", "%%%0")) then rerr = "metric:" .. m.code .. ": " .. rerr end
    return nil, rerr
  end
  return total, per, m.recurring and { custom = state } or nil
end

-- The metric's own rounding of its units (Lago's rounding_function and rounding_precision, a
-- negative precision rounding to tens, hundreds...): the only rounding a metric does.
local function rounded(m, u)
  if u == nil or not m.rounding_function then return u end
  local mode, prec = ROUNDING[m.rounding_function], m.rounding_precision or 0
  if prec >= 0 then return u:round(prec, mode) end
  local f = decimal.new(10 ^ -prec)
  return (u / f):round(0, mode) * f
end

local RUN = { count = count, sum = sum, max = max, latest = latest, unique_count = unique_count,
              weighted_sum = weighted_sum, custom = run_custom }

local function group_key(props, group_by)
  local vals, parts = {}, {}
  for i, g in ipairs(group_by) do
    local v = prop_string(props[g])
    vals[g] = v
    parts[i] = v or ""
  end
  return concat(parts, ", "), vals
end

-- run(metric, events, period [, opts]) -> {units, count, per_event, state, groups, full_units},
-- or nil, err
-- (a value that cannot be billed exactly, a custom formula's error: naming the event and field).
-- opts: previous (the state the previous period returned, for recurring metrics), prorated
-- (sum's and unique_count's prorated units; full_units then holds the unprorated), group_by = {"prop", ...}, filters (a charge's own filter,
-- the same shape as metric.filters), timezone (for day counts; default period.timezone or
-- UTC), budget (a custom formula's: {cpu = seconds, memory = bytes, instructions = n}).
function M.run(m, events, p, opts)
  local ok, err = M.check(m)
  if not ok then error("aggregate.run: metric: " .. err, 2) end
  check_period(p, "aggregate.run")
  if opts ~= nil and type(opts) ~= "table" then error("aggregate.run: argument #4: opts table expected", 2) end
  opts = opts or {}
  if opts.filters ~= nil then
    local fok, ferr = check_filters(opts.filters, "opts.filters")
    if not fok then error("aggregate.run: " .. ferr, 2) end
  end
  if opts.prorated and m.aggregation ~= "unique_count" and m.aggregation ~= "sum" then
    error("aggregate.run: opts.prorated: only sum and unique_count have prorated units, not " .. m.aggregation, 2)
  end
  -- an unknown zone is misuse: raise before any event is looked at
  periods.days(p.from, p.from + 1, opts.timezone or p.timezone)
  local list, lerr = select_events(m, events, p, opts)
  if not list then return nil, lerr end
  local fn = RUN[m.aggregation]
  local prev = opts.previous
  if not opts.group_by then
    local units, per, state, full = fn(m, list, p, prev, opts)
    if not units then return nil, per end
    return { units = rounded(m, units), count = #list, per_event = per, state = state, full_units = rounded(m, full) }
  end
  if type(opts.group_by) ~= "table" or #opts.group_by == 0 then
    error("aggregate.run: opts.group_by: a list of property names expected", 2)
  end
  local buckets, order, values = {}, {}, {}
  for _, e in ipairs(list) do
    local key, vals = group_key(e.props, opts.group_by)
    if not buckets[key] then buckets[key] = {}; order[#order + 1] = key; values[key] = vals end
    local b = buckets[key]
    b[#b + 1] = e
  end
  -- a recurring group with no event this period still carries its value
  if m.recurring and prev and type(prev.groups) == "table" then
    for key, st in pairs(prev.groups) do
      if not buckets[key] then
        buckets[key] = {}; order[#order + 1] = key; values[key] = type(st) == "table" and st.values or nil
      end
    end
  end
  sort(order)
  local groups, total, per_all, states, full_total = {}, ZERO, {}, {}, nil
  for _, key in ipairs(order) do
    local gprev = prev and type(prev.groups) == "table" and prev.groups[key] or nil
    local units, per, state, full = fn(m, buckets[key], p, gprev, opts)
    if not units then return nil, per end
    units, full = rounded(m, units), rounded(m, full)
    groups[key] = { units = units, count = #buckets[key], per_event = per, values = values[key], full_units = full }
    total = total + units
    if full then full_total = (full_total or ZERO) + full end
    for _, v in ipairs(per) do per_all[#per_all + 1] = v end
    if state then state.values = values[key]; states[key] = state end
  end
  return { units = total, count = #list, per_event = per_all, groups = groups, full_units = full_total,
           state = m.recurring and { groups = states } or nil }
end

return M
