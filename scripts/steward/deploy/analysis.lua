-- steward.deploy.analysis: Argo Rollouts' AnalysisRun as a persistable state machine. A run is
-- a plain table (JSON-safe: numbers, strings, booleans, lists, maps) that the rollout keeps in
-- the store; step(run, now, spec) takes the measurements that are due, assesses each metric and
-- the run with Argo's rules (analysis/analysis.go: generateMetricTasks, runMeasurements,
-- assessMetricStatus, assessRunStatus, calculateNextReconcileTime) and returns the time the next
-- step is due, so the caller drives it from a durable timer and a restart resumes it.
-- docs/deploy/analysis.md has the semantics, every field and what Argo calls it.
local define = require "steward.deploy.analysis_define"

local type, pairs, ipairs, error, tostring, pcall, format = type, pairs, ipairs, error, tostring, pcall, string.format
local remove = table.remove

local M = {}

-- Argo retries a metric whose last measurement errored after this long, whatever its interval.
M.ERROR_RETRY_INTERVAL = 10
M.DEFAULT_CONSECUTIVE_ERROR_LIMIT = define.DEFAULT_CONSECUTIVE_ERROR_LIMIT
M.DEFAULT_MEASUREMENT_HISTORY_LIMIT = define.DEFAULT_MEASUREMENT_HISTORY_LIMIT
M.define = define.compile

local COMPLETED = { Successful = true, Failed = true, Error = true, Inconclusive = true }
-- Best to worst (utils/analysis/helpers.go, analysisStatusOrder).
local ORDER = { Successful = 1, Running = 2, Pending = 3, Inconclusive = 4, Error = 5, Failed = 6 }

function M.completed(phase) return COMPLETED[phase] == true end

-- is_worse(current, new): whether new is a worse phase than current (an unknown phase ranks as
-- the best, as in Argo).
function M.is_worse(current, new) return (ORDER[new] or 1) > (ORDER[current] or 1) end

function M.worst(a, b) if M.is_worse(a, b) then return b end return a end

-- A metric without count runs once when it has no interval either, else until stopped.
local function effective_count(m)
  if m.count == nil or m.count == 0 then
    if m.interval == nil then return 1 end
    return nil
  end
  return m.count
end
M.effective_count = effective_count

