-- steward.deploy.flagger: Flagger's canary schedule as a pure state machine. A schedule is a
-- plain table (its settings and its status: phase, weights, failed checks, iterations) that the
-- rollout stores; next(schedule, checks_ok) advances it by one of Flagger's scheduler ticks
-- (pkg/controller/scheduler.go: advanceCanary, nextStepWeight, runCanary, runAB, runBlueGreen,
-- runPromotionTrafficShift, rollback) and returns what to do to the traffic and the instances.
-- No I/O here: the caller applies the action through a driver and arms a timer for the next tick.
-- docs/deploy/analysis.md has the fields and the Flagger names.
local time = require "steward.time"

local type, pairs, ipairs, error, tostring, format = type, pairs, ipairs, error, tostring, string.format
local floor = math.floor

local M = {}

M.TOTAL_WEIGHT = 100
M.DEFAULT_INTERVAL = 60 -- Flagger's AnalysisInterval

local FIELDS = {
  step_weight = true, step_weights = true, max_weight = true, interval = true, threshold = true,
  iterations = true, match = true, step_weight_promotion = true,
}

local function fail(field, msg) error("flagger: " .. field .. ": " .. msg, 3) end

local function weight(field, v, allow_over)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= floor(v) or v < 0 or (not allow_over and v > M.TOTAL_WEIGHT) then
    fail(field, format("integer between 0 and %d expected, got %s", M.TOTAL_WEIGHT, tostring(v)))
  end
  return v
end

-- new(settings) -> schedule, in phase Progressing with all traffic on the primary (what Flagger
-- holds once it has detected a new revision). Raises an error naming the field on bad settings.
function M.new(o)
  if type(o) ~= "table" then error("flagger.new: settings: table expected, got " .. type(o), 2) end
  for k in pairs(o) do
    if not FIELDS[k] then fail(tostring(k), "unknown field") end
  end
  local s = {
    step_weight = weight("step_weight", o.step_weight) or 0,
    max_weight = weight("max_weight", o.max_weight) or 0,
    step_weight_promotion = weight("step_weight_promotion", o.step_weight_promotion) or 0,
    threshold = o.threshold or 1,
    iterations = o.iterations or 0,
  }
  if type(s.threshold) ~= "number" or s.threshold ~= floor(s.threshold) or s.threshold < 0 then
    fail("threshold", "integer >= 0 expected (failed checks before a rollback)")
  end
  if s.threshold == 0 then s.threshold = 1 end -- Flagger's GetAnalysisThreshold
  if type(s.iterations) ~= "number" or s.iterations ~= floor(s.iterations) or s.iterations < 0 then
    fail("iterations", "integer >= 0 expected")
  end
  if o.step_weights ~= nil then
    if type(o.step_weights) ~= "table" or #o.step_weights == 0 then fail("step_weights", "a non-empty list of weights expected") end
    local list, prev = {}, 0
    for i, w in ipairs(o.step_weights) do
      -- Flagger lets the last step overflow the total (it is capped when used).
      weight("step_weights[" .. i .. "]", w, true)
      if w <= prev then fail("step_weights[" .. i .. "]", "weights must increase") end
      list[i], prev = w, w
    end
    s.step_weights = list
  end
  if o.match ~= nil then
    if type(o.match) ~= "table" then fail("match", "table expected (the A/B test's request match, for the driver)") end
    s.match = o.match
  end
  local iv = o.interval
  if iv == nil then
    s.interval = M.DEFAULT_INTERVAL
  else
    local secs, err = time.parse_duration(iv)
    if not secs or secs <= 0 then fail("interval", "positive duration like \"1m\" expected" .. (err and (" (" .. err .. ")") or "")) end
    s.interval = secs
  end
  if s.iterations == 0 and s.step_weight == 0 and not s.step_weights then
    fail("step_weight", "a canary needs step_weight or step_weights (or iterations for A/B and blue-green)")
  end
  s.phase = "Progressing"
  s.canary_weight, s.primary_weight = 0, M.TOTAL_WEIGHT
  s.failed_checks, s.iteration = 0, 0
  return s
end

