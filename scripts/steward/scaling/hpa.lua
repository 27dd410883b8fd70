-- steward.scaling.hpa: Kubernetes HPA v2's algorithm, exactly (docs/scaling/hpa.md). One call of
-- decide() is one reconcile of Kubernetes' horizontal controller: a proposal per metric from the
-- replica calculator (steward.scaling.hpa_replicas), the largest wins, then stabilization, scale
-- rate policies and min/max (steward.scaling.hpa_behavior). Pure: no I/O; times are seconds from
-- the caller's clock, the history lives in a plain state table the caller persists.
local spec_mod = require "steward.scaling.hpa_spec"
local replicas_mod = require "steward.scaling.hpa_replicas"
local behavior_mod = require "steward.scaling.hpa_behavior"

local type, ipairs, pairs, tostring, error, format = type, ipairs, pairs, tostring, error, string.format

local M = {}

M.check = spec_mod.check

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

-- Kubernetes' condition reasons -> the decision's limited_by.
local LIMITED_BY = {
  ScaleUpLimit = "scale_up_policy", ScaleDownLimit = "scale_down_policy",
  TooManyReplicas = "max_replicas", TooFewReplicas = "min_replicas",
}

-- The ScalingActive=False reason Kubernetes gives for the first metric that failed.
local FAILED = {
  resource = "FailedGetResourceMetric", pods = "FailedGetPodsMetric",
  object = "FailedGetObjectMetric", external = "FailedGetExternalMetric",
}

local function tolerances(spec, behavior)
  local t = spec.tolerance
  local up = behavior and behavior.scale_up.tolerance or t
  local down = behavior and behavior.scale_down.tolerance or t
  return { up = up, down = down }
end

local function check_obs(obs)
  if type(obs) ~= "table" then error("scaling: obs: table expected", 3) end
  local current = obs.current
  if type(current) ~= "number" or current < 0 or current ~= math.floor(current) then
    error("scaling: obs.current: integer >= 0 expected, got " .. tostring(current), 3)
  end
  if obs.instances ~= nil and type(obs.instances) ~= "table" then error("scaling: obs.instances: list expected", 3) end
  if obs.metrics ~= nil and type(obs.metrics) ~= "table" then error("scaling: obs.metrics: table expected", 3) end
end

