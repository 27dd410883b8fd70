-- steward.capacity.prices: the cost model of the `costs` config key. Prices are per instance
-- hour and depend on the time of day (windows: a cron start in the model's zone and a
-- wall-clock duration, the first listed window that covers an instant wins, the entry without
-- cron covers the rest) and on the service's class ("on_demand" by default, "spot" or any
-- name a price gives). Amounts are exact integers of millionths of the currency (money is
-- never a binary fraction); what a period costs is rounded to a millionth once, at the end.
-- Pure: every function takes the time it works on.
local cron = require "steward.runtime.store.cron"

local type, pairs, ipairs, tostring, tonumber, error, format = type, pairs, ipairs, tostring, tonumber, error, string.format
local floor, sort, huge = math.floor, table.sort, math.huge

local M = {}

M.MICRO = 1000000
M.MAX_WINDOWS = 100000 -- window starts walked in one period before refusing (a cron every minute over years)

local function fail(field, reason) error(format("costs.%s: %s", field, reason), 0) end

-- A price as millionths: a number or a decimal string ("0.12"), at most 6 decimals.
local function micros(v, field)
  local s
  if type(v) == "number" then
    if v ~= v or v < 0 or v == huge then fail(field, "non-negative price expected") end
    s = format("%.6f", v)
  elseif type(v) == "string" then
    s = v
  else
    fail(field, "price expected (a number or a decimal string such as \"0.12\"), got " .. type(v))
  end
  local int, frac = s:match("^(%d+)%.?(%d*)$")
  if not int then fail(field, "decimal price expected, got " .. ("%q"):format(s)) end
  if #frac > 6 then fail(field, "at most 6 decimals, got " .. s) end
  return tonumber(int) * M.MICRO + tonumber((frac .. "000000"):sub(1, 6))
end

-- amount(micros) -> "12.345678" (rounded to a millionth)
function M.amount(m)
  m = floor(m + 0.5)
  local sign = m < 0 and "-" or ""
  if m < 0 then m = -m end
  return format("%s%d.%06d", sign, floor(m / M.MICRO), m % M.MICRO)
end

local KNOWN = { currency = true, timezone = true, prices = true, services = true }
local ENTRY = { name = true, cron = true, duration = true, instance_hour = true }
local SERVICE = { class = true }

