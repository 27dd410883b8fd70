-- steward.deploy.analysis: Argo Rollouts' AnalysisRun rules as table-driven specs on the fake
-- clock. Each case names the Go test it ports, from github:argoproj/argo-rollouts
-- analysis/analysis_test.go (and utils/analysis/helpers_test.go for the phase order); their
-- fixtures become runs built by hand, Argo's field names become ours (docs/deploy/analysis.md).
-- Not ported, by design: Argo's in-flight measurements (TestGenerateMetricTasksIncomplete,
-- ...HonorResumeAt, TestCalculateNextReconcileHonorResumeAt, TestReconcileAnalysisRunResumeInProgress:
-- our providers answer within the step), argument and secret resolution (Lua closures do it),
-- and Kubernetes object life (TTL, garbage collection, run-not-found).
-- Run by `steward test`; under prove (tests/run runs it with `steward script`) it hands itself
-- to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local analysis = require "steward.deploy.analysis"
local json = require "steward.json"

-- A metric's plain spec as a run stores it, with the defaults filled in.
local function metric(t)
  local spec = { metrics = { t } }
  return analysis.define(spec).plain[1]
end

local function meas(phase, ago, now)
  return { phase = phase, value = 99, started_at = now - ago, finished_at = now - ago }
end

-- A run built from an Argo fixture: metrics (Lua spec tables) and results by name.
local function fixture(metrics, results, extra)
  local run = { phase = "Running", metrics = {}, results = results or {} }
  for i, m in ipairs(metrics) do run.metrics[i] = metric(m) end
  for k, v in pairs(extra or {}) do run[k] = v end
  return run
end

