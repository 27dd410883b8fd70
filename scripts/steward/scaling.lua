-- steward.scaling: the autoscaling library for policies (docs/scaling.md). scaling.autoscaler{...}
-- checks an autoscaler's spec and returns an ordinary policy table; the runtime's control loop
-- (steward.scaling.loop, on the leader) finds it among the loaded policies by its `autoscaler`
-- field and ticks it every `interval`. The decision maths are steward.scaling.hpa (Kubernetes'
-- HPA v2) wrapped by steward.scaling.keda; the metric sources are steward.scaling.sources,
-- re-exported as scaling.source.
local time = require "steward.time"

local type, pairs, ipairs, tostring, error, format, pcall, require = type, pairs, ipairs, tostring, error,
  string.format, pcall, require

local M = {}

local KNOWN = { service = true, revision = true, min_replicas = true, max_replicas = true, metrics = true,
  behavior = true, cooldown = true, idle_replicas = true, schedule = true, predictive = true, interval = true,
  name = true, config = true, tolerance = true }
local METRIC_KNOWN = { name = true, source = true, type = true, target = true, activation = true }
local METRIC_TYPES = { pods = true, resource = true, object = true, external = true }
local TARGET_TYPES = { utilization = true, average_value = true, value = true }

local function fail(field, reason) error(format("scaling.autoscaler: %s: %s", field, reason), 3) end

local function duration(v, field, default)
  if v == nil then v = default end
  if v == nil then return nil end
  local d, err = time.parse_duration(v)
  if not d then fail(field, "duration expected (\"250ms\", \"5m\"): " .. tostring(err)) end
  if d < 0 then fail(field, "must not be negative") end
  return d
end

local function count(v, field, default, least)
  if v == nil then return default end
  if type(v) ~= "number" or v % 1 ~= 0 or v < least then
    fail(field, format("an integer >= %d expected, got %s", least, tostring(v)))
  end
  return v
end

