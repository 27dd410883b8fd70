-- steward.scaling.autoscaler: one tick's decision, without I/O. It turns the supervisor's
-- instances into HPA's observation, narrows the spec's replica bounds by the schedule's window,
-- the quota's headroom, adds the forecast as the predictive metric's observation, asks the decision module (keda, which wraps
-- hpa) and says which of those bounds held the answer back, so the decision log can tell
-- "limited by quota tenants.acme.instances" from "limited by max_replicas". Times are seconds of
-- the clock the caller passes (specs run it on a fake clock).
local scaling = require "steward.scaling"

local type, pairs, ipairs, tostring, pcall, format = type, pairs, ipairs, tostring, pcall, string.format
local huge, max = math.huge, math.max

local M = {}

-- Instances that stand for capacity the revision has (or is getting): a stopping or exited
-- one is on its way out.
local GONE = { stopping = true, stopped = true, exited = true }

-- obs(instances, revision, metrics, seen_ready) -> HPA's observation. instances: the
-- supervisor's (any revision); metrics: {[name] = sample}; seen_ready: {[id] = t} the caller keeps,
-- when each instance was first seen ready (the supervisor does not record it).
function M.obs(instances, revision, metrics, seen_ready, now)
  local list, current = {}, 0
  for _, inst in ipairs(instances) do
    if inst.revision == revision and not GONE[inst.state] then
      current = current + 1
      local ready = inst.ready == true and inst.pid ~= nil
      local phase = inst.state == "failed" and "failed" or (inst.pid and "running" or "pending")
      if ready and seen_ready and not seen_ready[inst.id] then seen_ready[inst.id] = now end
      list[#list + 1] = { id = inst.id, ready = ready, phase = phase, started_at = inst.started_at,
        ready_at = seen_ready and seen_ready[inst.id] or nil, request = inst.request }
    end
  end
  return { current = current, instances = list, metrics = metrics or {} }
end

-- The decision module: keda (which calls hpa) when this build has it, else hpa.
function M.decider()
  local keda = scaling.optional "steward.scaling.keda"
  if keda and keda.decide then return keda, "keda" end
  local hpa = scaling.optional "steward.scaling.hpa"
  if hpa and hpa.decide then return hpa, "hpa" end
  return nil, "neither steward.scaling.keda nor steward.scaling.hpa is in this build"
end

-- decide(s, state, obs, now, limits [, decider]) -> decision, state | nil, err.
-- s: the compiled spec (steward.scaling.check); limits = {window = {min, max, window} (the
-- schedule's bounds), headroom = instances the quota still allows to start (math.huge without
-- one), quota = its name, predicted = predict.proposal's answer (or nil with predicted_error)}.
function M.decide(s, state, obs, now, limits, decider)
  limits = limits or {}
  if not decider then
    local err
    decider, err = M.decider()
    if not decider then return nil, err end
  end
  local d = scaling.decision_spec(s)
  local why_min, why_max = "min_replicas", "max_replicas"
  local w = limits.window
  if w then
    if w.min and w.min > d.min_replicas then d.min_replicas, why_min = w.min, "schedule " .. tostring(w.window) end
    if w.max and w.max < d.max_replicas then d.max_replicas, why_max = w.max, "schedule " .. tostring(w.window) end
    if d.min_replicas > d.max_replicas then d.min_replicas = d.max_replicas end
  end
  -- the forecast is the observation of the "predicted:<metric>" metric (neutral without one)
  local p = limits.predicted
  local pname
  if s.predictive then
    local predict = require "steward.scaling.predict"
    pname = "predicted:" .. s.predictive.metric
    local metrics = {}
    for k, v in pairs(obs.metrics or {}) do metrics[k] = v end
    metrics[pname] = predict.observation(p, limits.predicted_error)
    obs = { current = obs.current, instances = obs.instances, metrics = metrics }
  end
  -- The quota bounds growth, never what already runs: at most the current count plus headroom.
  local headroom = limits.headroom or huge
  if headroom < huge then
    local cap = obs.current + max(headroom, 0)
    if cap < d.max_replicas then
      d.max_replicas, why_max = max(cap, 1), "quota " .. tostring(limits.quota or "")
      if d.min_replicas > d.max_replicas then d.min_replicas = d.max_replicas end
    end
  end
  local ok, decision, new_state = pcall(decider.decide, d, state, obs, now)
  if not ok then return nil, "decision: " .. tostring(decision) end
  if type(decision) ~= "table" then return nil, "decision: the decision module answered " .. type(decision) end
  -- the forecast's details on its proposal: what it predicted for when, its interval and error
  for _, prop in ipairs(decision.proposals or {}) do
    if prop.metric == pname then
      if p then
        prop.forecast, prop.low, prop.high, prop.at, prop.forecast_error = p.forecast, p.low, p.high, p.at, p.error
      else
        prop.unavailable = tostring(limits.predicted_error or "no forecast")
      end
    end
  end
  -- Below a minimum of at least 1 the service is brought up whatever the metrics say (HPA holds
  -- a target at 0, and KEDA holds it while a source fails; a minimum is the operator's floor).
  if d.min_replicas >= 1 and decision.desired < d.min_replicas then
    decision.desired, decision.limited_by = d.min_replicas, "min_replicas"
    decision.reason = format("below the minimum: %d -> %d", obs.current, d.min_replicas)
  end
  if decision.limited_by == "max_replicas" then decision.limited_by = why_max end
  if decision.limited_by == "min_replicas" then decision.limited_by = why_min end
  decision.bounds = { min = d.min_replicas, max = d.max_replicas }
  if w then decision.window = w.window end
  return decision, new_state
end

-- The service's total of a sample: one value, or the sum over instances (what the capacity
-- history records and predictive scaling forecasts).
function M.total(sample)
  if type(sample) ~= "table" or sample.error then return nil end
  if sample.value ~= nil then return sample.value end
  if sample.per_instance == nil then return nil end
  local sum, n = 0, 0
  for _, v in pairs(sample.per_instance) do sum, n = sum + v, n + 1 end
  if n == 0 then return nil end
  return sum
end

-- The value a metric's sample stands for in /metrics (what the target compares with): one
-- value, or the mean over instances.
function M.value(sample)
  if type(sample) ~= "table" or sample.error then return nil end
  if sample.value ~= nil then return sample.value end
  if sample.average ~= nil then return sample.average end
  local sum, n = 0, 0
  for _, v in pairs(sample.per_instance or {}) do sum, n = sum + v, n + 1 end
  if n == 0 then return nil end
  return sum / n
end

-- outcome(decision) -> "scaled_up" | "scaled_down" | "limited" (held back by a limit) | "unchanged"
function M.outcome(decision)
  if decision.desired > decision.current then return "scaled_up" end
  if decision.desired < decision.current then return "scaled_down" end
  if decision.limited_by and decision.recommended and decision.recommended ~= decision.current then return "limited" end
  return "unchanged"
end

-- A line for the log and events: "api v1: 2 -> 5 (rps 480/100 per instance)".
function M.summary(service, revision, decision)
  return format("%s %s: %d -> %d%s", service, revision, decision.current, decision.desired,
    decision.reason and (" (" .. tostring(decision.reason) .. ")") or "")
end

return M
