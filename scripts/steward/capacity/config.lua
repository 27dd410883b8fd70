-- steward.capacity.config: checks the `capacity` config key (docs/scaling/capacity.md): how
-- long the metric history is kept, and per service the series that measures its load, the
-- limit at which it saturates, and the lead time a report warns ahead of.
local time = require "steward.time"

local type, pairs, tostring, error, format = type, pairs, tostring, error, string.format

local M = {}

M.DEFAULTS = { retention = 400 * 86400, lead_time = 14 * 86400, window = 28 * 86400, step = 3600 }

local function fail(field, reason) error(format("capacity.%s: %s", field, reason), 0) end

local function dur(v, field, default)
  if v == nil then return default end
  local d, err = time.parse_duration(v)
  if not d then fail(field, tostring(err)) end
  if d <= 0 then fail(field, "positive duration expected") end
  return d
end

local function positive(v, field)
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then fail(field, "positive number expected") end
  return v
end

local SERVICE = { metric = true, limit = true, lead_time = true, window = true, step = true }

-- check(v) -> {retention, services = {name = {metric, limit, limit_text, lead_time, window, step}}} | raises
function M.check(v)
  if type(v) ~= "table" then fail("", "table expected") end
  for k in pairs(v) do
    if k ~= "retention" and k ~= "services" then fail(tostring(k), "unknown field (retention, services)") end
  end
  local out = { retention = dur(v.retention, "retention", M.DEFAULTS.retention), services = {} }
  if v.services ~= nil and type(v.services) ~= "table" then fail("services", "table of service name = {...} expected") end
  for name, s in pairs(v.services or {}) do
    local f = "services." .. tostring(name)
    if type(name) ~= "string" or type(s) ~= "table" then fail(f, "{metric, limit, lead_time} expected") end
    for k in pairs(s) do
      if not SERVICE[k] then fail(f .. "." .. tostring(k), "unknown field (metric, limit, lead_time, window, step)") end
    end
    local metric = s.metric
    if type(metric) ~= "string" or metric == "" then fail(f .. ".metric", "series name expected (\"" .. name .. ":rps\")") end
    local limit, text
    if type(s.limit) == "number" then
      limit = positive(s.limit, f .. ".limit")
      text = tostring(limit)
    elseif type(s.limit) == "table" then
      for k in pairs(s.limit) do
        if k ~= "per_instance" and k ~= "instances" then fail(f .. ".limit." .. tostring(k), "unknown field (per_instance, instances)") end
      end
      local per = positive(s.limit.per_instance, f .. ".limit.per_instance")
      local n = s.limit.instances
      if type(n) ~= "number" or n ~= math.floor(n) or n < 1 then fail(f .. ".limit.instances", "integer >= 1 expected") end
      limit = per * n
      text = format("%g per instance x %d instances", per, n)
    else
      fail(f .. ".limit", "a number (the metric's value at saturation) or {per_instance =, instances =} expected")
    end
    out.services[name] = { metric = metric, limit = limit, limit_text = text,
      lead_time = dur(s.lead_time, f .. ".lead_time", M.DEFAULTS.lead_time),
      window = dur(s.window, f .. ".window", M.DEFAULTS.window),
      step = dur(s.step, f .. ".step", M.DEFAULTS.step) }
    if out.services[name].step < 60 then fail(f .. ".step", "at least 1m expected") end
  end
  return out
end

return M
