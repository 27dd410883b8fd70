-- steward.scaling.hpa_spec: checks an HPA spec and fills in Kubernetes' defaults (autoscaling/v2
-- SetDefaults_HorizontalPodAutoscaler, GenerateHPAScaleUpRules/ScaleDownRules and the controller's
-- flags), so steward.scaling.hpa only ever sees a complete spec. Misuse raises an error naming the
-- field: "scaling: behavior.scale_down.policies[2].period: duration expected".
local time = require "steward.time"

local type, ipairs, pairs, tostring, error, format, floor = type, ipairs, pairs, tostring, error, string.format, math.floor

local M = {}

-- The controller's flags (kube-controller-manager --horizontal-pod-autoscaler-*), per spec here.
M.DEFAULT_TOLERANCE = 0.1
M.DEFAULT_DOWNSCALE_STABILIZATION = 300
M.DEFAULT_CPU_INITIALIZATION_PERIOD = 300
M.DEFAULT_INITIAL_READINESS_DELAY = 30
-- autoscaling/v2 validation bounds.
M.MAX_PERIOD = 1800
M.MAX_STABILIZATION_WINDOW = 3600

-- Specs this module produced: decide() checks anything else first. Weak keys: a spec dropped by
-- its owner is not kept alive here.
local checked = setmetatable({}, { __mode = "k" })

local function fail(field, reason) error(format("scaling: %s: %s", field, reason), 0) end

local function duration(v, field)
  local d = time.parse_duration(v)
  if not d then
    fail(field, type(v) == "string" and format("duration expected (like \"15s\" or \"5m\"), got %q", v)
      or "duration expected, got " .. type(v))
  end
  return d
end

local function integer(v, field, min)
  if type(v) ~= "number" or v ~= floor(v) or v < min then
    fail(field, format("integer >= %d expected, got %s", min, tostring(v)))
  end
  return v
end

local function positive(v, field)
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
    fail(field, "positive number expected, got " .. tostring(v))
  end
  return v
end

local function tolerance(v, field)
  if type(v) ~= "number" or v ~= v or v < 0 then fail(field, "number >= 0 expected, got " .. tostring(v)) end
  return v
end

local function one_of(v, field, set, list)
  if not set[v] then fail(field, format("one of %s expected, got %s", list, tostring(v))) end
  return v
end

-- Tables that belong to this spec alone are closed: a misspelt key (stabilisation_window) is an
-- error, not a default silently kept. The spec and each metric stay open for their callers'
-- fields (the autoscaler's source, KEDA's activation).
local function known(t, field, keys)
  for k in pairs(t) do
    if not keys[k] then fail(field .. "." .. tostring(k), "unknown field") end
  end
end

local RULE_KEYS = { select_policy = true, stabilization_window = true, policies = true, tolerance = true }
local POLICY_KEYS = { type = true, value = true, period = true }
local TARGET_KEYS = { type = true, value = true }
local BEHAVIOR_KEYS = { scale_up = true, scale_down = true }

local METRIC_TYPES = { pods = true, resource = true, object = true, external = true }
local TARGET_TYPES = { utilization = true, average_value = true, value = true }
-- Which target types each metric type takes (autoscaling/v2 validateMetricTarget per source).
local ALLOWED_TARGETS = {
  resource = { utilization = true, average_value = true },
  pods = { average_value = true },
  object = { value = true, average_value = true },
  external = { value = true, average_value = true },
}
local SELECT = { Max = true, Min = true, Disabled = true }
local POLICY_TYPES = { Pods = true, Percent = true }

local function check_metric(m, field)
  if type(m) ~= "table" then fail(field, "metric table expected") end
  local name = m.name
  if type(name) ~= "string" or name == "" then fail(field .. ".name", "non-empty string expected") end
  local mtype = m.type == nil and "pods" or m.type
  one_of(mtype, field .. ".type", METRIC_TYPES, "pods, resource, object, external")
  local t = m.target
  if type(t) ~= "table" then fail(field .. ".target", "table expected ({ type = \"average_value\", value = N })") end
  known(t, field .. ".target", TARGET_KEYS)
  one_of(t.type, field .. ".target.type", TARGET_TYPES, "utilization, average_value, value")
  if not ALLOWED_TARGETS[mtype][t.type] then
    fail(field .. ".target.type", format("%s is not a target of a %s metric", t.type, mtype))
  end
  local value
  if t.type == "utilization" then
    value = integer(t.value, field .. ".target.value", 1)
  else
    value = positive(t.value, field .. ".target.value")
  end
  local resource = m.resource == nil and name or m.resource
  if mtype == "resource" and (type(resource) ~= "string" or resource == "") then
    fail(field .. ".resource", "non-empty string expected")
  end
  local out = {}
  for k, v in pairs(m) do out[k] = v end
  out.type, out.target = mtype, { type = t.type, value = value }
  if mtype == "resource" then out.resource = resource end
  return out
end