-- strategy(schedule) -> "canary" | "ab" | "blue_green" (Flagger's DeploymentStrategy)
function M.strategy(s)
  if s.iterations > 0 and s.match ~= nil and next(s.match) ~= nil then return "ab" end
  if s.iterations > 0 then return "blue_green" end
  return "canary"
end

-- max_weight(schedule): the weight at which the canary is promoted.
function M.max_weight(s)
  local sw = s.step_weights
  if sw and #sw > 0 then return math.min(M.TOTAL_WEIGHT, sw[#sw]) end
  if s.max_weight > 0 then return s.max_weight end
  return M.TOTAL_WEIGHT
end

-- next_step_weight(schedule, canary_weight): how much the next step adds (nextStepWeight).
function M.next_step_weight(s, cw)
  local sw = s.step_weights
  if s.step_weight > 0 or not sw or #sw == 0 then return s.step_weight end
  local max_step = M.TOTAL_WEIGHT - cw
  if max_step == 0 then return 1 end -- at the total: any step promotes
  if cw == 0 then return math.min(max_step, sw[1]) end
  for i = 1, #sw - 1 do
    if sw[i] == cw then return math.min(max_step, sw[i + 1] - cw) end
  end
  return max_step
end

local function routes(s, primary, canary)
  s.primary_weight, s.canary_weight = primary, canary
  return { action = "set_weight", primary = primary, canary = canary, next_in = s.interval }
end

local function rollback(s, reason)
  s.phase = "Failed"
  s.primary_weight, s.canary_weight = M.TOTAL_WEIGHT, 0
  return { action = "rollback", primary = M.TOTAL_WEIGHT, canary = 0, reason = reason }
end

local function promote(s)
  s.phase = "Promoting"
  return { action = "promote", next_in = s.interval }
end

local function wait(s, reason) return { action = "wait", reason = reason, next_in = s.interval } end

-- Promoting: the primary runs the new revision; traffic goes back to it, at once or by
-- step_weight_promotion per tick (runPromotionTrafficShift).
local function promotion_shift(s)
  local T = M.TOTAL_WEIGHT
  if s.step_weight_promotion == 0 then
    s.phase = "Finalising"
    return routes(s, T, 0)
  end
  if s.canary_weight > 0 then
    local p = math.min(T, s.primary_weight + s.step_weight_promotion)
    local c = math.max(0, s.canary_weight - s.step_weight_promotion)
    local a = routes(s, p, c)
    if p == T then s.phase = "Finalising" end
    return a
  end
  return wait(s, "promotion: no traffic on the canary")
end

local function run_canary(s)
  local T, cw, pw = M.TOTAL_WEIGHT, s.canary_weight, s.primary_weight
  if cw < M.max_weight(s) then
    local step = M.next_step_weight(s, cw)
    pw, cw = math.max(0, pw - step), math.min(T, cw + step)
    return routes(s, pw, cw)
  end
  return promote(s)
end

local function run_ab(s)
  if s.iterations > s.iteration then
    s.iteration = s.iteration + 1
    local a = routes(s, 0, M.TOTAL_WEIGHT)
    a.match, a.iteration = s.match, s.iteration
    return a
  end
  if s.iterations == s.iteration then return promote(s) end
  return wait(s, "A/B: iterations done")
end

local function run_blue_green(s)
  if s.iterations > s.iteration then
    s.iteration = s.iteration + 1
    return wait(s, format("blue-green: iteration %d/%d", s.iteration, s.iterations))
  end
  if s.iterations == s.iteration then
    s.iteration = s.iteration + 1
    return routes(s, 0, M.TOTAL_WEIGHT)
  end
  return promote(s)
end

local function check(s)
  if type(s) ~= "table" or type(s.phase) ~= "string" or type(s.canary_weight) ~= "number" then
    error("flagger.next: schedule: a schedule table (from flagger.new) expected", 3)
  end
end

-- next(schedule, checks_ok) -> action; schedule is updated in place. checks_ok is the outcome of
-- this tick's checks (metrics, webhooks; on the first tick, the pre-rollout checks). Actions:
--   {action = "set_weight", primary = n, canary = n}   route traffic so
--   {action = "promote"}                                 copy the canary's revision to the primary
--   {action = "finalise"}                                scale the canary down: the rollout succeeded
--   {action = "rollback", primary = 100, canary = 0}     all traffic to the primary, canary down
--   {action = "wait", reason = ...}                      nothing this tick
--   {action = "done"}                                    the schedule has ended (Succeeded or Failed)
-- set_weight, promote and wait carry next_in, the seconds until the next tick; after finalise,
-- rollback and done the schedule has ended.
function M.next(s, checks_ok)
  check(s)
  local phase = s.phase
  if phase == "Succeeded" or phase == "Failed" then return { action = "done", phase = phase } end
  if phase == "Promoting" then return promotion_shift(s) end
  if phase == "Finalising" then
    s.phase = "Succeeded"
    return { action = "finalise" }
  end
  if phase ~= "Progressing" then error("flagger.next: schedule: unknown phase " .. tostring(phase), 2) end
  -- Failed checks reached the threshold on earlier ticks: roll back before anything else.
  if s.failed_checks >= s.threshold then
    return rollback(s, format("failed checks threshold reached %d", s.failed_checks))
  end
  if not checks_ok then
    s.failed_checks = s.failed_checks + 1
    return wait(s, format("checks failed (%d/%d)", s.failed_checks, s.threshold))
  end
  local st = M.strategy(s)
  if st == "ab" then return run_ab(s) end
  if st == "blue_green" then return run_blue_green(s) end
  if M.next_step_weight(s, s.canary_weight) > 0 then return run_canary(s) end
  return wait(s, "no step weight")
end

-- restart(schedule): a new revision arrived during the analysis: all traffic back to the
-- primary and the status reset (Flagger's hasCanaryRevisionChanged).
function M.restart(s)
  check(s)
  s.phase, s.failed_checks, s.iteration = "Progressing", 0, 0
  return routes(s, M.TOTAL_WEIGHT, 0)
end

-- abort(schedule [, reason]): a person (or another policy) stops the canary now.
function M.abort(s, reason)
  check(s)
  if s.phase == "Succeeded" or s.phase == "Failed" then return { action = "done", phase = s.phase } end
  return rollback(s, reason or "aborted")
end

return M
