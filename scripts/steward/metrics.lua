-- Prometheus metrics: counters, gauges and histograms with labels, rendered in the text
-- exposition format (version 0.0.4) for GET /metrics. Label values are positional, in the
-- order the metric declared its label names, so the hot path is a table lookup.
local type, pairs, ipairs, tostring, select = type, pairs, ipairs, tostring, select
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

local registry, order = {}, {}

local function escape_label(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function fmt_num(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and v > -1e15 and v < 1e15 then return format("%d", v) end
  local short = format("%.15g", v)
  if tonumber(short) == v then return short end
  return format("%.17g", v)
end

local function check_name(name, what)
  if type(name) ~= "string" or not name:match("^[a-zA-Z_:][a-zA-Z0-9_:]*$") then
    error(format("metrics.%s: name must match [a-zA-Z_:][a-zA-Z0-9_:]*", what), 3)
  end
end

local function register(kind, name, help, labels)
  check_name(name, kind)
  labels = labels or {}
  if type(labels) ~= "table" then error("metrics." .. kind .. ": labels must be a list of names", 3) end
  local existing = registry[name]
  if existing then
    if existing.kind ~= kind then
      error(format("metrics.%s: '%s' is already a %s", kind, name, existing.kind), 3)
    end
    return existing -- re-declaring (e.g. on policy reload) returns the same metric
  end
  local m = { kind = kind, name = name, help = help or "", labels = labels, series = {}, tree = {} }
  registry[name] = m
  order[#order + 1] = name
  return m
end

-- Series are found through a tree keyed by each label value in turn, so counting on the
-- hot path allocates nothing once a series exists.
local function find_series(m, ...)
  local n = select("#", ...)
  if n ~= #m.labels then
    error(format("metric %s: expected %d label values, got %d", m.name, #m.labels, n), 3)
  end
  local node = m.tree
  for i = 1, n do
    local v = (select(i, ...))
    local child = node[v]
    if not child then
      child = {}
      node[v] = child
    end
    node = child
  end
  local s = node[m] -- the series hangs off its leaf under the metric itself as key
  if not s then
    local values = { ... }
    for i = 1, n do values[i] = tostring(values[i]) end
    -- 202 and "202" are one series: both paths lead to the same object.
    local key = concat(values, "\0")
    s = m.series[key]
    if s then
      node[m] = s
      return s
    end
    s = { values = values, value = 0 }
    if m.kind == "histogram" then
      s.counts = {}
      for i = 1, #m.buckets do s.counts[i] = 0 end
      s.sum, s.count = 0, 0
    end
    node[m] = s
    m.series[key] = s
  end
  return s
end

local Counter, Gauge, Histogram = {}, {}, {}
Counter.__index, Gauge.__index, Histogram.__index = Counter, Gauge, Histogram

-- counter:inc(n, label values...)
function Counter:inc(n, ...)
  local s = find_series(self, ...)
  s.value = s.value + (n or 1)
end

function Counter:get(...) return find_series(self, ...).value end

function Gauge:set(v, ...) find_series(self, ...).value = v end
function Gauge:inc(n, ...) local s = find_series(self, ...); s.value = s.value + (n or 1) end
function Gauge:dec(n, ...) local s = find_series(self, ...); s.value = s.value - (n or 1) end
function Gauge:get(...) return find_series(self, ...).value end

function Histogram:observe(v, ...)
  local s = find_series(self, ...)
  local b = self.buckets
  for i = 1, #b do
    if v <= b[i] then s.counts[i] = s.counts[i] + 1; break end
  end
  s.sum = s.sum + v
  s.count = s.count + 1
end

function M.counter(name, help, labels)
  return setmetatable(register("counter", name, help, labels), Counter)
end

-- gauge(name, help, labels [, fn]): with fn, the value is fn() at scrape time (no labels).
function M.gauge(name, help, labels, fn)
  local g = setmetatable(register("gauge", name, help, labels), Gauge)
  g.fn = fn or g.fn
  return g
end

M.DEFAULT_BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

function M.histogram(name, help, labels, buckets)
  local h = setmetatable(register("histogram", name, help, labels), Histogram)
  if not h.buckets then
    buckets = buckets or M.DEFAULT_BUCKETS
    for i = 2, #buckets do
      if buckets[i] <= buckets[i - 1] then error("metrics.histogram: buckets must increase", 2) end
    end
    h.buckets = buckets
  end
  return h
end

function M.get(name) return registry[name] end

local function label_str(names, values, extra_k, extra_v)
  local parts = {}
  for i, n in ipairs(names) do parts[#parts + 1] = n .. '="' .. escape_label(values[i]) .. '"' end
  if extra_k then parts[#parts + 1] = extra_k .. '="' .. extra_v .. '"' end
  if #parts == 0 then return "" end
  return "{" .. concat(parts, ",") .. "}"
end

-- render() -> the exposition text; series sorted for stable output.
function M.render()
  local out = {}
  for _, name in ipairs(order) do
    local m = registry[name]
    out[#out + 1] = format("# HELP %s %s", name, (m.help:gsub("\\", "\\\\"):gsub("\n", "\\n")))
    out[#out + 1] = format("# TYPE %s %s", name, m.kind)
    if m.fn then
      local ok, v = pcall(m.fn)
      if ok and type(v) == "number" then out[#out + 1] = name .. " " .. fmt_num(v) end
    end
    local keys = {}
    for k in pairs(m.series) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do
      local s = m.series[k]
      if m.kind == "histogram" then
        local cum = 0
        for i, le in ipairs(m.buckets) do
          cum = cum + s.counts[i]
          out[#out + 1] = name .. "_bucket" .. label_str(m.labels, s.values, "le", fmt_num(le)) .. " " .. cum
        end
        out[#out + 1] = name .. "_bucket" .. label_str(m.labels, s.values, "le", "+Inf") .. " " .. s.count
        out[#out + 1] = name .. "_sum" .. label_str(m.labels, s.values) .. " " .. fmt_num(s.sum)
        out[#out + 1] = name .. "_count" .. label_str(m.labels, s.values) .. " " .. s.count
      else
        out[#out + 1] = name .. label_str(m.labels, s.values) .. " " .. fmt_num(s.value)
      end
    end
  end
  out[#out + 1] = ""
  return concat(out, "\n")
end

-- Quantile estimate from a histogram series (for status displays, not for alerting).
function M.quantile(h, q, ...)
  local s = find_series(h, ...)
  if s.count == 0 then return nil end
  local rank, cum = q * s.count, 0
  for i, le in ipairs(h.buckets) do
    cum = cum + s.counts[i]
    if cum >= rank then return le end
  end
  return math.huge
end

return M