local function copy_policies(list, field)
  if type(list) ~= "table" or #list == 0 then fail(field, "a non-empty list of policies expected") end
  local out = {}
  for i, p in ipairs(list) do
    local f = format("%s[%d]", field, i)
    if type(p) ~= "table" then fail(f, "policy table expected ({ type = \"Pods\", value = 4, period = \"15s\" })") end
    known(p, f, POLICY_KEYS)
    one_of(p.type, f .. ".type", POLICY_TYPES, "Pods, Percent")
    local period = duration(p.period, f .. ".period")
    if period <= 0 or period > M.MAX_PERIOD or period ~= floor(period) then
      fail(f .. ".period", format("whole seconds from 1s to %ds expected", M.MAX_PERIOD))
    end
    out[i] = { type = p.type, value = integer(p.value, f .. ".value", 1), period = period }
  end
  return out
end

-- GenerateHPAScaleUpRules / GenerateHPAScaleDownRules: the given fields over Kubernetes' defaults.
local function rules(given, field, defaults)
  if given ~= nil and type(given) ~= "table" then fail(field, "table expected") end
  given = given or {}
  known(given, field, RULE_KEYS)
  local out = { select_policy = defaults.select_policy, stabilization_window = defaults.stabilization_window,
    policies = defaults.policies }
  if given.select_policy ~= nil then
    out.select_policy = one_of(given.select_policy, field .. ".select_policy", SELECT, "Max, Min, Disabled")
  end
  if given.stabilization_window ~= nil then
    local w = duration(given.stabilization_window, field .. ".stabilization_window")
    if w > M.MAX_STABILIZATION_WINDOW or w ~= floor(w) then
      fail(field .. ".stabilization_window", format("whole seconds from 0s to %ds expected", M.MAX_STABILIZATION_WINDOW))
    end
    out.stabilization_window = w
  end
  if given.policies ~= nil then out.policies = copy_policies(given.policies, field .. ".policies") end
  if given.tolerance ~= nil then out.tolerance = tolerance(given.tolerance, field .. ".tolerance") end
  return out
end

-- check(spec) -> a new, complete spec; raises naming the field.
function M.check(spec)
  if type(spec) ~= "table" then fail("spec", "table expected") end
  if checked[spec] then return spec end
  local out = {}
  for k, v in pairs(spec) do out[k] = v end
  out.min_replicas = spec.min_replicas == nil and 1 or integer(spec.min_replicas, "min_replicas", 0)
  if spec.max_replicas == nil then fail("max_replicas", "required") end
  out.max_replicas = integer(spec.max_replicas, "max_replicas", 1)
  if out.max_replicas < out.min_replicas then
    fail("max_replicas", format("must be >= min_replicas (%d), got %d", out.min_replicas, out.max_replicas))
  end
  out.tolerance = spec.tolerance == nil and M.DEFAULT_TOLERANCE or tolerance(spec.tolerance, "tolerance")
  out.downscale_stabilization = spec.downscale_stabilization == nil and M.DEFAULT_DOWNSCALE_STABILIZATION
    or duration(spec.downscale_stabilization, "downscale_stabilization")
  out.cpu_initialization_period = spec.cpu_initialization_period == nil and M.DEFAULT_CPU_INITIALIZATION_PERIOD
    or duration(spec.cpu_initialization_period, "cpu_initialization_period")
  out.initial_readiness_delay = spec.initial_readiness_delay == nil and M.DEFAULT_INITIAL_READINESS_DELAY
    or duration(spec.initial_readiness_delay, "initial_readiness_delay")

  -- Kubernetes' default when no metric is given: 80 % of the CPU request.
  local metrics = spec.metrics
  if metrics == nil then
    metrics = { { name = "cpu", type = "resource", target = { type = "utilization", value = 80 } } }
  end
  if type(metrics) ~= "table" or #metrics == 0 then fail("metrics", "a non-empty list of metrics expected") end
  out.metrics = {}
  local names, scale_to_zero_ok = {}, false
  for i, m in ipairs(metrics) do
    local c = check_metric(m, format("metrics[%d]", i))
    if names[c.name] then fail(format("metrics[%d].name", i), format("%q is used twice", c.name)) end
    names[c.name] = true
    if c.type == "object" or c.type == "external" then scale_to_zero_ok = true end
    out.metrics[i] = c
  end
  -- HPAScaleToZero: min_replicas 0 needs a metric that does not come from the instances themselves.
  if out.min_replicas == 0 and not scale_to_zero_ok then
    fail("min_replicas", "0 needs at least one object or external metric")
  end

  -- No behavior: the controller's original algorithm (scale-up limit, downscale stabilization).
  if spec.behavior ~= nil then
    if type(spec.behavior) ~= "table" then fail("behavior", "table expected") end
    known(spec.behavior, "behavior", BEHAVIOR_KEYS)
    out.behavior = {
      scale_up = rules(spec.behavior.scale_up, "behavior.scale_up", {
        select_policy = "Max", stabilization_window = 0,
        policies = { { type = "Pods", value = 4, period = 15 }, { type = "Percent", value = 100, period = 15 } } }),
      scale_down = rules(spec.behavior.scale_down, "behavior.scale_down", {
        select_policy = "Max", stabilization_window = out.downscale_stabilization,
        policies = { { type = "Percent", value = 100, period = 15 } } }),
    }
  end
  checked[out] = true
  return out
end

return M