local function last_of(r)
  local ms = r and r.measurements
  return ms and ms[#ms] or nil
end

-- is_terminating(run): asked to stop, or a metric that counts (not a dry run) already ended
-- Failed, Error or Inconclusive.
function M.is_terminating(run)
  if run.terminate then return true end
  for _, r in pairs(run.results or {}) do
    if not r.dry_run and (r.phase == "Failed" or r.phase == "Error" or r.phase == "Inconclusive") then
      return true
    end
  end
  return false
end

-- due(run, now) -> list of the metrics (their plain specs) to measure now (generateMetricTasks).
-- Argo measures when now is strictly after the due time; here at or after it, so that a timer
-- armed for exactly the due time finds the measurement due.
function M.due(run, now)
  local out = {}
  local terminating = M.is_terminating(run)
  for _, m in ipairs(run.metrics) do
    local r = run.results[m.name]
    if r and COMPLETED[r.phase] then goto continue end
    if terminating then goto continue end
    local last = last_of(r)
    if not last then
      if m.initial_delay and (run.started_at == nil or now < run.started_at + m.initial_delay) then goto continue end
      out[#out + 1] = m
      goto continue
    end
    -- (measurements here finish as they are taken; one without an end was never ours to resume)
    if last.finished_at == nil then goto continue end
    local n = effective_count(m)
    if n and (r.count or 0) >= n then goto continue end
    local interval = M.ERROR_RETRY_INTERVAL
    if last.phase ~= "Error" and m.interval then interval = m.interval end
    if now >= last.finished_at + interval then out[#out + 1] = m end
    ::continue::
  end
  return out
end

-- evaluate(value, success, failure) -> phase, message (utils/evaluate: EvaluateResult). Without
-- conditions a measurement succeeds; with one, its negation is the other; both false is
-- Inconclusive. A condition that raises makes the measurement an Error.
function M.evaluate(value, success, failure)
  local s, f = false, false
  if success then
    local ok, v = pcall(success, value)
    if not ok then return "Error", "could not evaluate success_condition: " .. tostring(v) end
    s = v and true or false
  end
  if failure then
    local ok, v = pcall(failure, value)
    if not ok then return "Error", "could not evaluate failure_condition: " .. tostring(v) end
    f = v and true or false
  end
  if not success and not failure then return "Successful" end
  if success and not failure then f = not s elseif failure and not success then s = not f end
  if f then return "Failed" end
  if not s then return "Inconclusive" end
  return "Successful"
end

-- A value as the run stores it: JSON has no NaN or infinities, and functions stay out.
local function storable(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "NaN" end
    if v == math.huge then return "+Inf" end
    if v == -math.huge then return "-Inf" end
    return v
  end
  if t == "string" or t == "boolean" or t == "table" then return v end
  return nil
end

local function new_result(m)
  return { name = m.name, phase = "Running", dry_run = m.dry_run, count = 0, successful = 0, failed = 0,
    inconclusive = 0, error = 0, consecutive_error = 0, consecutive_success = 0, measurements = {} }
end

-- record(run, metric, measurement): adds a completed measurement and its counters (runMeasurements).
function M.record(run, m, meas)
  local r = run.results[m.name]
  if not r then
    r = new_result(m)
    run.results[m.name] = r
  end
  local p = meas.phase
  if p == "Successful" then
    r.successful, r.count, r.consecutive_error = r.successful + 1, r.count + 1, 0
    r.consecutive_success = r.consecutive_success + 1
  elseif p == "Failed" then
    r.failed, r.count, r.consecutive_error, r.consecutive_success = r.failed + 1, r.count + 1, 0, 0
  elseif p == "Inconclusive" then
    r.inconclusive, r.count, r.consecutive_error, r.consecutive_success = r.inconclusive + 1, r.count + 1, 0, 0
  elseif p == "Error" then
    r.error, r.consecutive_error, r.consecutive_success = r.error + 1, r.consecutive_error + 1, 0
  else
    error("analysis.record: measurement phase: Successful, Failed, Inconclusive or Error expected, got " .. tostring(p), 2)
  end
  local ms = r.measurements
  ms[#ms + 1] = meas
  -- Argo keeps the newest ten measurements per metric (DefaultMeasurementHistoryLimit).
  while #ms > (m.keep or M.DEFAULT_MEASUREMENT_HISTORY_LIMIT) do remove(ms, 1) end
  return r
end

-- failure_inconclusive_or_error(metric, result) -> phase | nil, message (assessMetricFailureInconclusiveOrError).
function M.failure_inconclusive_or_error(m, r)
  local phase, msg
  local fl = m.failure_limit or 0
  if fl >= 0 and (r.failed or 0) > fl then
    phase, msg = "Failed", format("failed (%d) > failure_limit (%d)", r.failed, fl)
  end
  local il = m.inconclusive_limit or 0
  if (r.inconclusive or 0) > il then
    phase, msg = "Inconclusive", format("inconclusive (%d) > inconclusive_limit (%d)", r.inconclusive, il)
  end
  local el = m.consecutive_error_limit or M.DEFAULT_CONSECUTIVE_ERROR_LIMIT
  if (r.consecutive_error or 0) > el then
    phase, msg = "Error", format("consecutive_errors (%d) > consecutive_error_limit (%d)", r.consecutive_error, el)
  end
  return phase, msg
end

-- assess_metric(metric, result, terminating) -> phase (assessMetricStatus).
function M.assess_metric(m, r, terminating)
  if COMPLETED[r.phase] then return r.phase end
  local ms = r.measurements or {}
  if #ms == 0 then
    if terminating then return "Successful" end -- stopped before a single measurement
    return "Pending"
  end
  if not COMPLETED[ms[#ms].phase] then return "Running" end
  local p = M.failure_inconclusive_or_error(m, r)
  if p then return p end
  local csl = m.consecutive_success_limit or 0
  if csl > 0 and (r.consecutive_success or 0) >= csl then return "Successful" end
  local n = effective_count(m)
  if n and (r.count or 0) >= n then
    local fl = m.failure_limit or 0
    -- failure_limit was not exceeded (checked above); with a consecutive success limit that
    -- was not reached either, Argo answers Inconclusive (both limits set) or Failed (only it).
    if csl > 0 then
      if fl >= 0 then return "Inconclusive" end
      return "Failed"
    end
    return "Successful"
  end
  if terminating then return "Successful" end -- a background metric ends when the run stops
  return "Running"
end

local function summary() return { count = 0, successful = 0, failed = 0, inconclusive = 0, error = 0 } end

local SUMMARY_KEY = { Error = "error", Failed = "failed", Inconclusive = "inconclusive", Successful = "successful" }

-- assess_run(run) -> phase, message (assessRunStatus): Running while a metric is; else the
-- worst phase of the metrics that count. Dry-run metrics are assessed and summarised apart and
-- never change the outcome. Updates each result's phase and the run's summaries.
function M.assess_run(run)
  local worst, worst_msg
  local terminating = M.is_terminating(run)
  local everything = true
  if run.terminate then worst_msg = "Run Terminated" end
  local sum, dry = summary(), summary()
  for _, m in ipairs(run.metrics) do
    local s = m.dry_run and dry or sum
    s.count = s.count + 1
    local r = run.results[m.name]
    if r then
      local phase = M.assess_metric(m, r, terminating)
      if r.phase ~= phase then
        local last = last_of(r)
        if last then r.message = last.message end
        r.phase = phase
      end
      if not COMPLETED[phase] then
        everything = false
      else
        local fp, msg = M.failure_inconclusive_or_error(m, r)
        local key = SUMMARY_KEY[fp or "Successful"]
        if not m.dry_run then
          if worst == nil or M.is_worse(worst, phase) then
            worst = phase
            if msg then
              worst_msg = format("metric %q assessed %s due to %s", m.name, phase, msg)
              if r.message then worst_msg = worst_msg .. format(": %q", "error message: " .. r.message) end
            end
          end
        else
          if worst == nil then worst = "Successful" end
          if msg then r.message = format("metric assessed %s due to %s", phase, msg) end
        end
        s[key] = s[key] + 1
      end
    else
      everything = false -- not measured yet (an initial delay)
    end
  end
  run.summary, run.dry_run_summary = sum, dry
  if terminating then
    if worst == nil then return "Successful", worst_msg end
    return worst, worst_msg
  end
  if not everything or worst == nil then return "Running", nil end
  return worst, worst_msg
end

-- next_due(run) -> the earliest time a metric is due, or nil (calculateNextReconcileTime).
function M.next_due(run)
  local at
  local function earlier(t) if at == nil or t < at then at = t end end
  for _, m in ipairs(run.metrics) do
    local r = run.results[m.name]
    if r and COMPLETED[r.phase] then goto continue end
    local last = last_of(r)
    if not last then
      if m.initial_delay then earlier((run.started_at or 0) + m.initial_delay) end
      goto continue
    end
    if last.finished_at == nil then goto continue end
    local n = effective_count(m)
    if n and (r.count or 0) >= n then goto continue end
    if last.phase == "Error" then
      earlier(last.finished_at + M.ERROR_RETRY_INTERVAL)
    elseif m.interval then
      earlier(last.finished_at + m.interval)
    end
    ::continue::
  end
  return at
end

local function copy_plain(list)
  local out = {}
  for i, p in ipairs(list) do
    local c = {}
    for k, v in pairs(p) do c[k] = v end
    out[i] = c
  end
  return out
end

-- run(spec [, now | clock]) -> a new run (phase Pending): the plain part of the spec is copied in, so
-- the run alone says what it measures and when; the functions stay in spec.
function M.run(spec, now)
  local c = define.compile(spec)
  if now == nil then now = require("steward.time").now() end
  -- a clock (steward.time, or a spec's fake clock) answers its now()
  if type(now) == "table" and type(now.now) == "function" then now = now.now() end
  if type(now) ~= "number" then error("analysis.run: now: number (Unix seconds) or a clock expected, got " .. type(now), 2) end
  return { phase = "Pending", started_at = now, metrics = copy_plain(c.plain), results = {} }
end

-- terminate(run [, message]): asks the run to stop; the next step ends it (Argo's spec.terminate).
function M.terminate(run, message)
  if type(run) ~= "table" or type(run.metrics) ~= "table" then error("analysis.terminate: run: a run table expected", 2) end
  run.terminate = true
  if message ~= nil then run.terminate_message = tostring(message) end
  return run
end

local function check_run(run, c)
  if type(run) ~= "table" or type(run.metrics) ~= "table" or type(run.results) ~= "table" then
    error("analysis.step: run: a run table (from analysis.run) expected", 3)
  end
  if #run.metrics ~= #c.plain then
    error(format("analysis.step: spec: %d metrics, the run has %d: not the spec this run was started with", #c.plain, #run.metrics), 3)
  end
  for i, p in ipairs(c.plain) do
    if run.metrics[i].name ~= p.name then
      error(format("analysis.step: spec: metrics[%d] is %q, the run's is %q", i, p.name, tostring(run.metrics[i].name)), 3)
    end
  end
end

-- take(c, m, now, measure) -> measurement. The provider (or measure(name, metric)) returns the
-- value or nil, err; an error it raises is an Error measurement too, not a crash.
local function take(c, m, now, measure)
  local fns = c.fns[m.name]
  local ok, v, err
  if measure then
    ok, v, err = pcall(measure, m.name, m)
  elseif fns.provider then
    ok, v, err = pcall(fns.provider)
  else
    error(format("analysis.step: metric %q has no provider and no measure function was given", m.name), 3)
  end
  local meas = { started_at = now, finished_at = now }
  if not ok then
    meas.phase, meas.message = "Error", tostring(v)
  elseif v == nil then
    meas.phase, meas.message = "Error", err ~= nil and tostring(err) or "the provider returned no value"
  else
    meas.value = storable(v)
    meas.phase, meas.message = M.evaluate(v, fns.success, fns.failure)
  end
  return meas
end

-- step(run, now, spec [, measure]) -> run, next_due (nil once the run is completed). Takes the
-- measurements due at now, assesses, and updates run in place. measure(name, metric), when
-- given, replaces the metrics' providers.
function M.step(run, now, spec, measure)
  if type(now) ~= "number" then error("analysis.step: now: number (Unix seconds) expected, got " .. type(now), 2) end
  if type(spec) ~= "table" then
    error("analysis.step: spec: the analysis spec expected (step(run, now, spec [, measure])), got " .. type(spec), 2)
  end
  if measure ~= nil and type(measure) ~= "function" then error("analysis.step: measure: function expected", 2) end
  local c = define.compile(spec)
  check_run(run, c)
  if COMPLETED[run.phase] then return run, nil end
  if run.started_at == nil then run.started_at = now end
  for _, m in ipairs(M.due(run, now)) do
    M.record(run, m, take(c, m, now, measure))
  end
  local terminating = M.is_terminating(run)
  local phase, msg = M.assess_run(run)
  -- A metric that failed in this step makes the run terminating: Argo requeues at once and ends
  -- the other metrics on the next reconcile; here that second assessment happens now.
  if not COMPLETED[phase] and not terminating and M.is_terminating(run) then
    phase, msg = M.assess_run(run)
  end
  if phase ~= run.phase then
    run.phase = phase
    run.message = msg
    if run.terminate and run.terminate_message and phase == "Successful" then run.message = run.terminate_message end
    if COMPLETED[phase] then run.completed_at = now end
  end
  run.next_due = not COMPLETED[phase] and M.next_due(run) or nil
  return run, run.next_due
end

-- summary(run) -> a short text for logs and events: "Failed: metric "x" assessed Failed due to ...".
function M.describe(run)
  if run.message then return run.phase .. ": " .. run.message end
  return run.phase
end

return M
