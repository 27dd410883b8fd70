-- steward.scaling.hpa's replica calculator against Kubernetes' own cases: every case of
-- pkg/controller/podautoscaler/replica_calculator_test.go (github:kubernetes/kubernetes) that
-- applies, as a table, each under its Go test's name with its expected answer. Their fixtures
-- become steward instances: pod i is instance "test-pod-i"; a pod's two containers (each with the
-- request and the level the case gives) become one instance with the sums; deletion timestamps
-- become phase "deleted"; the fake clock stands where time.Now() was, the zero time at 0, with the
-- test controller's 2 min CPU initialization period and 10 s readiness delay.
-- Not ported, by design: the *Container* variants (they pick one container of a pod; a steward
-- instance is one process), TestCalculatePodRequests (container and init-container request sums,
-- same reason). TestReplicaCalcEmptyMetrics keeps its expectation (an error), not Kubernetes'
-- wording, which names its metrics API.
-- Run by `steward test`; under prove (tests/run runs it with `steward script`) it hands itself
-- to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local hpa = require "steward.scaling.hpa"
local replicas = require "steward.scaling.hpa_replicas"

local NOW = 1000000
local HOT, COOL = NOW, NOW - 180 -- hotCPUCreationTime(), coolCPUCreationTime()
local CONTAINERS = 2             -- numContainersPerPod

local SPEC = hpa.check {
  max_replicas = 1000, cpu_initialization_period = "2m", initial_readiness_delay = "10s",
  metrics = { { name = "cpu", type = "resource", target = { type = "utilization", value = 50 } } },
}
local TOL = { up = 0.1, down = 0.1 }

-- One replicaCalcTestCase -> (proposal or nil, err).
local function run(tc)
  local pods = tc.current
  if tc.phase and #tc.phase > pods then pods = #tc.phase end
  local instances = {}
  for i = 1, pods do
    local r = tc.readiness and tc.readiness:sub(i, i)
    local phase = tc.phase and tc.phase[i] or "running"
    if tc.deleted and tc.deleted[i] then phase = "deleted" end
    local start = tc.start and (tc.start[i] == "hot" and HOT or COOL) or 0
    local inst = { id = "test-pod-" .. (i - 1), ready = r ~= "F", phase = phase, started_at = start, ready_at = 0 }
    if tc.resource and tc.resource.requests[i] then
      inst.request = { cpu = CONTAINERS * tc.resource.requests[i] }
    end
    instances[i] = inst
  end
  local metric, obs
  if tc.resource then
    local per = {}
    for i, level in ipairs(tc.resource.levels) do
      local id = tc.resource.names and tc.resource.names[i] or "test-pod-" .. (i - 1)
      per[id] = CONTAINERS * level / 1000
    end
    metric = { name = "cpu", type = "resource", resource = "cpu", target = { type = "utilization", value = tc.resource.target } }
    obs = { per_instance = per, at = 0 } -- tc.timestamp: the zero time
  else
    local m = tc.metric
    if m.kind == "pods" then
      local per = {}
      for i, level in ipairs(m.levels) do per["test-pod-" .. (i - 1)] = level / 1000 end
      metric = { name = "qps", type = "pods", target = { type = "average_value", value = m.target / 1000 } }
      obs = { per_instance = per, at = 0 }
    elseif m.kind == "object" or m.kind == "object_per_pod" then
      metric = { name = "qps", type = "object",
        target = { type = m.kind == "object" and "value" or "average_value", value = m.target / 1000 } }
      obs = { value = m.levels[1] / 1000 }
    else
      local values = {}
      for i, level in ipairs(m.levels) do values[i] = level / 1000 end
      metric = { name = "qps", type = "external",
        target = { type = m.kind == "external" and "value" or "average_value", value = m.target / 1000 } }
      obs = { values = values }
    end
  end
  local tol = tc.tol and { down = tc.tol[1], up = tc.tol[2] } or TOL -- Tolerances{scaleDown, scaleUp}
  return replicas.proposal(SPEC, tol, tc.current, tc.current, metric, obs, instances, NOW)
end