-- The optional modules of issue 16's other parts: nil when this tree does not have them.
local function optional(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  return nil
end
M.optional = optional

-- The spec the decision modules (hpa, keda) see: everything but the sources and the runtime's
-- own fields.
local function decision_spec(s)
  local metrics = {}
  for i, m in ipairs(s.metrics) do
    metrics[i] = { name = m.name, type = m.type, target = m.target, activation = m.activation }
  end
  -- predictive scaling is one more metric, "predicted:<metric>" (steward.scaling.predict): HPA
  -- proposes for the forecast beside the reactive metrics, the largest wins, and its tolerance,
  -- stabilization and rate policies apply to it as to any other
  if s.predictive then metrics[#metrics + 1] = require("steward.scaling.predict").metric(s.predictive) end
  return { min_replicas = s.min_replicas, max_replicas = s.max_replicas, tolerance = s.tolerance,
    metrics = metrics, behavior = s.behavior, cooldown = s.cooldown_text, idle_replicas = s.idle_replicas }
end
M.decision_spec = decision_spec

-- check(opts) -> the compiled spec, or raises an error naming the field.
function M.check(opts)
  if type(opts) ~= "table" then error("scaling.autoscaler: table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not KNOWN[k] then fail(tostring(k), "unknown field") end
  end
  local s = {}
  if type(opts.service) ~= "string" or not opts.service:match("^[%w_.-]+$") then
    fail("service", "a service name ([A-Za-z0-9_.-]) expected")
  end
  s.service = opts.service
  s.revision = opts.revision or "stable"
  if type(s.revision) ~= "string" or not s.revision:match("^[%w_.-]+$") then
    fail("revision", "\"stable\" or a revision id expected")
  end
  s.min_replicas = count(opts.min_replicas, "min_replicas", 1, 0)
  s.max_replicas = count(opts.max_replicas, "max_replicas", nil, 1)
  if not s.max_replicas then fail("max_replicas", "required (an integer >= 1)") end
  if s.min_replicas > s.max_replicas then
    fail("min_replicas", format("%d is above max_replicas (%d)", s.min_replicas, s.max_replicas))
  end
  s.idle_replicas = count(opts.idle_replicas, "idle_replicas", nil, 0)
  if opts.tolerance ~= nil and (type(opts.tolerance) ~= "number" or opts.tolerance < 0 or opts.tolerance >= 1) then
    fail("tolerance", "a fraction from 0 to 1 expected (Kubernetes' default 0.1)")
  end
  s.tolerance = opts.tolerance
  s.interval = duration(opts.interval, "interval", "250ms")
  if s.interval < 0.05 then fail("interval", "at least 50ms") end
  if opts.cooldown ~= nil then
    s.cooldown = duration(opts.cooldown, "cooldown")
    s.cooldown_text = opts.cooldown
  end
  if type(opts.metrics) ~= "table" or #opts.metrics == 0 then
    fail("metrics", "a list of at least one metric {name, source, type, target} expected")
  end
  s.metrics = {}
  local seen = {}
  for i, m in ipairs(opts.metrics) do
    local f = format("metrics[%d]", i)
    if type(m) ~= "table" then fail(f, "table expected") end
    for k in pairs(m) do
      if not METRIC_KNOWN[k] then fail(f .. "." .. tostring(k), "unknown field") end
    end
    if type(m.name) ~= "string" or not m.name:match("^[%w_.:-]+$") then
      fail(f .. ".name", "a metric name ([A-Za-z0-9_.:-]) expected")
    end
    if seen[m.name] then fail(f .. ".name", "'" .. m.name .. "' is also metrics[" .. seen[m.name] .. "]") end
    seen[m.name] = i
    local src = m.source
    if type(src) ~= "table" or type(src.sample) ~= "function" or type(src.kind) ~= "string" then
      fail(f .. ".source", "scaling.source.haproxy{...}, .prometheus{...}, .events{...} or .proc{...} expected")
    end
    local mtype = m.type or src.default_type or "pods"
    if not METRIC_TYPES[mtype] then fail(f .. ".type", "\"pods\", \"resource\", \"object\" or \"external\" expected") end
    if src.per_instance and mtype ~= "pods" and mtype ~= "resource" then
      fail(f .. ".type", format("a %s source measures each instance: \"pods\" or \"resource\" expected", src.kind))
    end
    if not src.per_instance and (mtype == "pods" or mtype == "resource") then
      fail(f .. ".type", format("a %s source gives one value: \"object\" or \"external\" expected", src.kind))
    end
    local target = m.target
    -- A bare number is an average per instance, for every type (KEDA's default metricType):
    -- a total of 30 against 10 asks for 3 instances, not 3 times the current count.
    if type(target) == "number" then target = { type = "average_value", value = target } end
    if type(target) ~= "table" or not TARGET_TYPES[target.type] then
      fail(f .. ".target", "{type = \"utilization\"|\"average_value\"|\"value\", value = N} or a number expected")
    end
    if type(target.value) ~= "number" or target.value <= 0 then fail(f .. ".target.value", "a number > 0 expected") end
    if target.type == "utilization" and mtype ~= "resource" then
      fail(f .. ".target.type", "\"utilization\" applies to type \"resource\" (a share of each instance's request)")
    end
    if m.activation ~= nil and (type(m.activation) ~= "number" or m.activation < 0) then
      fail(f .. ".activation", "a number >= 0 expected")
    end
    s.metrics[i] = { name = m.name, source = src, type = mtype,
      target = { type = target.type, value = target.value }, activation = m.activation }
  end
  s.behavior = opts.behavior
  if s.behavior ~= nil and type(s.behavior) ~= "table" then fail("behavior", "table {scale_up =, scale_down =} expected") end
  if opts.schedule ~= nil then
    if type(opts.schedule) ~= "table" then fail("schedule", "a list of windows expected") end
    local schedule = optional "steward.scaling.schedule"
    if not schedule then fail("schedule", "steward.scaling.schedule is not available in this build") end
    local ok, err = pcall(schedule.check, opts.schedule)
    if not ok then fail("schedule", (tostring(err):gsub("^[^:]*:%d+: ", ""))) end
    s.schedule = opts.schedule
  end
  if opts.predictive ~= nil then
    if type(opts.predictive) ~= "table" then fail("predictive", "table {metric, target, lead, season, step} expected") end
    local predict = optional "steward.scaling.predict"
    if not predict then fail("predictive", "steward.scaling.predict is not available in this build") end
    if type(opts.predictive.metric) ~= "string" or not seen[opts.predictive.metric] then
      fail("predictive.metric", "the name of one of the metrics expected")
    end
    -- the normalised table: predict keeps its fitted parameters per spec table
    local ok, checked = pcall(predict.check, opts.predictive)
    if not ok then error("scaling.autoscaler: " .. tostring(checked):gsub("^[^:]*:%d+: ", ""):gsub("^scaling:%s*", ""), 2) end
    s.predictive = checked
  end
  -- The decision modules check their part (behavior's policies, windows, activation).
  local keda, hpa = optional "steward.scaling.keda", optional "steward.scaling.hpa"
  local checker = keda or hpa
  if checker and checker.check then
    local ok, err = pcall(checker.check, decision_spec(s))
    if not ok then
      local msg = tostring(err):gsub("^[^:]*:%d+: ", ""):gsub("^scaling:%s*", "")
      error("scaling.autoscaler: " .. msg, 2)
    end
  elseif s.min_replicas == 0 and not keda then
    fail("min_replicas", "0 (scale to zero) needs steward.scaling.keda, not available in this build")
  end
  s.name = opts.name
  return s
end

-- autoscaler{...} -> a policy table. It needs the `deploy` capability for its service (the
-- loop checks the grant at each tick); decide(input) answers its status: spec, last decision,
-- state (the same view as GET /v1/scaling).
function M.autoscaler(opts)
  local s = M.check(opts)
  local service = s.service
  local capabilities = { deploy = { service } }
  -- a Prometheus source reads its URL: `http` for it, granted like any policy's
  for _, m in ipairs(s.metrics) do
    local url = m.source.needs and m.source.needs.http
    if url then
      capabilities.http = capabilities.http or {}
      capabilities.http[#capabilities.http + 1] = url
    end
  end
  return {
    name = opts.name,
    config = opts.config,
    capabilities = capabilities,
    autoscaler = s,
    decide = function()
      local view = require "steward.scaling.view"
      return view.one(opts.name, service)
    end,
  }
end

-- scaling.source.<kind>{...}: the metric sources (steward.scaling.sources).
M.source = setmetatable({}, { __index = function(_, k)
  local sources = require "steward.scaling.sources"
  local f = sources.KINDS[k] and sources[k]
  if not f then error(format("scaling.source.%s: unknown source (haproxy, prometheus, events, proc)", tostring(k)), 2) end
  return f
end })

return M
