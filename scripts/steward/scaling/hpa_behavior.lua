-- steward.scaling.hpa_behavior: what Kubernetes' horizontal controller does to a recommendation
-- after the metrics (pkg/controller/podautoscaler/horizontal.go): stabilization windows over the
-- recent recommendations, scale rate policies over the recent scale events, min/max, and the
-- condition reasons it reports (ScaleUpLimit, TooManyReplicas, ...). The controller keeps its
-- history in memory; ours lives in a plain state table the caller persists. Pure: times are
-- seconds from the caller's clock.
local ipairs, floor, ceil, max, min = ipairs, math.floor, math.ceil, math.max, math.min

local M = {}

-- Go's int32(x) of a non-negative float truncates.
local function trunc(x) return x >= 0 and floor(x) or ceil(x) end

-- recordInitialRecommendation: the first look at a target remembers its size as a recommendation.
function M.record_initial(state, current, now)
  if state.recommendations == nil then state.recommendations = { { replicas = current, at = now } } end
end

-- Replace the last outdated entry of a history, or append: the controller's bounded reuse.
local function put(list, entry, old_index)
  if old_index then list[old_index] = entry else list[#list + 1] = entry end
end

-- stabilizeRecommendation (no behavior): the highest recommendation of the downscale window.
function M.stabilize(state, window, recommended, now)
  local list = state.recommendations
  local best, old = recommended, nil
  local cutoff = now - window
  for i, rec in ipairs(list) do
    if rec.at < cutoff then old = i
    elseif rec.replicas > best then best = rec.replicas end
  end
  put(list, { replicas = recommended, at = now }, old)
  return best
end

-- stabilizeRecommendationWithBehaviors: between the lowest recommendation of the scale-up window
-- and the highest of the scale-down window, as close to current as that allows.
function M.stabilize_with_behaviors(state, behavior, current, recommended, now)
  local list = state.recommendations
  local up, down = recommended, recommended
  local up_cutoff = now - behavior.scale_up.stabilization_window
  local down_cutoff = now - behavior.scale_down.stabilization_window
  local old
  for i, rec in ipairs(list) do
    if rec.at > up_cutoff then up = min(rec.replicas, up) end
    if rec.at > down_cutoff then down = max(rec.replicas, down) end
    if rec.at < up_cutoff and rec.at < down_cutoff then old = i end
  end
  local out = current
  if out < up then out = up end
  if out > down then out = down end
  put(list, { replicas = recommended, at = now }, old)
  if recommended >= current then
    return out, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
  end
  return out, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
end

-- getReplicasChangePerPeriod
local function change_in_period(period, events, now)
  local cutoff, n = now - period, 0
  for _, e in ipairs(events or {}) do
    if e.at > cutoff then n = n + e.change end
  end
  return n
end
M.change_in_period = change_in_period

-- calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now.
function M.scale_up_limit(current, up_events, down_events, rules, now)
  if rules.select_policy == "Disabled" then return current end
  local pick, result = max, -math.huge
  if rules.select_policy == "Min" then pick, result = min, math.huge end
  for _, p in ipairs(rules.policies) do
    local start = current - change_in_period(p.period, up_events, now) + change_in_period(p.period, down_events, now)
    local proposed
    if p.type == "Pods" then
      proposed = start + p.value
    else
      -- Rounded up, or a small target could never grow.
      proposed = ceil(start * (1 + p.value / 100))
    end
    result = pick(result, proposed)
  end
  return result
end

-- calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now.
function M.scale_down_limit(current, up_events, down_events, rules, now)
  if rules.select_policy == "Disabled" then return current end
  local pick, result = min, math.huge
  if rules.select_policy == "Min" then pick, result = max, -math.huge end
  for _, p in ipairs(rules.policies) do
    local start = current - change_in_period(p.period, up_events, now) + change_in_period(p.period, down_events, now)
    local proposed
    if p.type == "Pods" then
      proposed = start - p.value
    else
      proposed = trunc(start * (1 - p.value / 100))
    end
    result = pick(result, proposed)
  end
  return result
end

local WITHIN = "DesiredWithinRange"
local WITHIN_MSG = "the desired count is within the acceptable range"

-- convertDesiredReplicasWithBehaviorRate: the policies' rate, then min/max.
function M.convert_with_behavior_rate(state, behavior, current, desired, min_replicas, max_replicas, now)
  if desired > current then
    local limit = M.scale_up_limit(current, state.scale_up_events, state.scale_down_events, behavior.scale_up, now)
    -- No further growth until old events leave the periods.
    if limit < current then limit = current end
    local allowed, reason, msg = max_replicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    if allowed > limit then
      allowed, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
    end
    if desired > allowed then return allowed, reason, msg end
  elseif desired < current then
    local limit = M.scale_down_limit(current, state.scale_up_events, state.scale_down_events, behavior.scale_down, now)
    if limit > current then limit = current end
    local allowed, reason, msg = min_replicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if allowed < limit then
      allowed, reason, msg = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
    end
    if desired < allowed then return allowed, reason, msg end
  end
  return desired, WITHIN, WITHIN_MSG
end

-- calculateScaleUpLimit: without behavior, at most double (or 4) per step, against runaway metrics.
-- Module fields, like the Go package variables: Kubernetes' own tests raise the factor to 8.
M.SCALE_UP_LIMIT_FACTOR = 2
M.SCALE_UP_LIMIT_MINIMUM = 4
function M.legacy_scale_up_limit(current)
  return trunc(max(M.SCALE_UP_LIMIT_FACTOR * current, M.SCALE_UP_LIMIT_MINIMUM))
end

-- convertDesiredReplicasWithRules (no behavior).
function M.convert_with_rules(current, desired, min_replicas, max_replicas)
  local limit = M.legacy_scale_up_limit(current)
  local allowed, reason, msg
  if max_replicas > limit then
    allowed, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
  else
    allowed, reason, msg = max_replicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
  end
  if desired < min_replicas then
    return min_replicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
  elseif desired > allowed then
    return allowed, reason, msg
  end
  return desired, WITHIN, WITHIN_MSG
end

-- markScaleEventsOutdated + storeScaleEvent: remember a scale for the policies' periods, reusing
-- the slot of an event older than the longest period.
function M.store_scale_event(state, behavior, prev, new, now)
  if behavior == nil then return end
  local key, rules, change
  if new > prev then
    key, rules, change = "scale_up_events", behavior.scale_up, new - prev
  else
    key, rules, change = "scale_down_events", behavior.scale_down, prev - new
  end
  local longest = 0
  for _, p in ipairs(rules.policies) do
    if p.period > longest then longest = p.period end
  end
  local list = state[key] or {}
  state[key] = list
  local cutoff, old = now - longest, nil
  for i, e in ipairs(list) do
    if e.at < cutoff then e.outdated = true end
    if e.outdated then old = i end
  end
  put(list, { change = change, at = now, outdated = false }, old)
end

return M