-- check(costs) -> the model | raises "costs.<field>: <reason>" (for config.lua and specs).
function M.check(c)
  if type(c) ~= "table" then fail("", "table expected") end
  for k in pairs(c) do if not KNOWN[k] then fail(tostring(k), "unknown field (currency, timezone, prices, services)") end end
  local model = { currency = c.currency or "USD", timezone = c.timezone or "UTC", entries = {}, services = {},
    classes = { on_demand = true } }
  if type(model.currency) ~= "string" or not model.currency:match("^%u%u%u$") then
    fail("currency", "ISO 4217 code expected (\"EUR\")")
  end
  if type(model.timezone) ~= "string" then fail("timezone", "zone name expected (\"Europe/Paris\")") end
  local z, zerr = require("steward.time").zone(model.timezone)
  if not z then fail("timezone", tostring(zerr)) end
  model.zone = z
  if type(c.prices) ~= "table" or #c.prices == 0 then
    fail("prices", "non-empty list expected ({ {name = \"offpeak\", instance_hour = 0.04} })")
  end
  local names = {}
  for i, p in ipairs(c.prices) do
    local f = "prices[" .. i .. "]"
    if type(p) ~= "table" then fail(f, "table expected") end
    for k in pairs(p) do
      if not ENTRY[k] then fail(f .. "." .. tostring(k), "unknown field (name, cron, duration, instance_hour)") end
    end
    if type(p.name) ~= "string" or p.name == "" then fail(f .. ".name", "non-empty string expected") end
    if names[p.name] then fail(f .. ".name", "duplicate name " .. p.name) end
    names[p.name] = true
    local e = { name = p.name, prices = {} }
    if type(p.instance_hour) == "table" then
      for class, v in pairs(p.instance_hour) do
        if type(class) ~= "string" then fail(f .. ".instance_hour", "table of class = price expected") end
        e.prices[class] = micros(v, f .. ".instance_hour." .. class)
        model.classes[class] = true
      end
      if not e.prices.on_demand then fail(f .. ".instance_hour.on_demand", "price expected (other classes fall back to it)") end
    else
      e.prices.on_demand = micros(p.instance_hour, f .. ".instance_hour")
    end
    if p.cron ~= nil then
      if type(p.cron) ~= "string" then fail(f .. ".cron", "cron expression expected") end
      local sched, cerr = cron.parse(p.cron)
      if not sched then fail(f .. ".cron", tostring(cerr)) end
      if p.duration == nil then fail(f .. ".duration", "duration expected with cron (\"12h\")") end
      local d, derr = require("steward.time").parse_duration(p.duration)
      if not d then fail(f .. ".duration", tostring(derr)) end
      if d <= 0 then fail(f .. ".duration", "positive duration expected") end
      e.sched, e.cron, e.duration = sched, p.cron, d
      model.entries[#model.entries + 1] = e
    else
      if p.duration ~= nil then fail(f .. ".duration", "only with cron (an entry without cron covers the rest of the time)") end
      if model.default then fail(f .. ".cron", "only one entry may go without cron (the default); " ..
        model.default.name .. " already does") end
      model.default = e
    end
  end
  if not model.default then fail("prices", "one entry without cron expected: the price outside every window") end
  local svcs = c.services or {}
  if type(svcs) ~= "table" then fail("services", "table of service name = {class} expected") end
  for name, s in pairs(svcs) do
    local f = "services." .. tostring(name)
    if type(name) ~= "string" or type(s) ~= "table" then fail(f, "{class = \"spot\"} expected") end
    for k in pairs(s) do if not SERVICE[k] then fail(f .. "." .. tostring(k), "unknown field (class)") end end
    local class = s.class or "on_demand"
    if not model.classes[class] then fail(f .. ".class", "no price names class " .. tostring(class)) end
    model.services[name] = { class = class }
  end
  return model
end

-- class_of(model, service) -> the service's price class
function M.class_of(model, service)
  local s = model.services[service]
  return s and s.class or "on_demand"
end

-- The windows of entry e that overlap (a, b): {{from, to}, ...}. Starts are wall-clock
-- minutes in the zone; a window ends at its start's wall-clock time plus its duration, so a
-- tariff's 22:00-06:00 ends at 06:00 also on the nights the clocks change.
local function windows(model, e, a, b)
  local z, out = model.zone, {}
  local w = z:wall(a) - e.duration - 7200
  local wb = z:wall(b) + 7200
  for _ = 1, M.MAX_WINDOWS do
    local sw = e.sched:next(w)
    if not sw or sw > wb then return out end
    local s, en = z:from_wall(sw), z:from_wall(sw + e.duration)
    if en > a and s < b then out[#out + 1] = { s, en } end
    w = sw
  end
  return nil, format("costs: price %s: more than %d windows in the period", e.name, M.MAX_WINDOWS)
end

-- segments(model, a, b) -> {{from, to, entry}, ...} covering [a, b) in order | nil, err
function M.segments(model, a, b)
  if b <= a then return {} end
  local wins, points, seen = {}, { a, b }, { [a] = true, [b] = true }
  for i, e in ipairs(model.entries) do
    local list, err = windows(model, e, a, b)
    if not list then return nil, err end
    wins[i] = list
    for _, w in ipairs(list) do
      for _, p in ipairs(w) do
        if p > a and p < b and not seen[p] then seen[p] = true; points[#points + 1] = p end
      end
    end
  end
  sort(points)
  local out = {}
  for i = 1, #points - 1 do
    local p, q = points[i], points[i + 1]
    local mid, entry = (p + q) / 2, model.default
    for j, e in ipairs(model.entries) do
      local hit = false
      for _, w in ipairs(wins[j]) do if w[1] <= mid and mid < w[2] then hit = true; break end end
      if hit then entry = e; break end
    end
    local last = out[#out]
    if last and last[3] == entry then last[2] = q else out[#out + 1] = { p, q, entry } end
  end
  return out
end

-- price(entry, class) -> millionths per instance hour
function M.price(entry, class)
  return entry.prices[class] or entry.prices.on_demand
end

-- price_at(model, t [, class]) -> millionths per instance hour, the price's name
function M.price_at(model, t, class)
  local segs = assert(M.segments(model, t, t + 1))
  local e = segs[1][3]
  return M.price(e, class or "on_demand"), e.name
end

-- cost(segs, a, b, class, instances, by_price) -> millionths (unrounded) of instances over
-- [a, b) given segments covering it; adds each price's share to by_price[name] when given.
function M.cost(segs, a, b, class, instances, by_price)
  local total = 0
  for _, s in ipairs(segs) do
    if s[1] >= b then break end
    local lo, hi = s[1] > a and s[1] or a, s[2] < b and s[2] or b
    if hi > lo then
      local c = (hi - lo) * M.price(s[3], class) * (instances or 1) / 3600
      total = total + c
      if by_price then by_price[s[3].name] = (by_price[s[3].name] or 0) + c end
    end
  end
  return total
end

local function human(s)
  if s >= 86400 and s % 3600 == 0 then return format("%dd%dh", floor(s / 86400), floor(s % 86400 / 3600)) end
  if s >= 3600 then return format("%dh%02dm", floor(s / 3600), floor(s % 3600 / 60)) end
  if s >= 60 then return format("%dm%02ds", floor(s / 60), floor(s % 60)) end
  return format("%gs", s)
end
M.human = human

-- cheapest(model, {duration, deadline, now, class, instances}) -> {start, ends, cost, amount,
-- price, now_amount, currency} | nil, err. The job runs [start, start + duration), starts no
-- earlier than now and ends by the deadline; of equally cheap starts, the earliest. The cost of
-- a start is piecewise linear between the instants where its start or end meets a price
-- boundary, so those instants (and both ends of the range) are the only candidates.
function M.cheapest(model, o)
  local d, deadline, now = o.duration, o.deadline, o.now
  local latest = deadline - d
  if latest < now then
    return nil, format("cannot meet the deadline: the job needs %s and %s is left before it", human(d),
      human(deadline > now and deadline - now or 0))
  end
  local segs, err = M.segments(model, now, deadline)
  if not segs then return nil, err end
  local class, n = o.class or "on_demand", o.instances or 1
  local cands = { now, latest }
  for _, s in ipairs(segs) do
    for _, p in ipairs({ s[1], s[1] - d, s[2], s[2] - d }) do
      if p >= now and p <= latest then cands[#cands + 1] = p end
    end
  end
  sort(cands)
  local best, best_cost
  for _, s in ipairs(cands) do
    local c = M.cost(segs, s, s + d, class, n)
    if not best_cost or c < best_cost - 1e-6 then best, best_cost = s, c end
  end
  local at_now = M.cost(segs, now, now + d, class, n)
  local _, name = M.price_at(model, best, class)
  return { start = best, ends = best + d, cost = floor(best_cost + 0.5), amount = M.amount(best_cost), price = name,
    now_amount = M.amount(at_now), currency = model.currency }
end

return M
