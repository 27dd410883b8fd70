-- steward.scaling.hpa.decide against Kubernetes' controller cases: the reconcile tests of
-- pkg/controller/podautoscaler/horizontal_test.go (github:kubernetes/kubernetes) that apply, as a
-- table, each under its Go test's name with its expected desired replicas and conditions.
-- Their fixture (testCase.prepareTestClient) becomes steward's: pod i is instance "test-pod-i",
-- as many as reportedCPURequests (else statusReplicas); its start time is also its Ready
-- transition; every metric reads the same reportedLevels (CPU split over two containers, so
-- odd milli-levels lose one, as there); specReplicas is obs.current, statusReplicas
-- obs.status_replicas; the controller runs with the test's flags (5 min downscale
-- stabilization, 2 min CPU initialization, 10 s readiness delay, scale-up limit factor 8).
-- The tests' metric of type "CheddarCheese" cannot be written in a checked spec; it stands as an
-- external metric whose source fails (its condition is then FailedGetExternalMetric, not
-- InvalidMetricSourceType). Tests that need min_replicas = 0 without an object/external metric
-- (Kubernetes' API refuses it, its tests bypass validation) set it after check, as they do.
-- Not ported, by design: the Kubernetes object plumbing (selectors: TestConditionInvalidSelector*,
-- TestConditionAmbiguousSelector*, TestConditionNoAmbiguousSelector*; the Scale subresource:
-- TestConditionFailedGetScale, TestConditionFailedUpdateScale; TestMultipleHPAs, events), and the
-- ContainerResource tests (TestScaleUpContainer, TestScaleDownContainerResource).
-- Run by `steward test`; under prove (tests/run runs it with `steward script`) it hands itself
-- to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local hpa = require "steward.scaling.hpa"
local behavior = require "steward.scaling.hpa_behavior"

local NOW = 1000000
local HOT, COOL = NOW, NOW - 180 -- hotCPUCreationTime(), coolCPUCreationTime()

-- generateScalingRules(pods, podsPeriod, percent, percentPeriod, stabilizationWindow)
local function rules(pods, pods_period, percent, percent_period, window)
  local r = { select_policy = "Max", stabilization_window = window, policies = {} }
  if pods ~= 0 then r.policies[#r.policies + 1] = { type = "Pods", value = pods, period = pods_period } end
  if percent ~= 0 then r.policies[#r.policies + 1] = { type = "Percent", value = percent, period = percent_period } end
  return r
end

local function run(tc)
  local metrics, scale_to_zero = {}, false
  if tc.cpu then metrics[1] = { name = "cpu", type = "resource", target = { type = "utilization", value = tc.cpu } } end
  for _, m in ipairs(tc.metrics or {}) do
    local mtype, ttype = m[1], m[2]
    metrics[#metrics + 1] = { name = m.name or "qps", type = mtype, target = { type = ttype, value = m[3] } }
    if mtype == "object" or mtype == "external" then scale_to_zero = true end
  end
  local raw = {
    min_replicas = (tc.min == 0 and not scale_to_zero) and 1 or tc.min, max_replicas = tc.max,
    downscale_stabilization = "5m", cpu_initialization_period = "2m", initial_readiness_delay = "10s",
    metrics = #metrics > 0 and metrics or nil,
  }
  if tc.up or tc.down then raw.behavior = { scale_up = tc.up, scale_down = tc.down } end
  local spec = hpa.check(raw)
  spec.min_replicas = tc.min

  local n = tc.requests and #tc.requests or tc.status
  local instances, cpu, qps = {}, {}, {}
  for i = 1, n do
    local id = "test-pod-" .. (i - 1)
    local start = tc.start and (tc.start[i] == "hot" and HOT or COOL) or 0
    instances[i] = {
      id = id, ready = not (tc.readiness and tc.readiness:sub(i, i) == "F"),
      phase = tc.phase and tc.phase[i] or "running", started_at = start, ready_at = start,
      -- each container asks half the pod's request, in whole millis
      request = { cpu = 2 * math.floor((tc.requests and tc.requests[i] or 1.0) * 1000 / 2 + 1e-9) / 1000 },
    }
    if tc.deleted and tc.deleted[i] then instances[i].phase = "deleted" end
  end
  for i, level in ipairs(tc.levels or {}) do
    local id = "test-pod-" .. (i - 1)
    cpu[id] = 2 * math.floor(level / 2) / 1000
    qps[id] = level / 1000
  end
  local values = {}
  for i, level in ipairs(tc.levels or {}) do values[i] = level / 1000 end
  local obs = { current = tc.spec, status_replicas = tc.status, instances = instances, metrics = {} }
  for _, m in ipairs(spec.metrics) do
    if tc.failing and tc.failing[m.name] then
      obs.metrics[m.name] = { error = "something went wrong" }
    elseif m.type == "resource" then
      obs.metrics[m.name] = tc.cpu_error and { error = tc.cpu_error } or { per_instance = cpu, at = NOW, window = 60 }
    elseif m.type == "pods" then
      obs.metrics[m.name] = { per_instance = qps, at = NOW }
    elseif m.type == "object" then
      obs.metrics[m.name] = { value = values[1] }
    else
      obs.metrics[m.name] = { values = values }
    end
  end
  local state
  if tc.recommendations then
    state = { recommendations = {} }
    for i, r in ipairs(tc.recommendations) do state.recommendations[i] = { replicas = r[1], at = NOW - r[2] } end
  end
  return hpa.decide(spec, state, obs, NOW)
end

local function check(tc)
  local d = run(tc)
  assert.equal(d.desired, tc.expect, "desired replicas")
  if tc.limited then assert.equal(d.condition, tc.limited, "ScalingLimited reason") end
  if tc.able then assert.equal(d.able_to_scale, tc.able, "AbleToScale reason") end
  if tc.active then assert.equal(d.scaling_active, tc.active, "ScalingActive reason") end
  -- statusOk unless the case says otherwise: a valid metric, the desired count within range.
  if not tc.active and not tc.no_metrics then
    assert.equal(d.scaling_active, "ValidMetricFound", "ScalingActive reason")
    if not tc.limited then assert.equal(d.condition, "DesiredWithinRange", "ScalingLimited reason") end
  end
end

local ONES3, ONES4, ONES5 = { 1.0, 1.0, 1.0 }, { 1.0, 1.0, 1.0, 1.0 }, { 1.0, 1.0, 1.0, 1.0, 1.0 }
local ONES7 = { 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0 }
local UNEVEN = { 0.9, 1.0, 1.1 }
local EMPTY = {} -- recommendations: []timestampedRecommendation{} (no initial recommendation)

local CASES = {
  { "TestScaleUp", min = 2, max = 6, spec = 3, status = 3, expect = 5, cpu = 30, levels = { 300, 500, 700 }, requests = ONES3 },
  { "TestScaleUpUnreadyLessScale", min = 2, max = 6, spec = 3, status = 3, expect = 4, cpu = 30,
    levels = { 300, 500, 700 }, requests = ONES3, readiness = "FTT" },
  { "TestScaleUpHotCpuLessScale", min = 2, max = 6, spec = 3, status = 3, expect = 4, cpu = 30,
    levels = { 300, 500, 700 }, requests = ONES3, start = { "hot", "cool", "cool" } },
  { "TestScaleUpUnreadyNoScale", min = 2, max = 6, spec = 3, status = 3, expect = 3, cpu = 30,
    levels = { 400, 500, 700 }, requests = ONES3, readiness = "TFF", able = "ReadyForNewScale" },
  { "TestScaleUpHotCpuNoScale", min = 2, max = 6, spec = 3, status = 3, expect = 3, cpu = 30,
    levels = { 400, 500, 700 }, requests = ONES3, readiness = "TFF", start = { "cool", "hot", "hot" },
    able = "ReadyForNewScale" },
  { "TestScaleUpIgnoresFailedPods", min = 2, max = 6, spec = 2, status = 2, expect = 4, cpu = 30,
    levels = { 500, 700 }, requests = ONES4, readiness = "TTFF", phase = { "running", "running", "failed", "failed" } },
  { "TestScaleUpIgnoresDeletionPods", min = 2, max = 6, spec = 2, status = 2, expect = 4, cpu = 30,
    levels = { 500, 700 }, requests = ONES4, readiness = "TTFF", deleted = { false, false, true, true } },
  { "TestScaleUpDeployment", min = 2, max = 6, spec = 3, status = 3, expect = 5, cpu = 30, levels = { 300, 500, 700 }, requests = ONES3 },
  { "TestScaleUpReplicaSet", min = 2, max = 6, spec = 3, status = 3, expect = 5, cpu = 30, levels = { 300, 500, 700 }, requests = ONES3 },
  { "TestScaleUpCM", min = 2, max = 6, spec = 3, status = 3, expect = 4, metrics = { { "pods", "average_value", 15 } },
    levels = { 20000, 10000, 30000 }, requests = ONES3 },
  { "TestScaleUpCMUnreadyAndHotCpuNoLessScale", min = 2, max = 6, spec = 3, status = 3, expect = 6,
    metrics = { { "pods", "average_value", 15 } }, levels = { 50000, 10000, 30000 }, requests = ONES3,
    readiness = "TTF", start = { "cool", "cool", "hot" } },
  { "TestScaleUpCMUnreadyandCpuHot", min = 2, max = 6, spec = 3, status = 3, expect = 6,
    metrics = { { "pods", "average_value", 15 } }, levels = { 50000, 15000, 30000 }, requests = ONES3,
    readiness = "FTF", start = { "hot", "cool", "hot" }, limited = "TooManyReplicas" },
  { "TestScaleUpHotCpuNoScaleWouldScaleDown", min = 2, max = 6, spec = 3, status = 3, expect = 6,
    metrics = { { "pods", "average_value", 15 } }, levels = { 50000, 15000, 30000 }, requests = ONES3,
    start = { "hot", "cool", "hot" }, limited = "TooManyReplicas" },
  { "TestScaleUpCMObject", min = 2, max = 6, spec = 3, status = 3, expect = 4,
    metrics = { { "object", "value", 15 } }, levels = { 20000 } },
  { "TestScaleUpFromZeroCMObject", min = 0, max = 6, spec = 0, status = 0, expect = 2,
    metrics = { { "object", "value", 15 } }, levels = { 20000 } },
  { "TestScaleUpFromZeroIgnoresToleranceCMObject", min = 0, max = 6, spec = 0, status = 0, expect = 1,
    metrics = { { "object", "value", 1 } }, levels = { 1000 } },
  { "TestScaleUpPerPodCMObject", min = 2, max = 6, spec = 3, status = 3, expect = 4,
    metrics = { { "object", "average_value", 10 } }, levels = { 40000 } },
  { "TestScaleUpCMExternal", min = 2, max = 6, spec = 3, status = 3, expect = 4,
    metrics = { { "external", "value", 6.666 } }, levels = { 8600 } },
  { "TestScaleUpPerPodCMExternal", min = 2, max = 6, spec = 3, status = 3, expect = 4,
    metrics = { { "external", "average_value", 2.222 } }, levels = { 8600 } },
  { "TestScaleDown", min = 2, max = 6, spec = 5, status = 5, expect = 3, cpu = 50,
    levels = { 100, 300, 500, 250, 250 }, requests = ONES5, recommendations = EMPTY },
  { "TestScaleDownWithScalingRules", min = 2, max = 6, spec = 5, status = 5, expect = 3, cpu = 50,
    up = rules(0, 0, 100, 15, 30), levels = { 100, 300, 500, 250, 250 }, requests = ONES5, recommendations = EMPTY },
  { "TestScaleUpOneMetricInvalid", min = 2, max = 6, spec = 3, status = 3, expect = 4, cpu = 30,
    metrics = { { "external", "value", 1, name = "cheddar" } }, failing = { cheddar = true },
    levels = { 300, 400, 500 }, requests = ONES3 },
  { "TestScaleUpFromZeroOneMetricInvalid", min = 0, max = 6, spec = 0, status = 0, expect = 4, cpu = 30,
    metrics = { { "external", "value", 1, name = "cheddar" } }, failing = { cheddar = true },
    levels = { 300, 400, 500 }, requests = ONES3, recommendations = EMPTY },
  { "TestScaleUpBothMetricsEmpty", min = 2, max = 6, spec = 3, status = 3, expect = 3,
    metrics = { { "external", "value", 1, name = "cheddar" } }, failing = { cheddar = true },
    levels = {}, requests = ONES3, active = "FailedGetExternalMetric" },
  { "TestScaleDownStabilizeInitialSize", min = 2, max = 6, spec = 5, status = 5, expect = 5, cpu = 50,
    levels = { 100, 300, 500, 250, 250 }, requests = ONES5, able = "ScaleDownStabilized" },
  { "TestScaleDownCM", min = 2, max = 6, spec = 5, status = 5, expect = 3, metrics = { { "pods", "average_value", 20 } },
    levels = { 12000, 12000, 12000, 12000, 12000 }, requests = ONES5, recommendations = EMPTY },
  { "TestScaleDownCMObject", min = 2, max = 6, spec = 5, status = 5, expect = 3, metrics = { { "object", "value", 20 } },
    levels = { 12000 }, requests = ONES5, recommendations = EMPTY },
  { "TestScaleDownToZeroCMObject", min = 0, max = 6, spec = 5, status = 5, expect = 0, metrics = { { "object", "value", 20 } },
    levels = { 0 }, requests = ONES5, recommendations = EMPTY },
  { "TestScaleDownPerPodCMObject", min = 2, max = 6, spec = 5, status = 5, expect = 3,
    metrics = { { "object", "average_value", 20 } }, levels = { 60000 }, requests = ONES5, recommendations = EMPTY },
  { "TestScaleDownCMExternal", min = 2, max = 6, spec = 5, status = 5, expect = 3,
    metrics = { { "external", "value", 14.4 } }, levels = { 8600 }, recommendations = EMPTY },
  { "TestScaleDownToZeroCMExternal", min = 0, max = 6, spec = 5, status = 5, expect = 0,
    metrics = { { "external", "value", 14.4 } }, levels = { 0 }, recommendations = EMPTY },
  { "TestScaleDownPerPodCMExternal", min = 2, max = 6, spec = 5, status = 5, expect = 3,
    metrics = { { "external", "average_value", 3 } }, levels = { 8600 }, recommendations = EMPTY },
  { "TestScaleDownIncludeUnreadyPods", min = 2, max = 6, spec = 5, status = 5, expect = 2, cpu = 50,
    levels = { 100, 300, 500, 250, 250 }, requests = ONES5, readiness = "TTTFF", recommendations = EMPTY },
  { "TestScaleDownIgnoreHotCpuPods", min = 2, max = 6, spec = 5, status = 5, expect = 2, cpu = 50,
    levels = { 100, 300, 500, 250, 250 }, requests = ONES5, start = { "cool", "cool", "cool", "hot", "hot" },
    recommendations = EMPTY },
  { "TestScaleDownIgnoresFailedPods", min = 2, max = 6, spec = 5, status = 5, expect = 3, cpu = 50,
    levels = { 100, 300, 500, 250, 250 }, requests = ONES7, readiness = "TTTTTFF",
    phase = { "running", "running", "running", "running", "running", "failed", "failed" }, recommendations = EMPTY },
  { "TestScaleDownIgnoresDeletionPods", min = 2, max = 6, spec = 5, status = 5, expect = 3, cpu = 50,
    levels = { 100, 300, 500, 250, 250 }, requests = ONES7, readiness = "TTTTTFF",
    deleted = { false, false, false, false, false, true, true }, recommendations = EMPTY },
  { "TestTolerance", min = 1, max = 5, spec = 3, status = 3, expect = 3, cpu = 100,
    levels = { 1010, 1030, 1020 }, requests = UNEVEN, able = "ReadyForNewScale" },
  { "TestToleranceCM", min = 1, max = 5, spec = 3, status = 3, expect = 3, metrics = { { "pods", "average_value", 20 } },
    levels = { 20000, 20001, 21000 }, requests = UNEVEN, able = "ReadyForNewScale" },
  { "TestToleranceCMObject", min = 1, max = 5, spec = 3, status = 3, expect = 3, metrics = { { "object", "value", 20 } },
    levels = { 20050 }, requests = UNEVEN, able = "ReadyForNewScale" },
  { "TestToleranceCMExternal", min = 2, max = 6, spec = 4, status = 4, expect = 4,
    metrics = { { "external", "value", 8.666 } }, levels = { 8600 }, able = "ReadyForNewScale" },
  { "TestTolerancePerPodCMObject", min = 2, max = 6, spec = 4, status = 4, expect = 4,
    metrics = { { "object", "average_value", 2.2 } }, levels = { 8600 }, able = "ReadyForNewScale" },
  { "TestTolerancePerPodCMExternal", min = 2, max = 6, spec = 4, status = 4, expect = 4,
    metrics = { { "external", "average_value", 2.2 } }, levels = { 8600 }, able = "ReadyForNewScale" },
  { "TestMinReplicas", min = 2, max = 5, spec = 3, status = 3, expect = 2, cpu = 90, levels = { 10, 95, 10 },
    requests = UNEVEN, limited = "TooFewReplicas", recommendations = EMPTY },
  { "TestZeroMinReplicasDesiredZero", min = 0, max = 5, spec = 3, status = 3, expect = 0, cpu = 90, levels = { 0, 0, 0 },
    requests = UNEVEN, limited = "DesiredWithinRange", recommendations = EMPTY },
  { "TestMinReplicasDesiredZero", min = 2, max = 5, spec = 3, status = 3, expect = 2, cpu = 90, levels = { 0, 0, 0 },
    requests = UNEVEN, limited = "TooFewReplicas", recommendations = EMPTY },
  { "TestZeroReplicas", min = 3, max = 5, spec = 0, status = 0, expect = 0, cpu = 90, levels = {}, requests = {},
    active = "ScalingDisabled" },
  { "TestTooFewReplicas", min = 3, max = 5, spec = 2, status = 2, expect = 3, cpu = 90, levels = {}, requests = {},
    no_metrics = true },
  { "TestTooManyReplicas", min = 3, max = 5, spec = 10, status = 10, expect = 5, cpu = 90, levels = {}, requests = {},
    no_metrics = true },
  { "TestMaxReplicas", min = 2, max = 5, spec = 3, status = 3, expect = 5, cpu = 90, levels = { 8000, 9500, 1000 },
    requests = UNEVEN, limited = "TooManyReplicas" },
  { "TestSuperfluousMetrics", min = 2, max = 6, spec = 4, status = 4, expect = 6, cpu = 100,
    levels = { 4000, 9500, 3000, 7000, 3200, 2000 }, requests = ONES4, limited = "TooManyReplicas" },
  { "TestMissingMetrics", min = 2, max = 6, spec = 4, status = 4, expect = 3, cpu = 100, levels = { 400, 95 },
    requests = ONES4, recommendations = EMPTY },
  { "TestEmptyMetrics", min = 2, max = 6, spec = 4, status = 4, expect = 4, cpu = 100, levels = {}, requests = ONES4,
    active = "FailedGetResourceMetric" },
  { "TestEmptyCPURequest", min = 1, max = 5, spec = 1, status = 1, expect = 1, cpu = 100, levels = { 200 }, requests = {},
    active = "FailedGetResourceMetric" },
  { "TestEventCreated", min = 1, max = 5, spec = 1, status = 1, expect = 2, cpu = 50, levels = { 200 }, requests = { 0.2 } },
  { "TestEventNotCreated", min = 1, max = 5, spec = 2, status = 2, expect = 2, cpu = 50, levels = { 200, 200 },
    requests = { 0.4, 0.4 }, able = "ReadyForNewScale" },
  { "TestMissingReports", min = 1, max = 5, spec = 4, status = 4, expect = 2, cpu = 50, levels = { 200 },
    requests = { 0.2 }, recommendations = EMPTY },
  { "TestUpscaleCap", min = 1, max = 100, spec = 3, status = 3, expect = 24, cpu = 10, up = rules(0, 0, 700, 60, 0),
    levels = { 100, 200, 300 }, requests = { 0.1, 0.1, 0.1 }, limited = "ScaleUpLimit" },
  { "TestUpscaleCapGreaterThanMaxReplicas", min = 1, max = 20, spec = 3, status = 3, expect = 20, cpu = 10,
    up = rules(0, 0, 700, 60, 0), levels = { 100, 200, 300 }, requests = { 0.1, 0.1, 0.1 }, limited = "TooManyReplicas" },
  { "TestMoreReplicasThanSpecNoScale", min = 1, max = 8, spec = 4, status = 5, expect = 4, cpu = 50,
    levels = { 500, 500, 500, 500, 500 }, requests = ONES5, able = "ReadyForNewScale" },
  { "TestNoBackoffUpscaleCM", min = 1, max = 5, spec = 3, status = 3, expect = 4, metrics = { { "pods", "average_value", 15 } },
    levels = { 20000, 10000, 30000 }, requests = ONES3 },
  { "TestNoBackoffUpscaleCMNoBackoffCpu", min = 1, max = 5, spec = 3, status = 3, expect = 5, cpu = 10,
    metrics = { { "pods", "average_value", 15 } }, levels = { 20000, 10000, 30000 }, requests = ONES3,
    limited = "TooManyReplicas" },
  { "TestStabilizeDownscale", min = 1, max = 5, spec = 4, status = 4, expect = 4, cpu = 100, levels = { 50, 50, 50 },
    requests = { 0.1, 0.1, 0.1 }, recommendations = { { 10, 600 }, { 4, 60 } }, able = "ScaleDownStabilized" },
  { "TestScaleUpRCImmediately", min = 2, max = 6, spec = 1, status = 1, expect = 2, levels = { 0, 0, 0, 0 },
    requests = ONES4, no_metrics = true },
  { "TestScaleDownRCImmediately", min = 2, max = 5, spec = 6, status = 6, expect = 5, cpu = 50,
    levels = { 8000, 9500, 1000 }, requests = UNEVEN, no_metrics = true },
  -- The test's HPA carries an 80 % target (its own TODO says so) and relies on TooFewReplicas.
  { "TestAvoidUnnecessaryUpdates", min = 2, max = 6, spec = 2, status = 2, expect = 2, cpu = 80,
    levels = { 400, 500, 700 }, requests = ONES3, start = { "cool", "hot", "hot" }, recommendations = EMPTY,
    limited = "TooFewReplicas" },
  { "TestConditionInvalidSourceType", min = 2, max = 6, spec = 3, status = 3, expect = 3,
    metrics = { { "external", "value", 1, name = "cheddar" } }, failing = { cheddar = true },
    levels = { 20000 }, active = "FailedGetExternalMetric" },
  { "TestScaleUpOneMetricEmpty", min = 2, max = 6, spec = 3, status = 3, expect = 4, cpu = 30,
    metrics = { { "external", "value", 0.1 } }, failing = { qps = true }, levels = { 300, 400, 500 }, requests = ONES3 },
  { "TestNoScaleDownOneMetricInvalid", min = 2, max = 6, spec = 5, status = 5, expect = 5, cpu = 50,
    metrics = { { "external", "value", 1, name = "cheddar" } }, failing = { cheddar = true },
    levels = { 100, 300, 500, 250, 250 }, requests = ONES5, recommendations = EMPTY, active = "FailedGetExternalMetric" },
  { "TestNoScaleDownOneMetricEmpty", min = 2, max = 6, spec = 5, status = 5, expect = 5, cpu = 50,
    metrics = { { "external", "value", 1 } }, failing = { qps = true },
    levels = { 100, 300, 500, 250, 250 }, requests = ONES5, recommendations = EMPTY, active = "FailedGetExternalMetric" },
}

describe("horizontal_test.go: reconcile", function()
  local saved
  before_each(function()
    saved = behavior.SCALE_UP_LIMIT_FACTOR
    behavior.SCALE_UP_LIMIT_FACTOR = 8 -- horizontal_test.go's init()
  end)
  after_each(function() behavior.SCALE_UP_LIMIT_FACTOR = saved end)

  for _, tc in ipairs(CASES) do
    it(tc[1], function() check(tc) end)
  end

  -- One case per failing source, the metric alone (CPU for the resource case).
  it("TestConditionFailedGetMetrics", function()
    local base = { min = 1, max = 100, spec = 3, status = 3, expect = 3, levels = { 100, 200, 300 }, requests = { 0.1, 0.1, 0.1 } }
    local cases = {
      FailedGetResourceMetric = { cpu = 10, cpu_error = "something went wrong" },
      FailedGetPodsMetric = { metrics = { { "pods", "average_value", 15 } }, failing = { qps = true } },
      FailedGetObjectMetric = { metrics = { { "object", "value", 15 } }, failing = { qps = true } },
      FailedGetExternalMetric = { metrics = { { "external", "value", 0.3 } }, failing = { qps = true } },
    }
    for reason, c in pairs(cases) do
      local tc = {}
      for k, v in pairs(base) do tc[k] = v end
      for k, v in pairs(c) do tc[k] = v end
      tc.active = reason
      check(tc)
    end
  end)

  -- Back-calculates a CPU target just past the tolerance (56 %: 10 -> 9), then one just inside (55 %).
  it("TestComputedToleranceAlgImplementation", function()
    local levels, requests = {}, {}
    local jitter = { 100, -100, 10, -10, 2, -2, 1, -1, 0, 0 }
    for i = 1, 10 do levels[i], requests[i] = 150, (300 + jitter[i]) / 1000 end
    check { min = 0, max = 1000, spec = 10, status = 10, expect = 9, cpu = 56, levels = levels, requests = requests,
      recommendations = EMPTY }
    check { min = 0, max = 1000, spec = 10, status = 10, expect = 10, cpu = 55, levels = levels, requests = requests,
      recommendations = EMPTY, able = "ReadyForNewScale" }
  end)
end)