local function check(tc)
  local p, err = run(tc)
  if tc.err then
    assert.equal(p, nil, "an error expected")
    assert.match(err, tc.err)
    return
  end
  assert.truthy(p, err)
  assert.equal(p.replicas, tc.expect, "replicas")
  if tc.resource then
    assert.equal(p.value, tc.resource.util, "utilization")
    assert.equal(replicas.milli(p.average), tc.resource.raw, "raw value")
  else
    assert.equal(replicas.milli(p.value), tc.metric.usage, "usage")
  end
end

local function res(requests, levels, target, util, raw, names)
  return { requests = requests, levels = levels, target = target, util = util, raw = raw, names = names }
end
local ones = function(n) local t = {} for i = 1, n do t[i] = 1.0 end return t end

-- Each: Go test name, then the replicaCalcTestCase.
local CASES = {
  { "TestReplicaCalcDisjointResourcesMetrics", current = 1, err = "no metrics returned matched known",
    resource = res({ 1.0 }, { 100 }, 100, nil, nil, { "an-older-pod-name" }) },
  { "TestReplicaCalcScaleUp", current = 3, expect = 5,
    resource = res(ones(3), { 300, 500, 700 }, 30, 50, CONTAINERS * 500) },
  { "TestReplicaCalcScaleUpUnreadyLessScale", current = 3, expect = 4, readiness = "FTT",
    resource = res(ones(3), { 300, 500, 700 }, 30, 60, CONTAINERS * 600) },
  { "TestReplicaCalcScaleUpHotCpuLessScale", current = 3, expect = 4, start = { "hot", "cool", "cool" },
    resource = res(ones(3), { 300, 500, 700 }, 30, 60, CONTAINERS * 600) },
  { "TestReplicaCalcScaleUpUnreadyNoScale", current = 3, expect = 3, readiness = "TFF",
    resource = res(ones(3), { 400, 500, 700 }, 30, 40, CONTAINERS * 400) },
  { "TestReplicaCalcScaleHotCpuNoScale", current = 3, expect = 3, readiness = "TFF", start = { "cool", "hot", "hot" },
    resource = res(ones(3), { 400, 500, 700 }, 30, 40, CONTAINERS * 400) },
  { "TestReplicaCalcScaleUpIgnoresFailedPods", current = 2, expect = 4, readiness = "TTFF",
    phase = { "running", "running", "failed", "failed" },
    resource = res(ones(4), { 500, 700 }, 30, 60, CONTAINERS * 600) },
  { "TestReplicaCalcScaleUpIgnoresDeletionPods", current = 2, expect = 4, readiness = "TTFF",
    phase = { "running", "running", "running", "running" }, deleted = { false, false, true, true },
    resource = res(ones(4), { 500, 700 }, 30, 60, CONTAINERS * 600) },
  { "TestReplicaCalcScaleUpCM", current = 3, expect = 4,
    metric = { kind = "pods", levels = { 20000, 10000, 30000 }, target = 15000, usage = 20000 } },
  { "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", current = 3, expect = 6, readiness = "TTF",
    start = { "cool", "cool", "hot" },
    metric = { kind = "pods", levels = { 50000, 10000, 30000 }, target = 15000, usage = 30000 } },
  { "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", current = 3, expect = 7, readiness = "FTF",
    start = { "hot", "cool", "hot" },
    metric = { kind = "pods", levels = { 50000, 15000, 30000 }, target = 15000, usage = 31666 } },
  { "TestReplicaCalcScaleUpCMObject", current = 3, expect = 4,
    metric = { kind = "object", levels = { 20000 }, target = 15000, usage = 20000 } },
  { "TestReplicaCalcScaleUpCMPerPodObject", current = 3, expect = 4,
    metric = { kind = "object_per_pod", levels = { 20000 }, target = 5000, usage = 6667 } },
  { "TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods", current = 3, expect = 5, readiness = "FTF",
    metric = { kind = "object", levels = { 50000 }, target = 10000, usage = 50000 } },
  { "TestReplicaCalcScaleUpCMExternal", current = 1, expect = 2,
    metric = { kind = "pods", levels = { 8600 }, target = 4400, usage = 8600 } },
  { "TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", current = 3, expect = 2, readiness = "FTF",
    metric = { kind = "external", levels = { 8600 }, target = 4400, usage = 8600 } },
  { "TestReplicaCalcScaleUpCMExternalNoLabels", current = 1, expect = 2,
    metric = { kind = "pods", levels = { 8600 }, target = 4400, usage = 8600 } },
  { "TestReplicaCalcScaleUpPerPodCMExternal", current = 3, expect = 4,
    metric = { kind = "external_per_pod", levels = { 8600 }, target = 2150, usage = 2867 } },
  { "TestReplicaCalcScaleDown", current = 5, expect = 3,
    resource = res(ones(5), { 100, 300, 500, 250, 250 }, 50, 28, CONTAINERS * 280) },
  { "TestReplicaCalcScaleDownCM", current = 5, expect = 3,
    metric = { kind = "pods", levels = { 12000, 12000, 12000, 12000, 12000 }, target = 20000, usage = 12000 } },
  { "TestReplicaCalcScaleDownPerPodCMObject", current = 5, expect = 3,
    metric = { kind = "object_per_pod", levels = { 6000 }, target = 2000, usage = 1200 } },
  { "TestReplicaCalcScaleDownCMObject", current = 5, expect = 3,
    metric = { kind = "object", levels = { 12000 }, target = 20000, usage = 12000 } },
  { "TestReplicaCalcScaleDownCMExternal", current = 5, expect = 3,
    metric = { kind = "external", levels = { 8600 }, target = 14334, usage = 8600 } },
  { "TestReplicaCalcScaleDownPerPodCMExternal", current = 5, expect = 3,
    metric = { kind = "external_per_pod", levels = { 8600 }, target = 2867, usage = 1720 } },
  { "TestReplicaCalcScaleDownExcludeUnreadyPods", current = 5, expect = 2, readiness = "TTTFF",
    resource = res(ones(5), { 100, 300, 500, 250, 250 }, 50, 30, CONTAINERS * 300) },
  { "TestReplicaCalcScaleDownExcludeUnscheduledPods", current = 5, expect = 1, readiness = "TFFFF",
    phase = { "running", "pending", "pending", "pending", "pending" },
    resource = res(ones(5), { 100 }, 50, 10, CONTAINERS * 100) },
  { "TestReplicaCalcScaleDownIgnoreHotCpuPods", current = 5, expect = 2,
    start = { "cool", "cool", "cool", "hot", "hot" },
    resource = res(ones(5), { 100, 300, 500, 250, 250 }, 50, 30, CONTAINERS * 300) },
  { "TestReplicaCalcScaleDownIgnoresFailedPods", current = 5, expect = 3, readiness = "TTTTTFF",
    phase = { "running", "running", "running", "running", "running", "failed", "failed" },
    resource = res(ones(7), { 100, 300, 500, 250, 250 }, 50, 28, CONTAINERS * 280) },
  { "TestReplicaCalcScaleDownIgnoresDeletionPods", current = 5, expect = 3, readiness = "TTTTTFF",
    phase = { "running", "running", "running", "running", "running", "running", "running" },
    deleted = { false, false, false, false, false, true, true },
    resource = res(ones(7), { 100, 300, 500, 250, 250 }, 50, 28, CONTAINERS * 280) },
  { "TestReplicaCalcTolerance", current = 3, expect = 3,
    resource = res({ 0.9, 1.0, 1.1 }, { 1010, 1030, 1020 }, 100, 102, CONTAINERS * 1020) },
  { "TestReplicaCalcToleranceCM", current = 3, expect = 3,
    metric = { kind = "pods", levels = { 20000, 21000, 21000 }, target = 20000, usage = 20666 } },
  { "TestReplicaCalcToleranceCMObject", current = 3, expect = 3,
    metric = { kind = "object", levels = { 20666 }, target = 20000, usage = 20666 } },
  { "TestReplicaCalcTolerancePerPodCMObject", current = 4, expect = 4,
    metric = { kind = "object_per_pod", levels = { 20166 }, target = 5000, usage = 5042 } },
  { "TestReplicaCalcToleranceCMExternal", current = 3, expect = 3,
    metric = { kind = "external", levels = { 8600 }, target = 8888, usage = 8600 } },
  { "TestReplicaCalcTolerancePerPodCMExternal", current = 3, expect = 3,
    metric = { kind = "external_per_pod", levels = { 8600 }, target = 2900, usage = 2867 } },
  { "TestReplicaCalcSuperfluousMetrics", current = 4, expect = 24,
    resource = res(ones(4), { 4000, 9500, 3000, 7000, 3200, 2000 }, 100, 587, CONTAINERS * 5875) },
  { "TestReplicaCalcMissingMetrics", current = 4, expect = 3,
    resource = res(ones(4), { 400, 95 }, 100, 24, 495) },
  { "TestReplicaCalcEmptyMetrics", current = 4, err = "did not receive metrics",
    resource = res(ones(3), {}, 100) },
  { "TestReplicaCalcEmptyCPURequest", current = 1, err = "missing request for",
    resource = res({}, { 200 }, 100) },
  { "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", current = 5, expect = 5,
    metric = { kind = "pods", levels = { 20000, 19000, 21000 }, target = 20000, usage = 20000 } },
  { "TestReplicaCalcMissingMetricsNoChangeEq", current = 2, expect = 2,
    resource = res(ones(2), { 1000 }, 100, 100, CONTAINERS * 1000) },
  { "TestReplicaCalcMissingMetricsNoChangeGt", current = 2, expect = 2,
    resource = res(ones(2), { 1900 }, 100, 190, CONTAINERS * 1900) },
  { "TestReplicaCalcMissingMetricsNoChangeLt", current = 2, expect = 2,
    resource = res(ones(2), { 600 }, 100, 60, CONTAINERS * 600) },
  { "TestReplicaCalcMissingMetricsUnreadyChange", current = 3, expect = 3, readiness = "FTT",
    resource = res(ones(3), { 100, 450 }, 50, 45, CONTAINERS * 450) },
  { "TestReplicaCalcMissingMetricsHotCpuNoChange", current = 3, expect = 3, start = { "hot", "cool", "cool" },
    resource = res(ones(3), { 100, 450 }, 50, 45, CONTAINERS * 450) },
  { "TestReplicaCalcMissingMetricsUnreadyScaleUp", current = 3, expect = 4, readiness = "FTT",
    resource = res(ones(3), { 100, 2000 }, 50, 200, CONTAINERS * 2000) },
  { "TestReplicaCalcMissingMetricsHotCpuScaleUp", current = 3, expect = 4, readiness = "FTT",
    start = { "hot", "cool", "cool" },
    resource = res(ones(3), { 100, 2000 }, 50, 200, CONTAINERS * 2000) },
  { "TestReplicaCalcMissingMetricsUnreadyScaleDown", current = 4, expect = 3, readiness = "FTTT",
    resource = res(ones(4), { 100, 100, 100 }, 50, 10, CONTAINERS * 100) },
  { "TestReplicaCalcMissingMetricsScaleDownTargetOver100", current = 4, expect = 2, readiness = "FTTT",
    resource = res({ 1.0, 1.0, 2.0, 2.0 }, { 200, 100, 100 }, 300, 6, CONTAINERS * 100) },
  { "TestReplicaCalcDuringRollingUpdateWithMaxSurge", current = 2, expect = 2,
    phase = { "running", "running", "running" },
    resource = res(ones(3), { 100, 100 }, 50, 10, CONTAINERS * 100) },
  { "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM", current = 2, expect = 2,
    phase = { "running", "running", "running" },
    metric = { kind = "pods", levels = { 10000, 10000 }, target = 17000, usage = 10000 } },
}

