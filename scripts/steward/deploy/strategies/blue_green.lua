-- steward.deploy.strategies.blue_green: checks a blue-green strategy (Argo Rollouts' fields) and
-- compiles it into the plan the rollout engine walks: preview up (no traffic), pre-promotion
-- analysis, promotion (at once, after auto_promotion_seconds, or by a person), the switch,
-- post-promotion analysis (a failure switches back), then the old colour is scaled down after
-- scale_down_delay.
local canary = require "steward.deploy.strategies.canary"

local type, pairs, tostring, error, format, floor = type, pairs, tostring, error, string.format, math.floor

local M = {}

local KNOWN = { pre_promotion_analysis = true, post_promotion_analysis = true, auto_promotion_enabled = true,
  auto_promotion_seconds = true, scale_down_delay = true, abort_scale_down_delay = true, preview_replicas = true }

local function fail(field, reason) error(format("deploy.blue_green: %s: %s", field, reason), 3) end

function M.compile(spec)
  if spec == nil then spec = {} end
  if type(spec) ~= "table" then error("deploy.blue_green: spec: table expected, got " .. type(spec), 2) end
  for k in pairs(spec) do
    if not KNOWN[k] then fail(tostring(k), "unknown field") end
  end
  local s = spec.auto_promotion_seconds
  if s ~= nil and (type(s) ~= "number" or s < 0 or s ~= floor(s)) then fail("auto_promotion_seconds", "integer >= 0 expected") end
  local steps = { { kind = "preview" } }
  if spec.pre_promotion_analysis ~= nil then
    steps[#steps + 1] = { kind = "analysis", analysis = canary.analysis_spec(spec.pre_promotion_analysis, "pre_promotion_analysis") }
  end
  if spec.auto_promotion_enabled == false then
    steps[#steps + 1] = { kind = "pause" }
  elseif s and s > 0 then
    steps[#steps + 1] = { kind = "pause", duration = s }
  end
  steps[#steps + 1] = { kind = "switch" }
  if spec.post_promotion_analysis ~= nil then
    steps[#steps + 1] = { kind = "analysis", post = true,
      analysis = canary.analysis_spec(spec.post_promotion_analysis, "post_promotion_analysis") }
  end
  return { kind = "blue_green", steps = steps, preview_replicas = spec.preview_replicas,
    scale_down_delay = canary.duration(spec.scale_down_delay or "30s", "scale_down_delay"),
    abort_scale_down_delay = canary.duration(spec.abort_scale_down_delay or "30s", "abort_scale_down_delay") }
end

return M
