-- steward.scaling.hpa's behavior half against Kubernetes' own cases, as tables under the Go
-- tests' names: horizontal_test.go's TestConvertDesiredReplicasWithRules,
-- TestCalculateScaleUpLimitWithScalingRules, TestCalculateScaleDownLimitWithBehaviors,
-- TestNormalizeDesiredReplicas, TestScalingWithRules, TestStoreScaleEvents,
-- TestNormalizeDesiredReplicasWithBehavior, and pkg/apis/autoscaling/v2/defaults_test.go's
-- TestGenerateScaleUpRules / TestGenerateScaleDownRules (through hpa.check). Every case is
-- ported; TestScalingWithRules' one case the Go loop skips (testThis) runs here and passes.
-- time.Now() is the fake clock's NOW; a scale-down window Kubernetes leaves nil is the
-- controller's 300 s here, as the controller fills it in.
-- Run by `steward test`; under prove (tests/run runs it with `steward script`) it hands itself
-- to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local hpa = require "steward.scaling.hpa"
local b = require "steward.scaling.hpa_behavior"

local NOW = 1000000
local M = 60

-- generateScalingRules(pods, podsPeriod, percent, percentPeriod, stabilizationWindow)
local function rules(pods, pods_period, percent, percent_period, window)
  local r = { select_policy = "Max", stabilization_window = window, policies = {} }
  if pods ~= 0 then r.policies[#r.policies + 1] = { type = "Pods", value = pods, period = pods_period } end
  if percent ~= 0 then r.policies[#r.policies + 1] = { type = "Percent", value = percent, period = percent_period } end
  return r
end

-- GenerateHPAScaleUpRules / GenerateHPAScaleDownRules, through check.
local function generated(up, down)
  return hpa.check { max_replicas = 10, behavior = { scale_up = up, scale_down = down } }.behavior
end

-- generateEventsUniformDistribution: each event in the middle of its slice of the last period.
local function uniform(changes, period)
  local out, seg = {}, period / #changes
  for i, c in ipairs(changes) do
    local boundary = period - seg * i + seg / 2
    boundary = boundary >= 0 and math.floor(boundary) or math.ceil(boundary) -- time.Duration(float)
    out[i] = { change = c, at = NOW - boundary }
  end
  return out
end

describe("TestConvertDesiredReplicasWithRules", function()
  local saved
  before_each(function() saved = b.SCALE_UP_LIMIT_FACTOR; b.SCALE_UP_LIMIT_FACTOR = 8 end)
  after_each(function() b.SCALE_UP_LIMIT_FACTOR = saved end)
  local CASES = {
    { "prenormalized desired replicas within range", 5, 7, 3, 8, 7, "DesiredWithinRange" },
    { "prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, "TooFewReplicas" },
    { "prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, "DesiredWithinRange" },
    { "maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10, "TooManyReplicas" },
    { "scaleUpLimit is the limit because scaleUpLimit < maxReplicas", 3, 1000, 1, 2000, "limit(3)", "ScaleUpLimit" },
  }
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local want = c[6] == "limit(3)" and b.legacy_scale_up_limit(3) or c[6]
      local got, cond = b.convert_with_rules(c[2], c[3], c[4], c[5])
      assert.equal(got, want)
      assert.equal(cond, c[7])
    end)
  end
  it("calculateScaleUpLimit(3) with the tests' factor 8 is 24", function()
    assert.equal(b.legacy_scale_up_limit(3), 24)
  end)
end)

describe("scale limits with rules", function()
  local min_rules = { select_policy = "Min", stabilization_window = 300,
    policies = { { type = "Pods", value = 2, period = 60 }, { type = "Percent", value = 50, period = 60 } } }
  it("TestCalculateScaleUpLimitWithScalingRules", function()
    assert.equal(b.scale_up_limit(1, {}, {}, min_rules, NOW), 2)
  end)
  it("TestCalculateScaleDownLimitWithBehaviors", function()
    assert.equal(b.scale_down_limit(5, {}, {}, min_rules, NOW), 3)
  end)
end)

describe("TestNormalizeDesiredReplicas", function()
  -- name, recommendations {replicas, ago}, prenormalized, stabilized, log length
  local CASES = {
    { "empty log", {}, 5, 5, 1 },
    { "stabilize", { { 4, 2 * M }, { 5, 1 * M } }, 3, 5, 3 },
    { "no stabilize", { { 1, 2 * M }, { 2, 1 * M } }, 3, 3, 3 },
    { "no stabilize - old recommendations", { { 10, 10 * M }, { 9, 9 * M } }, 3, 3, 2 },
    { "stabilize - old recommendations", { { 10, 10 * M }, { 4, 1 * M }, { 5, 2 * M }, { 9, 9 * M } }, 3, 5, 4 },
  }
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local state = { recommendations = {} }
      for i, r in ipairs(c[2]) do state.recommendations[i] = { replicas = r[1], at = NOW - r[2] } end
      assert.equal(b.stabilize(state, 5 * M, c[3], NOW), c[4])
      assert.equal(#state.recommendations, c[5], "log length")
    end)
  end
end)

describe("TestScalingWithRules", function()
  -- name, up events, down events, min, max, up rules, down rules, current, desired, expected, condition
  local CASES = {
    { "prenormalized desired replicas within range", nil, nil, 3, 8, nil, nil, 5, 7, 7, "DesiredWithinRange" },
    { "prenormalized desired replicas < minReplicas", nil, nil, 2, 8, nil, nil, 3, 1, 2, "TooFewReplicas" },
    { "prenormalized desired replicas within range when minReplicas is 0", nil, nil, 0, 10, nil, nil, 1, 0, 0, "DesiredWithinRange" },
    { "maxReplicas is the limit because maxReplicas < scaleUpLimit", nil, nil, 1, 10, nil, nil, 20, 1000, 10, "TooManyReplicas" },
    { "desired replica count is more than the maximum replica count", nil, nil, 100, 150, nil, nil, 100, 1000, 150, "TooManyReplicas" },
    { "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", nil, nil, 1, 2000,
      rules(0, 0, 1, 60, 0), nil, 3, 1000, 4, "ScaleUpLimit" },
    { "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies", nil, nil, 3, 2000,
      nil, rules(20, 60, 0, 0, 0), 1000, 3, 980, "ScaleDownLimit" },
    { "scaleUp with default behavior", nil, nil, 1, 1000, nil, nil, 10, 50, 20, "ScaleUpLimit" },
    { "scaleUp with pods policy larger than percent policy", nil, nil, 1, 1000, rules(100, 60, 100, 60, 0), nil, 10, 500, 110, "ScaleUpLimit" },
    { "scaleUp with percent policy larger than pods policy", nil, nil, 1, 1000, rules(2, 60, 100, 60, 0), nil, 10, 500, 20, "ScaleUpLimit" },
    { "scaleUp with spec MaxReplicas limitation with large pod policy", nil, nil, 1, 1000, rules(100, 60, 0, 0, 0), nil, 10, 50, 50, "DesiredWithinRange" },
    { "scaleUp with spec MaxReplicas limitation with large percent policy", nil, nil, 1, 1000, rules(10000, 60, 0, 0, 0), nil, 10, 50, 50, "DesiredWithinRange" },
    { "scaleUp with pod policy limitation", nil, nil, 1, 1000, rules(30, 60, 0, 0, 0), nil, 10, 50, 40, "ScaleUpLimit" },
    { "scaleUp with percent policy limitation", nil, nil, 1, 1000, rules(0, 0, 200, 60, 0), nil, 10, 50, 30, "ScaleUpLimit" },
    { "scaleDown with percent policy larger than pod policy", nil, nil, 1, 1000, nil, rules(20, 60, 1, 60, 300), 100, 2, 80, "ScaleDownLimit" },
    { "scaleDown with pod policy larger than percent policy", nil, nil, 1, 1000, nil, rules(2, 60, 1, 60, 300), 100, 2, 98, "ScaleDownLimit" },
    { "scaleDown with spec MinReplicas=nil limitation with large pod policy", nil, nil, 1, 1000, nil, rules(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas" },
    { "scaleDown with spec MinReplicas limitation with large pod policy", nil, nil, 1, 1000, nil, rules(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas" },
    { "scaleDown with spec MinReplicas limitation with large percent policy", nil, nil, 5, 1000, nil, rules(0, 0, 100, 60, 300), 10, 2, 5, "TooFewReplicas" },
    { "scaleDown with pod policy limitation", nil, nil, 1, 1000, nil, rules(5, 60, 0, 0, 300), 10, 2, 5, "ScaleDownLimit" },
    { "scaleDown with percent policy limitation", nil, nil, 1, 1000, nil, rules(0, 0, 50, 60, 300), 10, 5, 5, "DesiredWithinRange" },
    { "scaleUp with spec MaxReplicas limitation with large pod policy and events", uniform({ 1, 5, 9 }, 120), nil,
      1, 200, rules(300, 60, 0, 0, 0), nil, 100, 500, 200, "TooManyReplicas" },
    { "scaleUp with spec MaxReplicas limitation with large percent policy and events", uniform({ 1, 5, 9 }, 120), nil,
      1, 200, rules(0, 0, 10000, 60, 0), nil, 100, 500, 200, "TooManyReplicas" },
    { "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
      uniform({ 1, 5, 9 }, 120), nil, 1, 1000, rules(5, 120, 0, 0, 0), nil, 100, 500, 100, "ScaleUpLimit" },
    { "scaleUp with pod policy and previous scale up events", uniform({ 1, 5, 9 }, 120), nil,
      1, 1000, rules(150, 120, 0, 0, 0), nil, 100, 500, 235, "ScaleUpLimit" },
    { "scaleUp with percent policy and previous scale up events", uniform({ 1, 5, 9 }, 120), nil,
      1, 1000, rules(0, 0, 200, 120, 0), nil, 100, 500, 255, "ScaleUpLimit" },
    { "scaleUp with percent policy and previous scale up and down events", uniform({ 4 }, 120), uniform({ 2 }, 120),
      1, 1000, rules(0, 0, 300, 300, 0), nil, 6, 24, 16, "ScaleUpLimit" },
    { "scaleDown with default policy and previous events", nil, uniform({ 1, 5, 9 }, 120),
      1, 1000, nil, nil, 10, 5, 5, "DesiredWithinRange" },
    { "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", nil, uniform({ 1, 5, 9 }, 120),
      1, 1000, nil, rules(115, 120, 0, 0, 300), 100, 0, 1, "TooFewReplicas" },
    { "scaleDown with spec MinReplicas limitation with large pod policy and previous events", nil, uniform({ 1, 5, 9 }, 120),
      5, 1000, nil, rules(130, 120, 0, 0, 300), 100, 0, 5, "TooFewReplicas" },
    { "scaleDown with spec MinReplicas limitation with large percent policy and previous events", nil, uniform({ 1, 5, 9 }, 120),
      5, 1000, nil, rules(0, 0, 100, 120, 300), 100, 2, 5, "TooFewReplicas" },
    { "scaleDown with pod policy limitation and previous events", nil, uniform({ 1, 5, 9 }, 120),
      1, 1000, nil, rules(5, 120, 0, 0, 300), 100, 2, 100, "ScaleDownLimit" },
    { "scaleDown with percent policy limitation and previous events", nil, uniform({ 2, 4, 6 }, 120),
      1, 1000, nil, rules(0, 0, 50, 120, 300), 100, 0, 56, "ScaleDownLimit" },
    { "scaleDown with percent policy and previous scale up and down events", uniform({ 2 }, 120), uniform({ 4 }, 120),
      1, 1000, nil, rules(0, 0, 50, 180, 0), 10, 1, 6, "ScaleDownLimit" },
    { "scaleDown with previous events preventing further scale down", nil, uniform({ 10, 10, 10 }, 120),
      1, 1000, nil, rules(0, 0, 10, 120, 300), 100, 0, 100, "ScaleDownLimit" },
    { "scaleDown with with previous events still allowing more scale down", nil, uniform({ 10, 10, 10 }, 120),
      1, 1000, nil, rules(0, 0, 1000, 120, 300), 10, 5, 5, "DesiredWithinRange" },
    { "check 'outdated' flag for events for one behavior for up", uniform({ 8, 12, 9, 11 }, 120), nil,
      1, 1000, rules(1000, 60, 0, 0, 0), nil, 100, 200, 200, "DesiredWithinRange" },
    { "check that events were not marked 'outdated' for two different policies in the behavior for up",
      uniform({ 8, 12, 9, 11 }, 120), nil, 1, 1000, rules(1000, 120, 100, 60, 0), nil, 100, 200, 200, "DesiredWithinRange" },
    { "check that events were marked 'outdated' for two different policies in the behavior for up",
      uniform({ 8, 12, 9, 11 }, 120), nil, 1, 1000, rules(1000, 30, 100, 60, 0), nil, 100, 200, 200, "DesiredWithinRange" },
    { "check 'outdated' flag for events for one behavior for down", nil, uniform({ 8, 12, 9, 11 }, 120),
      1, 1000, nil, rules(1000, 60, 0, 0, 300), 100, 5, 5, "DesiredWithinRange" },
    { "check that events were not marked 'outdated' for two different policies in the behavior for down",
      nil, uniform({ 8, 12, 9, 11 }, 120), 1, 1000, nil, rules(1000, 120, 100, 60, 300), 100, 5, 5, "DesiredWithinRange" },
    { "check that events were marked 'outdated' for two different policies in the behavior for down",
      nil, uniform({ 8, 12, 9, 11 }, 120), 1, 1000, nil, rules(1000, 30, 100, 60, 300), 100, 5, 5, "DesiredWithinRange" },
  }
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local state = { scale_up_events = c[2], scale_down_events = c[3] }
      local got, cond = b.convert_with_behavior_rate(state, generated(c[6], c[7]), c[8], c[9], c[4], c[5], NOW)
      assert.equal(got, c[10], "replicas")
      assert.equal(cond, c[11], "condition")
    end)
  end
end)

describe("TestStoreScaleEvents", function()
  -- name, replica change, previous events {change, ago[, outdated]}, rules, expected events {change, outdated}, change in 60 s
  local CASES = {
    { "empty entries with default behavior", 5, {}, nil, {}, 0 },
    { "empty entries with two-policy-behavior", 5, {}, rules(10, 60, 100, 60, 0), { { 5, false } }, 0 },
    { "one outdated entry to be kept untouched without behavior", 5, { { 7, 61 } }, nil, { { 7, false } }, 0 },
    { "one outdated entry to be replaced with behavior", 5, { { 7, 61 } }, rules(10, 60, 100, 60, 0), { { 5, false } }, 0 },
    { "one actual entry to be not touched with behavior", 5, { { 7, 58 } }, rules(10, 60, 100, 60, 0),
      { { 7, false }, { 5, false } }, 7 },
    { "two entries, one of them to be replaced", 5, { { 7, 61 }, { 6, 59 } }, rules(10, 60, 0, 0, 0),
      { { 5, false }, { 6, false } }, 6 },
    { "replace one entry, use policies with different periods", 5, { { 8, 29 }, { 6, 59 }, { 7, 61 }, { 9, 61 } },
      rules(10, 60, 100, 30, 0), { { 8, false }, { 6, false }, { 7, true }, { 5, false } }, 14 },
    { "two entries, both actual", 5, { { 7, 58 }, { 6, 59 } }, rules(10, 120, 100, 30, 0),
      { { 7, false }, { 6, false }, { 5, false } }, 13 },
  }
  local function events(list)
    local out = {}
    for i, e in ipairs(list) do out[i] = { change = e[1], at = NOW - e[2], outdated = false } end
    return out
  end
  local function shape(list)
    local out = {}
    for i, e in ipairs(list or {}) do out[i] = { e.change, e.outdated or false } end
    return out
  end
  for _, c in ipairs(CASES) do
    it(c[1], function()
      for _, dir in ipairs { "up", "down" } do
        local key = dir == "up" and "scale_up_events" or "scale_down_events"
        local state = { [key] = events(c[3]) }
        assert.equal(b.change_in_period(60, state[key], NOW), c[6], dir .. ": change in the last 60 s")
        local behavior = c[4] and (dir == "up" and { scale_up = c[4] } or { scale_down = c[4] })
        b.store_scale_event(state, behavior, 10, dir == "up" and 10 + c[2] or 10 - c[2], NOW)
        assert.same(shape(state[key]), c[5], dir .. ": stored events")
      end
    end)
  end
end)

describe("TestNormalizeDesiredReplicasWithBehavior", function()
  -- name, recommendations {replicas, ago}, current, prenormalized, stabilized, stored, up window, down window
  local CASES = {
    { "empty recommendations for scaling down", {}, 100, 5, 5, { 5 }, 0, 0 },
    { "simple scale down stabilization", { { 4, 2 * M }, { 5, 1 * M } }, 100, 3, 5, { 4, 5, 3 }, 0, 3 * M },
    { "simple scale up stabilization", { { 4, 2 * M }, { 5, 1 * M } }, 1, 7, 4, { 4, 5, 7 }, 5 * M, 0 },
    { "no scale down stabilization", { { 1, 2 * M }, { 2, 1 * M } }, 100, 3, 3, { 1, 2, 3 }, 5 * M, 0 },
    { "no scale up stabilization", { { 4, 2 * M }, { 5, 1 * M } }, 1, 3, 3, { 4, 5, 3 }, 0, 5 * M },
    { "no scale down stabilization, reuse recommendation element", { { 10, 10 * M }, { 9, 9 * M } }, 100, 3, 3, { 10, 3 }, 0, 0 },
    { "no scale up stabilization, reuse recommendation element", { { 10, 10 * M }, { 9, 9 * M } }, 1, 100, 100, { 10, 100 }, 0, 0 },
    { "scale down stabilization, reuse one of obsolete recommendation element",
      { { 10, 10 * M }, { 4, 1 * M }, { 5, 2 * M }, { 9, 9 * M } }, 100, 3, 5, { 10, 4, 5, 3 }, 0, 3 * M },
    { "scale up stabilization, reuse one of obsolete recommendation element",
      { { 10, 100 * M }, { 6, 1 * M }, { 5, 2 * M }, { 9, 3 * M } }, 1, 100, 5, { 100, 6, 5, 9 }, 300, 0 },
    { "scale up and down stabilization, do not scale up when prenormalized rec goes down",
      { { 2, 100 * M }, { 3, 3 * M } }, 2, 1, 2, nil, 300, 300 },
    { "scale up and down stabilization, do not scale down when prenormalized rec goes up",
      { { 2, 100 * M }, { 1, 3 * M } }, 2, 3, 2, nil, 300, 300 },
  }
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local state = { recommendations = {} }
      for i, r in ipairs(c[2]) do state.recommendations[i] = { replicas = r[1], at = NOW - r[2] } end
      local behavior = { scale_up = { stabilization_window = c[7] }, scale_down = { stabilization_window = c[8] } }
      assert.equal(b.stabilize_with_behaviors(state, behavior, c[3], c[4], NOW), c[5])
      if c[6] then
        local stored = {}
        for i, r in ipairs(state.recommendations) do stored[i] = r.replicas end
        assert.same(stored, c[6])
      end
    end)
  end
end)

describe("defaults_test.go", function()
  local function policies(pods, pods_period, percent, percent_period)
    local out = {}
    if pods ~= 0 or pods_period ~= 0 then out[#out + 1] = { type = "Pods", value = pods, period = pods_period } end
    if percent ~= 0 or percent_period ~= 0 then out[#out + 1] = { type = "Percent", value = percent, period = percent_period } end
    return #out > 0 and out or nil
  end
  -- name, pods, period, percent, period, window, select, expected policies, expected window, expected select
  local DOWN = {
    { "Default values", 0, 0, 0, 0, nil, nil, { { type = "Percent", value = 100, period = 15 } }, 300, "Max" },
    { "All parameters are specified", 1, 2, 3, 4, 25, "Max",
      { { type = "Pods", value = 1, period = 2 }, { type = "Percent", value = 3, period = 4 } }, 25, "Max" },
    { "Percent policy is specified", 0, 0, 1, 2, nil, "Min", { { type = "Percent", value = 1, period = 2 } }, 300, "Min" },
    { "Pods policy is specified", 3, 4, 0, 0, nil, nil, { { type = "Pods", value = 3, period = 4 } }, 300, "Max" },
  }
  local UP = {
    { "Default values", 0, 0, 0, 0, nil, nil,
      { { type = "Pods", value = 4, period = 15 }, { type = "Percent", value = 100, period = 15 } }, 0, "Max" },
    { "All parameters are specified", 1, 2, 3, 4, 25, "Max",
      { { type = "Pods", value = 1, period = 2 }, { type = "Percent", value = 3, period = 4 } }, 25, "Max" },
    { "Pod policy is specified", 1, 2, 0, 0, nil, "Min", { { type = "Pods", value = 1, period = 2 } }, 0, "Min" },
    { "Percent policy is specified", 0, 0, 7, 10, nil, nil, { { type = "Percent", value = 7, period = 10 } }, 0, "Max" },
    { "Pod policy and stabilization window are specified", 4, 2, 0, 0, 25, nil, { { type = "Pods", value = 4, period = 2 } }, 25, "Max" },
    { "Percent policy and stabilization window are specified", 0, 0, 7, 60, 25, nil,
      { { type = "Percent", value = 7, period = 60 } }, 25, "Max" },
  }
  for _, dir in ipairs { { "TestGenerateScaleDownRules", DOWN, "scale_down" }, { "TestGenerateScaleUpRules", UP, "scale_up" } } do
    for _, c in ipairs(dir[2]) do
      it(dir[1] .. ": " .. c[1], function()
        local given = { policies = policies(c[2], c[3], c[4], c[5]), stabilization_window = c[6], select_policy = c[7] }
        local r = generated(dir[3] == "scale_up" and given or nil, dir[3] == "scale_down" and given or nil)[dir[3]]
        assert.same(r.policies, c[8])
        assert.equal(r.stabilization_window, c[9])
        assert.equal(r.select_policy, c[10])
      end)
    end
  end
end)