describe("replica_calculator_test.go", function()
  for _, tc in ipairs(CASES) do
    it(tc[1], function() check(tc) end)
  end

  -- Back-calculates a target just past the tolerance, then one just inside it: 10 pods using
  -- 150m of each container, requests spread around 300m.
  it("TestReplicaCalcComputedToleranceAlgImplementation", function()
    local levels, requests = {}, {}
    local jitter = { 100, -100, 10, -10, 2, -2, 1, -1, 0, 0 }
    for i = 1, 10 do levels[i], requests[i] = 150, (300 + jitter[i]) / 1000 end
    -- target = 1/(2 * 0.9) + .01 -> 56 %; the used ratio 1500/(3000 * 0.5656) -> ceil(8.84) = 9 pods
    check { current = 10, expect = 9, resource = res(requests, levels, 56, 50, CONTAINERS * 150) }
    -- target = 1/(2 * 0.9) + .004 -> 55 %: inside the tolerance, no change
    check { current = 10, expect = 10, resource = res(requests, levels, 55, 50, CONTAINERS * 150) }
  end)
end)

-- The configurable tolerances (Kubernetes 1.33, KEP-4951), from the table-driven version of the
-- same file: TestReplicaCalcResourceTolerance and the "outside configurable 1% tolerance" cases of
-- TestReplicaCalc{Pod,Object,ObjectPerPod,External,ExternalPerPod}Metric. Their int64/int32
-- overflow cases (MaxInt64 levels saturating to MaxInt32 replicas) are not ported: Lua numbers
-- are doubles, there is no integer overflow to saturate.
describe("replica_calculator_test.go: configurable tolerances", function()
  local MIXED = { 0.9, 1.0, 1.1 }
  local CASES = {
    { "TestReplicaCalcResourceTolerance: within default tolerance", current = 3, expect = 3,
      resource = res(MIXED, { 1010, 1030, 1020 }, 100, 102, CONTAINERS * 1020) },
    { "TestReplicaCalcResourceTolerance: outside 0% tolerance", current = 3, expect = 4, tol = { 0, 0 },
      resource = res(MIXED, { 909, 1010, 1111 }, 100, 101, CONTAINERS * 1010) },
    { "TestReplicaCalcResourceTolerance: within 200% scale-up tolerance", current = 3, expect = 3, tol = { 0.1, 2 },
      resource = res(MIXED, { 1890, 1910, 1900 }, 100, 190, CONTAINERS * 1900) },
    { "TestReplicaCalcResourceTolerance: outside 8% scale-up tolerance (superfluous scale-down tolerance)",
      current = 3, expect = 4, tol = { 2, 0.08 }, resource = res(MIXED, { 1100, 1080, 1090 }, 100, 109, CONTAINERS * 1090) },
    { "TestReplicaCalcResourceTolerance: within 36% scale-down tolerance", current = 3, expect = 3, tol = { 0.36, 0.1 },
      resource = res(MIXED, { 660, 640, 650 }, 100, 65, CONTAINERS * 650) },
    { "TestReplicaCalcResourceTolerance: outside 34% scale-down tolerance", current = 3, expect = 2, tol = { 0.34, 0.1 },
      resource = res(MIXED, { 660, 640, 650 }, 100, 65, CONTAINERS * 650) },
    { "TestReplicaCalcPodMetric: outside configurable 1% tolerance", current = 3, expect = 4, tol = { 0.1, 0.01 },
      metric = { kind = "pods", levels = { 20000, 21000, 21000 }, target = 20000, usage = 20666 } },
    { "TestReplicaCalcObjectMetric: outside configurable 1% tolerance", current = 3, expect = 4, tol = { 0.1, 0.01 },
      metric = { kind = "object", levels = { 20666 }, target = 20000, usage = 20666 } },
    { "TestReplicaCalcObjectPerPodMetric: outside configurable 1% tolerance", current = 4, expect = 5, tol = { 0.1, 0.01 },
      metric = { kind = "object_per_pod", levels = { 20208 }, target = 5000, usage = 5052 } },
    { "TestReplicaCalcExternalMetric: outside configurable 1% tolerance", current = 3, expect = 4, tol = { 0.1, 0.01 },
      metric = { kind = "external", levels = { 8900 }, target = 8800, usage = 8900 } },
    { "TestReplicaCalcExternalPerPodMetric: outside configurable 1% tolerance", current = 3, expect = 4, tol = { 0.1, 0.01 },
      metric = { kind = "external_per_pod", levels = { 8600 }, target = 2800, usage = 2867 } },
  }
  for _, tc in ipairs(CASES) do
    it(tc[1], function() check(tc) end)
  end
end)

