-- steward.deploy.strategies.canary: checks a canary strategy and compiles it into the plan the
-- rollout engine walks. Two forms: Argo Rollouts' steps (set_weight, pause, analysis,
-- set_canary_scale, approval) with an optional background analysis, or Flagger's shorthand
-- (step_weight / step_weights, max_weight, interval, threshold) whose schedule
-- steward.deploy.flagger decides. Misuse raises an error naming the field.
local time = require "steward.time"

local type, ipairs, pairs, tostring, error, format, floor = type, ipairs, pairs, tostring, error, string.format, math.floor

local M = {}

local function fail(field, reason) error(format("deploy.canary: %s: %s", field, reason), 4) end

local function duration(v, field)
  if v == nil then return nil end
  local d, err = time.parse_duration(v)
  if not d then fail(field, tostring(err)) end
  return d
end
M.duration = duration

local function percent(v, field)
  if type(v) ~= "number" or v ~= floor(v) or v < 0 or v > 100 then fail(field, "integer from 0 to 100 expected") end
  return v
end

local function analysis_spec(v, field)
  if type(v) ~= "table" then fail(field, "analysis table expected (metrics = {...})") end
  if type(v.metrics) ~= "table" or #v.metrics == 0 then fail(field .. ".metrics", "a non-empty list of metrics expected") end
  return v
end
M.analysis_spec = analysis_spec

local function approval_spec(v, field)
  if type(v) ~= "table" then fail(field, "approval table expected") end
  local out = { approvers = v.approvers, notify = v.notify, reason = v.reason }
  out.timeout = duration(v.timeout or "1h", field .. ".timeout")
  return out
end
M.approval_spec = approval_spec

local STEP_KINDS = { set_weight = true, pause = true, analysis = true, set_canary_scale = true, approval = true }

local function step(s, i)
  local field = format("steps[%d]", i)
  if type(s) ~= "table" then fail(field, "table expected") end
  local kind
  for k in pairs(s) do
    if not STEP_KINDS[k] then fail(field, "unknown step kind '" .. tostring(k) .. "' (set_weight, pause, analysis, set_canary_scale, approval)") end
    if kind then fail(field, "one step kind per step, got " .. kind .. " and " .. k) end
    kind = k
  end
  if not kind then fail(field, "empty step") end
  local v = s[kind]
  field = field .. "." .. kind
  if kind == "set_weight" then
    return { kind = "set_weight", weight = percent(v, field) }
  elseif kind == "pause" then
    if type(v) ~= "table" then fail(field, "table expected ({} waits for promote, {duration = \"30s\"})") end
    return { kind = "pause", duration = duration(v.duration, field .. ".duration") }
  elseif kind == "analysis" then
    return { kind = "analysis", analysis = analysis_spec(v, field) }
  elseif kind == "set_canary_scale" then
    if type(v) ~= "table" then fail(field, "table expected ({replicas = n}, {weight = w} or {match_traffic_weight = true})") end
    local out = { kind = "set_canary_scale" }
    if v.replicas ~= nil then
      if type(v.replicas) ~= "number" or v.replicas < 0 or v.replicas ~= floor(v.replicas) then fail(field .. ".replicas", "integer >= 0 expected") end
      out.replicas = v.replicas
    elseif v.weight ~= nil then
      out.weight = percent(v.weight, field .. ".weight")
    elseif v.match_traffic_weight then
      out.match = true
    else
      fail(field, "replicas, weight or match_traffic_weight expected")
    end
    return out
  else
    return { kind = "approval", approval = approval_spec(v, field) }
  end
end

local KNOWN = { steps = true, analysis = true, abort_scale_down_delay = true, scale_down_delay = true,
  step_weight = true, step_weights = true, max_weight = true, interval = true, threshold = true,
  iterations = true, step_weight_promotion = true }

-- canary(spec) -> strategy {kind = "canary", steps, background, abort_scale_down_delay, scale_down_delay, flagger}
function M.compile(spec)
  if type(spec) ~= "table" then error("deploy.canary: spec: table expected, got " .. type(spec), 3) end
  for k in pairs(spec) do
    if not KNOWN[k] then fail(tostring(k), "unknown field") end
  end
  local out = { kind = "canary",
    abort_scale_down_delay = duration(spec.abort_scale_down_delay or "30s", "abort_scale_down_delay"),
    scale_down_delay = duration(spec.scale_down_delay or "30s", "scale_down_delay") }
  if spec.step_weight ~= nil or spec.step_weights ~= nil then
    if spec.steps ~= nil then fail("steps", "steps and Flagger's step_weight/step_weights exclude each other") end
    out.flagger = { step_weight = spec.step_weight, step_weights = spec.step_weights, max_weight = spec.max_weight or 50,
      interval = duration(spec.interval or "1m", "interval"), threshold = spec.threshold or 5,
      iterations = spec.iterations, step_weight_promotion = spec.step_weight_promotion }
    out.checks = analysis_spec(spec.analysis, "analysis")
    return out
  end
  if type(spec.steps) ~= "table" then fail("steps", "a list of steps expected (or Flagger's step_weight)") end
  out.steps = {}
  for i, s in ipairs(spec.steps) do out.steps[i] = step(s, i) end
  if spec.analysis ~= nil then
    out.background = analysis_spec(spec.analysis, "analysis")
    out.background_start = spec.analysis.start_at_step or 1
  end
  return out
end

return M