local function names(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.name end
  return out
end

describe("phase order (helpers_test.go)", function()
  it("TestIsWorst: Successful < Inconclusive < Error < Failed", function()
    local cases = {
      { "Successful", "Successful", false }, { "Successful", "Inconclusive", true },
      { "Successful", "Error", true }, { "Successful", "Failed", true },
      { "Inconclusive", "Successful", false }, { "Inconclusive", "Inconclusive", false },
      { "Inconclusive", "Error", true }, { "Inconclusive", "Failed", true },
      { "Error", "Error", false }, { "Error", "Successful", false }, { "Error", "Inconclusive", false },
      { "Error", "Failed", true },
      { "Failed", "Successful", false }, { "Failed", "Inconclusive", false }, { "Failed", "Error", false },
      { "Failed", "Failed", false },
    }
    for _, c in ipairs(cases) do
      assert.equal(analysis.is_worse(c[1], c[2]), c[3], c[1] .. " -> " .. c[2])
    end
  end)
  it("TestWorst", function()
    assert.equal(analysis.worst("Successful", "Failed"), "Failed")
    assert.equal(analysis.worst("Failed", "Successful"), "Failed")
  end)
  it("TestIsFastFailTerminating / TestIsTerminating: a dry-run metric never terminates a run", function()
    local run = fixture({ { name = "other-metric" }, { name = "success-rate" }, { name = "dry-run-metric", dry_run = true },
      { name = "yet-another-metric" } }, {
      ["other-metric"] = { phase = "Running" }, ["success-rate"] = { phase = "Running" },
      ["dry-run-metric"] = { phase = "Running", dry_run = true }, ["yet-another-metric"] = { phase = "Running" },
    })
    assert.equal(analysis.is_terminating(run), false)
    run.results["dry-run-metric"].phase = "Error"
    assert.equal(analysis.is_terminating(run), false, "a dry-run error")
    run.results["yet-another-metric"].phase = "Error"
    assert.equal(analysis.is_terminating(run), true, "a metric's error")
    run.results["yet-another-metric"].phase = "Running"
    for _, p in ipairs { "Error", "Failed", "Inconclusive" } do
      run.results["success-rate"].phase = p
      assert.equal(analysis.is_terminating(run), true, p)
    end
    run.results = {}
    assert.equal(analysis.is_terminating(run), false, "no results")
    run.terminate = true
    assert.equal(analysis.is_terminating(run), true, "terminate requested")
  end)
end)

describe("which metrics are due (generateMetricTasks)", function()
  it("TestGenerateMetricTasksInterval: not within the interval, yes after it", function()
    local now = clock.now()
    local run = fixture({ { name = "success-rate", interval = "60s" } },
      { ["success-rate"] = { phase = "Running", count = 1, measurements = { meas("Successful", 50, now) } } })
    assert.count(analysis.due(run, now), 0)
    run.results["success-rate"].measurements[1] = meas("Successful", 61, now)
    assert.count(analysis.due(run, now), 1)
    run.results["success-rate"].measurements[1] = meas("Successful", 60, now)
    assert.count(analysis.due(run, now), 1, "due at exactly the interval (a timer armed for it finds it due)")
  end)
  it("TestGenerateMetricTasksFailing: nothing more once a metric failed", function()
    local run = fixture({ { name = "success-rate" }, { name = "latency" } }, { latency = { phase = "Failed" } })
    assert.count(analysis.due(run, clock.now()), 0)
    run.results = {}
    assert.same(names(analysis.due(run, clock.now())), { "success-rate", "latency" })
  end)
  it("TestGenerateMetricTasksNoIntervalOrCount: one measurement, then done", function()
    local now = clock.now()
    local run = fixture({ { name = "success-rate" } },
      { ["success-rate"] = { phase = "Running", count = 1, measurements = { meas("Successful", 50, now) } } })
    assert.count(analysis.due(run, now), 0)
    run.results = {}
    assert.count(analysis.due(run, now), 1)
  end)
  it("TestGenerateMetricTasksHonorInitialDelay", function()
    local now = clock.now()
    local run = fixture({ { name = "success-rate", initial_delay = "20s" } }, {})
    assert.count(analysis.due(run, now), 0, "no start time")
    run.started_at = now - 10
    assert.count(analysis.due(run, now), 0, "within the delay")
    run.started_at = now - 20
    assert.count(analysis.due(run, now), 1, "the delay has passed")
    assert.error(function() metric { name = "success-rate", initial_delay = "invalid-start-delay" } end,
      "metrics%[1%]%.initial_delay: duration")
  end)
  it("TestGenerateMetricTasksError: an errored metric retries after 10s, whatever its interval", function()
    local now = clock.now()
    for _, interval in ipairs { false, "5m" } do
      local m = { name = "success-rate" }
      if interval then m.interval = interval end
      local run = fixture({ m }, { ["success-rate"] = { phase = "Running", error = 1, consecutive_error = 1,
        measurements = { meas("Error", 120, now) } } })
      assert.count(analysis.due(run, now), 1, tostring(interval))
      run.results["success-rate"].measurements[1] = meas("Error", 9, now)
      assert.count(analysis.due(run, now), 0, "within the 10 s retry")
    end
  end)
end)

describe("run status (assessRunStatus)", function()
  it("TestAssessRunStatus: running while one metric is; else the worst", function()
    local run = fixture({ { name = "latency" }, { name = "success-rate" } }, {
      latency = { phase = "Successful" }, ["success-rate"] = { phase = "Running", measurements = { meas("Successful", 1, clock.now()) }, count = 0 } })
    run.results["success-rate"].measurements[1].finished_at = nil
    run.results["success-rate"].measurements[1].phase = "Running"
    assert.same({ analysis.assess_run(run) }, { "Running" })
    run.results["success-rate"] = { phase = "Failed" }
    assert.same({ analysis.assess_run(run) }, { "Failed" })
  end)
  it("TestAssessRunStatusUpdateResult: a metric's phase is updated from its measurements", function()
    local now = clock.now()
    local run = fixture({ { name = "sleep-infinity" }, { name = "fail-after-30" } }, {
      ["sleep-infinity"] = { phase = "Running", measurements = { { phase = "Running", started_at = now - 60 } } },
      ["fail-after-30"] = { phase = "Running", count = 1, failed = 1, measurements = { meas("Failed", 60, now) } },
    })
    assert.same({ analysis.assess_run(run) }, { "Running" })
    assert.equal(run.results["fail-after-30"].phase, "Failed")
  end)
  it("TestAssessRunStatusErrorMessageAnalysisPhaseFail (and ...InDryRunMode)", function()
    for _, dry in ipairs { false, true } do
      local now = clock.now()
      local run = fixture({ { name = "run-forever", dry_run = dry }, { name = "failed-metric", dry_run = dry } }, {
        ["run-forever"] = { phase = "Successful", dry_run = dry or nil, measurements = { { phase = "Running", started_at = now - 60 } } },
        ["failed-metric"] = { phase = "Failed", count = 1, failed = 1, dry_run = dry or nil, measurements = { meas("Failed", 60, now) } },
      })
      local phase, msg = analysis.assess_run(run)
      if dry then
        assert.same({ phase, msg }, { "Successful" })
        assert.same(run.dry_run_summary, { count = 2, successful = 1, failed = 1, inconclusive = 0, error = 0 })
      else
        assert.same({ phase, msg }, { "Failed", 'metric "failed-metric" assessed Failed due to failed (1) > failure_limit (0)' })
        assert.same(run.dry_run_summary, { count = 0, successful = 0, failed = 0, inconclusive = 0, error = 0 })
      end
    end
  end)
  it("TestAssessRunStatusErrorMessageFromProvider: the provider's message is quoted", function()
    local now = clock.now()
    local run = fixture({ { name = "run-forever" }, { name = "failed-metric" } }, {
      ["run-forever"] = { phase = "Successful" },
      ["failed-metric"] = { phase = "Failed", count = 1, failed = 1, message = "Provider Error", measurements = { meas("Failed", 60, now) } },
    })
    assert.same({ analysis.assess_run(run) }, { "Failed",
      'metric "failed-metric" assessed Failed due to failed (1) > failure_limit (0): "error message: Provider Error"' })
  end)
  it("TestAssessRunStatusMultipleFailures (and ...InDryRunMode): the first failed metric is named", function()
    for _, dry in ipairs { false, true } do
      local now = clock.now()
      local run = fixture({ { name = "run-forever", dry_run = dry }, { name = "failed-metric", dry_run = dry } }, {
        ["run-forever"] = { phase = "Failed", failed = 1, dry_run = dry or nil, measurements = { { phase = "Running", started_at = now - 60 } } },
        ["failed-metric"] = { phase = "Failed", count = 1, failed = 1, dry_run = dry or nil, measurements = { meas("Failed", 60, now) } },
      })
      local phase, msg = analysis.assess_run(run)
      if dry then
        assert.same({ phase, msg }, { "Successful" })
        assert.same(run.dry_run_summary, { count = 2, successful = 0, failed = 2, inconclusive = 0, error = 0 })
        assert.equal(run.results["run-forever"].message, "metric assessed Failed due to failed (1) > failure_limit (0)")
      else
        assert.same({ phase, msg }, { "Failed", 'metric "run-forever" assessed Failed due to failed (1) > failure_limit (0)' })
      end
    end
  end)
  it("TestAssessRunStatusWithOnlyDryRunMetrics: only dry-run metrics -> Successful", function()
    local now = clock.now()
    local spec = { metrics = { { name = "success-metric", provider = function() return 1 end } }, dry_run = { "success%-metric" } }
    local run = analysis.run(spec, now)
    run.results["success-metric"] = { name = "success-metric", phase = "Successful", dry_run = true, count = 1, successful = 1,
      failed = 0, inconclusive = 0, error = 0, consecutive_error = 0, consecutive_success = 1, measurements = { meas("Successful", 60, now) } }
    analysis.step(run, now, spec)
    assert.equal(run.phase, "Successful")
  end)
  it("TestAssessRunStatusWithMixedMetrics: a dry-run failure does not decide, an inconclusive metric does", function()
    local now = clock.now()
    local run = fixture({ { name = "run-forever" }, { name = "success-metric", dry_run = true } }, {
      ["run-forever"] = { phase = "Running", inconclusive = 1, measurements = { meas("Inconclusive", 60, now) }, count = 1 },
      ["success-metric"] = { phase = "Successful", dry_run = true, count = 1, failed = 1, measurements = { meas("Failed", 60, now) } },
    })
    local phase, msg = analysis.assess_run(run)
    assert.same({ phase, msg }, { "Inconclusive", 'metric "run-forever" assessed Inconclusive due to inconclusive (1) > inconclusive_limit (0)' })
  end)
end)

describe("metric status (assessMetricStatus)", function()
  local now
  before_each(function() now = clock.now() end)
  it("TestAssessMetricStatusNoMeasurements", function()
    local m = metric { name = "success-rate" }
    assert.equal(analysis.assess_metric(m, { measurements = {} }, false), "Pending")
    assert.equal(analysis.assess_metric(m, { measurements = {} }, true), "Successful")
  end)
  it("TestAssessMetricStatusInFlightMeasurement", function()
    local m = metric { name = "success-rate" }
    local r = { measurements = { meas("Successful", 60, now), { phase = "Running", started_at = now } } }
    assert.equal(analysis.assess_metric(m, r, false), "Running")
    assert.equal(analysis.assess_metric(m, r, true), "Running")
  end)
  -- { spec fields, result counters, expected when running, expected when terminating }
  local T = {
    { "TestAssessMetricStatusFailureLimit: failed 3 > limit 2", { failure_limit = 2, interval = "60s" },
      { failed = 3, count = 3 }, "Failed", "Failed", "Failed" },
    { "TestAssessMetricStatusFailureLimit: failed 3 = limit 3", { failure_limit = 3, interval = "60s" },
      { failed = 3, count = 3 }, "Failed", "Running", "Successful" },
    { "TestAssessMetricStatusConsecutiveSuccessLimit: indefinite, limit reached",
      { failure_limit = -1, consecutive_success_limit = 3, interval = "60s" },
      { failed = 3, successful = 4, consecutive_success = 3, count = 7 }, "Failed", "Successful", "Successful" },
    { "TestAssessMetricStatusConsecutiveSuccessLimit: indefinite, not reached",
      { failure_limit = -1, consecutive_success_limit = 5, interval = "60s" },
      { failed = 3, successful = 4, consecutive_success = 3, count = 7 }, "Failed", "Running", "Successful" },
    { "TestAssessMetricStatusConsecutiveSuccessLimit: count reached, limit not",
      { failure_limit = -1, consecutive_success_limit = 5, interval = "60s", count = 7 },
      { failed = 3, successful = 4, consecutive_success = 3, count = 7 }, "Failed", "Failed", "Failed" },
    { "TestAssessMetricStatusConsecutiveSuccessLimit: count reached, limit too",
      { failure_limit = -1, consecutive_success_limit = 3, interval = "60s", count = 7 },
      { failed = 3, successful = 4, consecutive_success = 3, count = 7 }, "Failed", "Successful", "Successful" },
    { "TestAssessMetricStatusConsecutiveSuccessLimit: count not reached, limit reached",
      { failure_limit = -1, consecutive_success_limit = 3, interval = "60s", count = 9 },
      { failed = 3, successful = 4, consecutive_success = 3, count = 7 }, "Failed", "Successful", "Successful" },
    { "TestAssessMetricStatusConsecutiveSuccessLimit: count not reached, limit not",
      { failure_limit = -1, consecutive_success_limit = 5, interval = "60s", count = 9 },
      { failed = 3, successful = 4, consecutive_success = 3, count = 7 }, "Failed", "Running", "Successful" },
  }
  -- TestAssessMetricStatusFailureLimitAndConsecutiveSuccessLimit: failure_limit 4, consecutive_success_limit 4
  local both = { failure_limit = 4, consecutive_success_limit = 4, interval = "60s" }
  local both_cases = {
    { "indefinite, neither", nil, 3, 4, 3, 7, "Running", "Successful" },
    { "indefinite, failure limit exceeded", nil, 5, 9, 0, 9, "Failed", "Failed" },
    { "indefinite, success limit reached", nil, 3, 5, 4, 8, "Successful", "Successful" },
    { "indefinite, both", nil, 5, 5, 4, 10, "Failed", "Failed" },
    { "count reached, neither", 10, 4, 6, 3, 10, "Inconclusive", "Inconclusive" },
    { "count reached, failure limit exceeded", 10, 5, 5, 3, 10, "Failed", "Failed" },
    { "count reached, success limit reached", 10, 4, 6, 4, 10, "Successful", "Successful" },
    { "count reached, both", 10, 5, 5, 4, 10, "Failed", "Failed" },
    { "count not reached, neither", 10, 3, 5, 3, 8, "Running", "Successful" },
    { "count not reached, failure limit exceeded", 10, 5, 3, 3, 8, "Failed", "Failed" },
    { "count not reached, success limit reached", 10, 3, 5, 4, 8, "Successful", "Successful" },
    { "count not reached, both", 10, 5, 4, 4, 9, "Failed", "Failed" },
  }
  for _, c in ipairs(both_cases) do
    local spec = {}
    for k, v in pairs(both) do spec[k] = v end
    spec.count = c[2]
    T[#T + 1] = { "TestAssessMetricStatusFailureLimitAndConsecutiveSuccessLimit: " .. c[1], spec,
      { failed = c[3], successful = c[4], consecutive_success = c[5], count = c[6] }, "Failed", c[7], c[8] }
  end
  T[#T + 1] = { "TestAssessMetricStatusInconclusiveLimit: 3 > 2", { inconclusive_limit = 2, interval = "60s" },
    { inconclusive = 3, count = 3 }, "Inconclusive", "Inconclusive", "Inconclusive" }
  T[#T + 1] = { "TestAssessMetricStatusInconclusiveLimit: 3 = 3", { inconclusive_limit = 3, interval = "60s" },
    { inconclusive = 3, count = 3 }, "Inconclusive", "Running", "Successful" }
  T[#T + 1] = { "TestAssessMetricStatusConsecutiveErrors: 5 > default 4", { interval = "60s" },
    { consecutive_error = 5, count = 5 }, "Error", "Error", "Error" }
  T[#T + 1] = { "TestAssessMetricStatusConsecutiveErrors: 4 = default 4", { interval = "60s" },
    { consecutive_error = 4, count = 5 }, "Error", "Running", "Successful" }
  -- (Argo's fixture has count 10 and no interval, which its own validation refuses: 60s added)
  T[#T + 1] = { "TestAssessMetricStatusCountReached: 10 successes", { count = 10, interval = "60s" },
    { successful = 10, count = 10 }, "Successful", "Successful", "Successful" }
  T[#T + 1] = { "TestAssessMetricStatusCountReached: 5 inconclusive > limit 0", { count = 10, interval = "60s" },
    { successful = 5, inconclusive = 5, count = 10 }, "Successful", "Inconclusive", "Inconclusive" }
  for _, c in ipairs(T) do
    it(c[1], function()
      local spec = { name = "success-rate" }
      for k, v in pairs(c[2]) do spec[k] = v end
      local m = metric(spec)
      local r = { measurements = { meas(c[4], 60, now) } }
      for k, v in pairs(c[3]) do r[k] = v end
      assert.equal(analysis.assess_metric(m, r, false), c[5], "not terminating")
      assert.equal(analysis.assess_metric(m, r, true), c[6], "terminating")
    end)
  end
  it("TestAssessMetricFailureInconclusiveOrError: the messages", function()
    local m = metric { name = "x" }
    assert.same({ analysis.failure_inconclusive_or_error(m, { failed = 1 }) }, { "Failed", "failed (1) > failure_limit (0)" })
    assert.same({ analysis.failure_inconclusive_or_error(m, { inconclusive = 1 }) },
      { "Inconclusive", "inconclusive (1) > inconclusive_limit (0)" })
    assert.same({ analysis.failure_inconclusive_or_error(m, { consecutive_error = 5 }) },
      { "Error", "consecutive_errors (5) > consecutive_error_limit (4)" })
  end)
end)

describe("next due time (calculateNextReconcileTime)", function()
  local now
  before_each(function() now = clock.now() end)
  it("TestCalculateNextReconcileTimeInterval", function()
    local run = fixture({ { name = "success-rate", interval = "60s" } },
      { ["success-rate"] = { phase = "Running", count = 1, measurements = { meas("Successful", 30, now) } } })
    assert.equal(analysis.next_due(run), now + 30)
    run.results["success-rate"] = { phase = "Successful", measurements = { meas("Successful", 120, now) } }
    assert.equal(analysis.next_due(run), nil, "a completed metric is not due")
  end)
  it("TestCalculateNextReconcileTimeInitialDelay", function()
    local run = fixture({ { name = "success-rate", interval = "60s" }, { name = "start-delay", interval = "60s", initial_delay = "40s" } },
      { ["success-rate"] = { phase = "Running", count = 1, measurements = { meas("Successful", 30, now) } } },
      { started_at = now - 30 })
    assert.equal(analysis.next_due(run), now + 10)
  end)
  it("TestCalculateNextReconcileTimeNoInterval", function()
    local run = fixture({ { name = "success-rate", count = 1 } },
      { ["success-rate"] = { phase = "Successful", count = 1, measurements = { meas("Successful", 0, now) } } })
    assert.equal(analysis.next_due(run), nil)
  end)
  it("TestCalculateNextReconcileEarliestMetric", function()
    local run = fixture({ { name = "success-rate", interval = "60s" }, { name = "latency", interval = "60s" } }, {
      ["success-rate"] = { phase = "Running", count = 1, measurements = { meas("Successful", 30, now) } },
      latency = { phase = "Running", count = 1, measurements = { meas("Successful", 50, now) } } })
    assert.equal(analysis.next_due(run), now + 10)
  end)
  it("TestCalculateNextReconcileUponError: retry after 10 s, with or without an interval", function()
    for _, interval in ipairs { false, "5m" } do
      local m = { name = "success-rate" }
      if interval then m.interval = interval end
      local run = fixture({ m }, { ["success-rate"] = { phase = "Running", error = 1, measurements = { meas("Error", 0, now) } } })
      assert.equal(analysis.next_due(run), now + analysis.ERROR_RETRY_INTERVAL)
    end
  end)
end)

describe("whole runs (reconcileAnalysisRun) on the fake clock", function()
  it("TestReconcileAnalysisRunInitial: interval and no count keeps running; count 1 or neither completes", function()
    local ok = function() return 99 end
    local spec = { metrics = { { name = "success-rate", interval = "60s", provider = ok } } }
    local run = analysis.run(spec)
    local _, due = analysis.step(run, clock.now(), spec)
    assert.same({ run.phase, run.results["success-rate"].phase, #run.results["success-rate"].measurements },
      { "Running", "Running", 1 })
    assert.equal(due, clock.now() + 60)
    for _, m in ipairs { { name = "success-rate", interval = "60s", count = 1, provider = ok }, { name = "success-rate", provider = ok } } do
      spec = { metrics = { m } }
      run = analysis.run(spec)
      _, due = analysis.step(run, clock.now(), spec)
      assert.same({ run.phase, run.results["success-rate"].phase, due }, { "Successful", "Successful", nil })
    end
  end)
  it("TestReconcileAnalysisRunInvalid: a bad spec is refused with the field named", function()
    assert.error(function() analysis.run { metrics = { { name = "success-rate", count = 3 } } } end,
      "analysis: metrics%[1%]%.interval: needed when count > 1")
    assert.error(function() analysis.run { metrics = {} } end, "metrics: a non%-empty list")
    assert.error(function() analysis.run { metrics = { { name = "a" }, { name = "a" } } } end, "duplicate name 'a'")
    assert.error(function() analysis.run { metrics = { { name = "a", failure_limit = -1 } } } end, "cannot both be disabled")
    assert.error(function() analysis.run { metrics = { { name = "a", count = 2, interval = "1s", failure_limit = 3 } } } end,
      "count: must be >= failure_limit")
    assert.error(function() analysis.run { metrics = { { name = "a", sucess_condition = print } } } end,
      "metrics%[1%]%.sucess_condition: unknown field")
    assert.error(function() analysis.run { metrics = { { name = "a" } }, dry_run = { "b" } } end,
      "dry_run%[1%]: the rule 'b' matches no metric name")
  end)
  it("TestReconcileAnalysisRunTerminateSiblingAfterFail: a failure ends the run at once, siblings stop", function()
    for _, c in ipairs { { 10, "Failed" }, { 50, "Inconclusive" }, { false, "Error" } } do
      local spec = { metrics = {
        { name = "run-forever", interval = "10s", provider = function() return 1 end },
        { name = "failed-metric", consecutive_error_limit = 0, provider = function()
            if not c[1] then return nil, "no answer" end
            return c[1]
          end,
          success_condition = function(v) return v < 5 end, failure_condition = function(v) return v >= 5 and v < 20 end },
      } }
      local run = analysis.run(spec)
      local _, due = analysis.step(run, clock.now(), spec)
      assert.same({ run.phase, run.results["failed-metric"].phase, run.results["run-forever"].phase, due },
        { c[2], c[2], "Successful", nil }, c[2])
    end
  end)
  it("TestRunMeasurementsResetConsecutiveErrorCounter: errors count apart, a success resets them", function()
    local answers = { "e", "e", 1, "e" }
    local i = 0
    local spec = { metrics = { { name = "test", interval = "30s", provider = function()
      i = i + 1
      if answers[i] == "e" then return nil, "connection refused" end
      return answers[i]
    end } } }
    local run = analysis.run(spec)
    local t = clock.now()
    analysis.step(run, t, spec)
    local r = run.results.test
    assert.same({ r.error, r.consecutive_error, r.count }, { 1, 1, 0 })
    assert.equal(r.measurements[1].message, "connection refused")
    local _, due = analysis.step(run, t + 5, spec)
    assert.same({ r.error, due }, { 1, t + 10 }, "an error is retried after 10 s, not the 30 s interval")
    analysis.step(run, t + 10, spec)
    analysis.step(run, t + 20, spec)
    assert.same({ r.error, r.consecutive_error, r.count, r.successful }, { 2, 0, 1, 1 })
    analysis.step(run, t + 50, spec)
    assert.same({ r.error, r.consecutive_error, r.count }, { 3, 1, 1 })
  end)
  it("TestTrimMeasurementHistory: the newest ten measurements are kept", function()
    local n = 0
    local spec = { metrics = { { name = "m", interval = "1s", count = 12, provider = function() n = n + 1 return n end } } }
    local run = analysis.run(spec)
    for k = 0, 11 do analysis.step(run, clock.now() + k, spec) end
    local ms = run.results.m.measurements
    assert.same({ #ms, ms[1].value, ms[10].value, run.results.m.count, run.phase }, { 10, 3, 12, 12, "Successful" })
  end)
  it("TestTerminateAnalysisRun: terminated before its first measurement -> Successful, 'Run Terminated'", function()
    for _, dry in ipairs { false, true } do
      local spec = { metrics = { { name = "success-rate", initial_delay = "20s", interval = "20s",
        provider = function() error("must not be measured") end } }, dry_run = dry and { "success%-rate" } or nil }
      local run = analysis.run(spec)
      analysis.terminate(run)
      analysis.step(run, clock.now(), spec)
      assert.same({ run.phase, run.message }, { "Successful", "Run Terminated" })
      if dry then assert.same(run.dry_run_summary, { count = 1, successful = 0, failed = 0, inconclusive = 0, error = 0 }) end
    end
  end)
  it("TestAssessRunStatusWorstMessageInReconcileAnalysisRun: the run's message names the failed metric", function()
    local spec = { metrics = { { name = "run-forever", interval = "1m", provider = function() return 0 end, success_condition = function(v) return v > 0 end } } }
    local run = analysis.run(spec)
    analysis.step(run, clock.now(), spec)
    assert.same({ run.phase, run.message }, { "Failed", 'metric "run-forever" assessed Failed due to failed (1) > failure_limit (0)' })
  end)
end)

describe("conditions (utils/evaluate EvaluateResult)", function()
  local gt = function(v) return v > 0.9 end
  local lt = function(v) return v < 0.5 end
  local cases = {
    { "no conditions", 0.1, nil, nil, "Successful" },
    { "success only, true", 0.95, gt, nil, "Successful" },
    { "success only, false", 0.7, gt, nil, "Failed" },
    { "failure only, true", 0.1, nil, lt, "Failed" },
    { "failure only, false", 0.7, nil, lt, "Successful" },
    { "both, success", 0.95, gt, lt, "Successful" },
    { "both, failure", 0.1, gt, lt, "Failed" },
    { "both false: Inconclusive", 0.7, gt, lt, "Inconclusive" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.equal((analysis.evaluate(c[2], c[3], c[4])), c[5]) end)
  end
  it("a condition that raises is an Error measurement", function()
    local p, msg = analysis.evaluate({}, gt)
    assert.equal(p, "Error")
    assert.match(msg, "could not evaluate success_condition: .*compare")
  end)
end)

describe("the durable run", function()
  it("survives a JSON round trip mid-run and resumes where it was (a restart)", function()
    local values, i = { 0.99, 0.98, 0.5, 0.97, 0.4 }, 0
    local spec = { metrics = {
      { name = "success-rate", interval = "1m", count = 5, failure_limit = 1, provider = function() i = i + 1 return values[i] end,
        success_condition = function(v) return v >= 0.95 end },
    } }
    local run = analysis.run(spec)
    local due = clock.now()
    for _ = 1, 3 do
      clock.set(due)
      run, due = analysis.step(json.decode(json.encode(run)), clock.now(), spec)
    end
    assert.same({ run.phase, i, run.results["success-rate"].failed }, { "Running", 3, 1 })
    assert.equal(due, clock.now() + 60)
    -- a step before the due time measures nothing
    analysis.step(run, clock.now() + 30, spec)
    assert.equal(i, 3, "nothing measured before it is due")
    clock.set(due)
    run, due = analysis.step(json.decode(json.encode(run)), clock.now(), spec)
    clock.set(due)
    run, due = analysis.step(json.decode(json.encode(run)), clock.now(), spec)
    assert.same({ run.phase, i, due, run.message },
      { "Failed", 5, nil, 'metric "success-rate" assessed Failed due to failed (2) > failure_limit (1)' })
    assert.equal(run.completed_at, clock.now())
    analysis.step(run, clock.now() + 600, spec)
    assert.equal(i, 5, "a completed run measures nothing more")
  end)
  it("a background metric (no count) runs until terminated, and then succeeds", function()
    local spec = { metrics = { { name = "bg", interval = "30s", provider = function() return 1 end } } }
    local run = analysis.run(spec)
    local t = clock.now()
    for k = 0, 9 do analysis.step(run, t + 30 * k, spec) end
    assert.same({ run.phase, run.results.bg.count }, { "Running", 10 })
    analysis.terminate(run, "rollout promoted")
    local _, due = analysis.step(run, t + 301, spec)
    assert.same({ run.phase, run.message, due }, { "Successful", "rollout promoted", nil })
  end)
  it("a provider that raises is an Error measurement; five in a row end the run in Error", function()
    local spec = { metrics = { { name = "m", interval = "1m", provider = function() error("boom") end } } }
    local run = analysis.run(spec)
    local due = clock.now()
    local steps = 0
    while due do
      steps = steps + 1
      _, due = analysis.step(run, due, spec)
    end
    assert.same({ run.phase, steps, run.results.m.error }, { "Error", 5, 5 })
    assert.match(run.message, 'metric "m" assessed Error due to consecutive_errors %(5%) > consecutive_error_limit %(4%)')
    assert.match(run.results.m.measurements[5].message, "boom")
  end)
  it("initial_delay: the first step only schedules", function()
    local n = 0
    local spec = { metrics = { { name = "m", initial_delay = "2m", provider = function() n = n + 1 return 1 end } } }
    local run = analysis.run(spec)
    local _, due = analysis.step(run, clock.now(), spec)
    assert.same({ run.phase, n, due }, { "Running", 0, clock.now() + 120 })
    _, due = analysis.step(run, due, spec)
    assert.same({ run.phase, n, due }, { "Successful", 1, nil })
  end)
  it("step without the spec says what it needs", function()
    local spec = { metrics = { { name = "m", provider = function() return 1 end } } }
    local run = analysis.run(spec)
    assert.error(function() analysis.step(run, clock.now(), function() return 1 end) end,
      "analysis.step: spec: the analysis spec expected %(step%(run, now, spec %[, measure%]%)%), got function")
  end)
  it("run takes a time or a clock", function()
    local spec = { metrics = { { name = "m" } } }
    assert.equal(analysis.run(spec, clock).started_at, clock.now())
    assert.equal(analysis.run(spec, require("steward.time")).started_at, clock.now())
    assert.equal(analysis.run(spec, 5).started_at, 5)
    assert.error(function() analysis.run(spec, "now") end, "now: number %(Unix seconds%) or a clock expected")
  end)
  it("a step with another spec is refused", function()
    local spec = { metrics = { { name = "m", provider = function() return 1 end } } }
    local run = analysis.run(spec)
    assert.error(function() analysis.step(run, clock.now(), { metrics = { { name = "n" } } }) end,
      'metrics%[1%] is "n", the run\'s is "m"')
  end)
  it("measure(name, metric) replaces the providers", function()
    local spec = { metrics = { { name = "m", success_condition = function(v) return v == 7 end } } }
    local run = analysis.run(spec)
    analysis.step(run, clock.now(), spec, function(name) return name == "m" and 7 or nil end)
    assert.equal(run.phase, "Successful")
  end)
end)

describe("docs/deploy/analysis.md", function()
  it("the example runs and returns what the page says", function()
    local f = assert(io.open("docs/deploy/analysis.md"))
    local text = f:read("*a")
    f:close()
    local code
    for block in text:gmatch("```lua\n(.-)```") do
      if block:find("What the rollout does", 1, true) then code = block end
    end
    assert(code, "the example block is on the page")
    local phase, message, log = assert(loadstring(code, "=analysis.md"))()
    assert.same({ phase, message, log }, { "Failed", 'metric "error-rate" assessed Failed due to failed (2) > failure_limit (1)',
      { "Running Successful", "Running Failed", "Running Successful", "Failed Failed" } })
  end)
end)