-- TestGroupPods: which instances count, wait, miss a sample, or are gone. Kubernetes' "Succeeded"
-- pods of that table stand as phase "succeeded" (neither pending nor failed).
describe("TestGroupPods", function()
  local function group(pods, samples, resource)
    local values, meta = {}, {}
    for id, s in pairs(samples) do
      values[id] = s.value
      meta[id] = { at = s.at or 0, window = s.window or 0 }
    end
    local ready, unready, missing, ignored = replicas.group(SPEC, pods, values, meta, resource, 0, 0, NOW)
    local function names(set)
      local out = {}
      for id in pairs(set) do out[#out + 1] = id end
      table.sort(out)
      return out
    end
    return { ready, names(unready), names(missing), names(ignored) }
  end
  local M = 60
  local CASES_G = {
    { "void", {}, {}, "cpu", { 0, {}, {}, {} } },
    { "count in a ready pod - memory", { { id = "bentham", phase = "succeeded" } },
      { bentham = { value = 1, at = NOW, window = 60 } }, "memory", { 1, {}, {}, {} } },
    { "unready a pod without ready condition - CPU", { { id = "lucretius", phase = "succeeded", started_at = NOW } },
      { lucretius = { value = 1 } }, "cpu", { 0, { "lucretius" }, {}, {} } },
    { "count in a ready pod with fresh metrics during initialization period - CPU",
      { { id = "bentham", phase = "succeeded", started_at = NOW - M, ready = true, ready_at = NOW - 30 } },
      { bentham = { value = 1, at = NOW, window = 30 } }, "cpu", { 1, {}, {}, {} } },
    { "unready a ready pod without fresh metrics during initialization period - CPU",
      { { id = "bentham", phase = "succeeded", started_at = NOW - M, ready = true, ready_at = NOW - 30 } },
      { bentham = { value = 1, at = NOW, window = 60 } }, "cpu", { 0, { "bentham" }, {}, {} } },
    { "unready an unready pod during initialization period - CPU",
      { { id = "lucretius", phase = "succeeded", started_at = NOW - 10 * M, ready = false, ready_at = NOW - 9 * M - 54 } },
      { lucretius = { value = 1 } }, "cpu", { 0, { "lucretius" }, {}, {} } },
    { "count in a ready pod without fresh metrics after initialization period - CPU",
      { { id = "bentham", phase = "succeeded", started_at = NOW - 3 * M, ready = true, ready_at = NOW - 3 * M } },
      { bentham = { value = 1, at = NOW - 2 * M, window = 60 } }, "cpu", { 1, {}, {}, {} } },
    { "count in an unready pod that was ready after initialization period - CPU",
      { { id = "lucretius", phase = "succeeded", started_at = NOW - 10 * M, ready = false, ready_at = NOW - 9 * M } },
      { lucretius = { value = 1 } }, "cpu", { 1, {}, {}, {} } },
    { "unready pod that has never been ready after initialization period - CPU",
      { { id = "lucretius", phase = "succeeded", started_at = NOW - 10 * M, ready = false, ready_at = NOW - 9 * M - 50 } },
      { lucretius = { value = 1 } }, "cpu", { 1, {}, {}, {} } },
    { "a missing pod", { { id = "epicurus", phase = "succeeded", started_at = NOW - 3 * M } },
      {}, "cpu", { 0, {}, { "epicurus" }, {} } },
    { "several pods", {
        { id = "lucretius", phase = "succeeded", started_at = NOW },
        { id = "niccolo", phase = "succeeded", started_at = NOW - 3 * M, ready = true, ready_at = NOW - 3 * M },
        { id = "epicurus", phase = "succeeded", started_at = NOW - 3 * M } },
      { lucretius = { value = 1 }, niccolo = { value = 1 } }, "cpu", { 1, { "lucretius" }, { "epicurus" }, {} } },
    { "pending pods are unreadied", { { id = "unscheduled", phase = "pending" } }, {}, "cpu", { 0, { "unscheduled" }, {}, {} } },
    { "ignore pods with deletion timestamps", { { id = "deleted", phase = "deleted" } },
      { deleted = { value = 1 } }, "cpu", { 0, {}, {}, { "deleted" } } },
    { "ignore pods in a failed state", { { id = "failed", phase = "failed" } },
      { failed = { value = 1 } }, "cpu", { 0, {}, {}, { "failed" } } },
  }
  for _, c in ipairs(CASES_G) do
    it(c[1], function() assert.same(group(c[2], c[3], c[4]), c[5]) end)
  end
end)