-- computeReplicasForMetrics: the largest proposal; nil when every metric failed or a failed metric
-- might have held a scale-down back.
local function compute(spec, obs, now)
  local current = obs.current
  local instances = obs.instances or {}
  local status_replicas = obs.status_replicas or current
  local tol = tolerances(spec, spec.behavior)
  local proposals, best, best_metric = {}, 0, nil
  local invalid, first_err, first_type = 0, nil, nil
  for i, m in ipairs(spec.metrics) do
    local p, err, partial = replicas_mod.proposal(spec, tol, current, status_replicas, m,
      (obs.metrics or {})[m.name], instances, now)
    local entry = p or partial or {}
    entry.metric, entry.target = m.name, m.target.value
    if not p then
      entry.error = err
      entry.replicas = nil
      invalid = invalid + 1
      if not first_err then first_err, first_type = format("%s: %s", m.name, err), m.type end
    elseif best == 0 or p.replicas > best then
      best, best_metric = p.replicas, m.name
    end
    proposals[i] = entry
  end
  if invalid >= #spec.metrics or (invalid > 0 and best < current) then
    return nil, proposals, format("invalid metrics (%d invalid out of %d), first error is: %s", invalid, #spec.metrics, first_err),
      FAILED[first_type]
  end
  return best, proposals, nil, best_metric
end

local function describe(d, metric)
  if d.desired > d.current then
    return format("%s above target: %d -> %d", metric or "metric", d.current, d.desired)
  elseif d.desired < d.current then
    return format("all metrics below target: %d -> %d", d.current, d.desired)
  end
  return format("no change: %d replicas", d.current)
end

-- The supervisor's instance states as the pod phases the algorithm knows: a process waiting
-- out its restart backoff is a running pod that is not ready (CrashLoopBackOff), one being
-- drained has a deletion timestamp, a clean exit nobody restarts serves no more than a failure.
local PHASE = { starting = "pending", running = "running", restarting = "running",
  stopping = "deleted", exited = "failed", failed = "failed" }

-- instance(supervisor_instance [, request]) -> the obs instance for it. request: what one
-- instance asks of each resource ({ cpu = 0.5, memory = 536870912 }), for utilization targets.
function M.instance(inst, request)
  if type(inst) ~= "table" then error("scaling: instance: table expected, got " .. type(inst), 2) end
  if request ~= nil and type(request) ~= "table" then error("scaling: request: table or nil expected", 2) end
  local phase = PHASE[inst.state or "running"]
  if not phase then error("scaling: instance.state: unknown state " .. tostring(inst.state), 2) end
  return { id = inst.id, phase = phase, ready = phase == "running" and inst.ready == true,
    started_at = inst.started_at, ready_at = inst.ready_at, request = request }
end

-- decide(spec, state, obs, now) -> decision, state. state is not modified; the returned one holds
-- this call's recommendation and, when desired ~= current, the scale event.
function M.decide(spec, state, obs, now)
  spec = spec_mod.check(spec)
  if state ~= nil and type(state) ~= "table" then error("scaling: state: table or nil expected", 2) end
  check_obs(obs)
  if type(now) ~= "number" then error("scaling: now: number expected, got " .. type(now), 2) end
  state = deep_copy(state or {})

  local current, min_r, max_r = obs.current, spec.min_replicas, spec.max_replicas
  behavior_mod.record_initial(state, current, now)
  local d = { current = current, proposals = {} }

  if current == 0 and min_r ~= 0 then
    -- A target scaled to zero by hand is left alone (KEDA, not the HPA, wakes it).
    d.desired, d.scaling_active = 0, "ScalingDisabled"
    d.reason = "scaling is disabled since the replica count of the target is zero"
    return d, state
  elseif current > max_r then
    d.desired, d.limited_by = max_r, "max_replicas"
    d.reason = format("current number of replicas above max_replicas: %d -> %d", current, max_r)
  elseif current < min_r then
    d.desired, d.limited_by = min_r, "min_replicas"
    d.reason = format("current number of replicas below min_replicas: %d -> %d", current, min_r)
  else
    local best, proposals, err, metric = compute(spec, obs, now)
    d.proposals = proposals
    if not best then
      d.desired, d.error, d.scaling_active = current, err, metric
      d.reason = "not scaling: " .. err
      return d, state
    end
    d.scaling_active = "ValidMetricFound"
    d.recommended = best
    local desired, reason, msg
    if spec.behavior == nil then
      d.stabilized = behavior_mod.stabilize(state, spec.downscale_stabilization, best, now)
      d.able_to_scale = d.stabilized ~= best and "ScaleDownStabilized" or "ReadyForNewScale"
      desired, reason, msg = behavior_mod.convert_with_rules(current, d.stabilized, min_r, max_r)
    else
      local stab_reason
      d.stabilized, stab_reason = behavior_mod.stabilize_with_behaviors(state, spec.behavior, current, best, now)
      d.able_to_scale = d.stabilized ~= best and stab_reason or "ReadyForNewScale"
      desired, reason, msg = behavior_mod.convert_with_behavior_rate(state, spec.behavior, current, d.stabilized,
        min_r, max_r, now)
    end
    d.desired, d.condition = desired, reason
    d.limited_by = LIMITED_BY[reason]
    if d.limited_by == nil and d.stabilized ~= best then d.limited_by = "stabilization_window" end
    d.reason = describe(d, metric)
    if d.limited_by then
      local why = d.limited_by == "stabilization_window"
        and format("stabilization window holds %d (recommended %d)", d.stabilized, best)
        or format("%s (%s, recommended %d)", msg, reason, best)
      d.reason = d.reason .. "; " .. why
    end
  end

  if d.desired ~= current then
    behavior_mod.store_scale_event(state, spec.behavior, current, d.desired, now)
    state.last_scale_time = now
  end
  return d, state
end

return M
