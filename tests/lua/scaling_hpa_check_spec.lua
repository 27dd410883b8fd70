-- steward.scaling.hpa's contract with its callers (steward.scaling.keda, the autoscaler):
-- hpa.check names the field and the reason of every misuse and fills Kubernetes' defaults; the
-- state decide returns is new (the one passed in is untouched, so a caller that failed to apply
-- keeps it), survives JSON, and carries the scale events only when the count changed; the
-- decision says which metric proposed what and why the result is what it is.
-- Run by `steward test`; under prove (tests/run runs it with `steward script`) it hands itself
-- to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local hpa = require "steward.scaling.hpa"
local json = require "steward.json"

local RPS = { name = "rps", type = "pods", target = { type = "average_value", value = 20 } }

local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.falsy(ok, "an error expected")
  return err
end

local function spec(extra)
  local s = { max_replicas = 10, metrics = { RPS } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

-- obs of n ready instances, each with the given rps (a number, or a list per instance)
local function obs(current, rps, n)
  local o = { current = current, instances = {}, metrics = { rps = { per_instance = {} } } }
  for i = 1, n or current do
    local id = "api/r1/" .. i
    o.instances[i] = { id = id, ready = true, phase = "running", started_at = 0, ready_at = 0 }
    if type(rps) == "table" then o.metrics.rps.per_instance[id] = rps[i] else o.metrics.rps.per_instance[id] = rps end
  end
  return o
end

describe("hpa.check", function()
  local CASES = {
    { "max_replicas missing", { metrics = { RPS } }, "scaling: max_replicas: required" },
    { "min above max", spec { min_replicas = 5, max_replicas = 3 }, "scaling: max_replicas: must be >= min_replicas (5), got 3" },
    { "min not an integer", spec { min_replicas = 1.5 }, "scaling: min_replicas: integer >= 0 expected, got 1.5" },
    { "a bad policy period", spec { behavior = { scale_down = { policies = {
        { type = "Pods", value = 1, period = "15s" }, { type = "Pods", value = 1, period = true } } } } },
      "scaling: behavior.scale_down.policies[2].period: duration expected, got boolean" },
    { "a period that is not a duration", spec { behavior = { scale_up = { policies = {
        { type = "Percent", value = 100, period = "soon" } } } } },
      'scaling: behavior.scale_up.policies[1].period: duration expected (like "15s" or "5m"), got "soon"' },
    { "a period over 30 min", spec { behavior = { scale_up = { policies = { { type = "Pods", value = 4, period = "31m" } } } } },
      "scaling: behavior.scale_up.policies[1].period: whole seconds from 1s to 1800s expected" },
    { "an unknown policy type", spec { behavior = { scale_up = { policies = { { type = "Replicas", value = 4, period = "15s" } } } } },
      "scaling: behavior.scale_up.policies[1].type: one of Pods, Percent expected, got Replicas" },
    { "a policy value of 0", spec { behavior = { scale_down = { policies = { { type = "Percent", value = 0, period = "15s" } } } } },
      "scaling: behavior.scale_down.policies[1].value: integer >= 1 expected, got 0" },
    { "no policies", spec { behavior = { scale_down = { policies = {} } } },
      "scaling: behavior.scale_down.policies: a non-empty list of policies expected" },
    { "an unknown select_policy", spec { behavior = { scale_up = { select_policy = "Maximum" } } } ,
      "scaling: behavior.scale_up.select_policy: one of Max, Min, Disabled expected, got Maximum" },
    { "a window over an hour", spec { behavior = { scale_down = { stabilization_window = "2h" } } },
      "scaling: behavior.scale_down.stabilization_window: whole seconds from 0s to 3600s expected" },
    { "a negative tolerance", spec { tolerance = -0.1 }, "scaling: tolerance: number >= 0 expected, got -0.1" },
    { "a metric without a name", spec { metrics = { { type = "pods", target = { type = "average_value", value = 1 } } } },
      "scaling: metrics[1].name: non-empty string expected" },
    { "a metric used twice", spec { metrics = { RPS, RPS } }, 'scaling: metrics[2].name: "rps" is used twice' },
    { "an unknown metric type", spec { metrics = { { name = "x", type = "container", target = { type = "value", value = 1 } } } },
      "scaling: metrics[1].type: one of pods, resource, object, external expected, got container" },
    { "utilization of a pods metric", spec { metrics = { { name = "x", type = "pods", target = { type = "utilization", value = 50 } } } },
      "scaling: metrics[1].target.type: utilization is not a target of a pods metric" },
    { "a fractional utilization", spec { metrics = { { name = "cpu", type = "resource", target = { type = "utilization", value = 50.5 } } } },
      "scaling: metrics[1].target.value: integer >= 1 expected, got 50.5" },
    { "a target of 0", spec { metrics = { { name = "q", type = "external", target = { type = "value", value = 0 } } } },
      "scaling: metrics[1].target.value: positive number expected, got 0" },
    { "no target", spec { metrics = { { name = "q", type = "external" } } },
      'scaling: metrics[1].target: table expected ({ type = "average_value", value = N })' },
    { "min 0 with instance metrics only", spec { min_replicas = 0 },
      "scaling: min_replicas: 0 needs at least one object or external metric" },
    { "a misspelt behavior field", spec { behavior = { scale_down = { stabilisation_window = "10m" } } },
      "scaling: behavior.scale_down.stabilisation_window: unknown field" },
    { "a misspelt direction", spec { behavior = { scaledown = {} } }, "scaling: behavior.scaledown: unknown field" },
    { "a misspelt policy field", spec { behavior = { scale_up = { policies = { { type = "Pods", value = 4, periodSeconds = 15 } } } } },
      "scaling: behavior.scale_up.policies[1].periodSeconds: unknown field" },
    { "a misspelt target field", spec { metrics = { { name = "q", type = "external", target = { type = "value", averageValue = 3 } } } },
      "scaling: metrics[1].target.averageValue: unknown field" },
    { "a cpu initialization period that is not a duration", spec { cpu_initialization_period = "long" },
      'scaling: cpu_initialization_period: duration expected (like "15s" or "5m"), got "long"' },
  }
  for _, c in ipairs(CASES) do
    it(c[1], function() assert.equal(err_of(hpa.check, c[2]), c[3]) end)
  end

  it("fills Kubernetes' defaults", function()
    local s = hpa.check { max_replicas = 4 }
    assert.equal(s.min_replicas, 1)
    assert.equal(s.tolerance, 0.1)
    assert.equal(s.downscale_stabilization, 300)
    assert.equal(s.cpu_initialization_period, 300)
    assert.equal(s.initial_readiness_delay, 30)
    assert.same(s.metrics, { { name = "cpu", type = "resource", resource = "cpu", target = { type = "utilization", value = 80 } } })
    assert.equal(s.behavior, nil, "no behavior: the controller's original limits")
    local b = hpa.check(spec { behavior = {} }).behavior
    assert.same(b.scale_up, { select_policy = "Max", stabilization_window = 0,
      policies = { { type = "Pods", value = 4, period = 15 }, { type = "Percent", value = 100, period = 15 } } })
    assert.same(b.scale_down, { select_policy = "Max", stabilization_window = 300,
      policies = { { type = "Percent", value = 100, period = 15 } } })
  end)

  it("is idempotent and survives JSON", function()
    local s = hpa.check(spec { behavior = { scale_down = { stabilization_window = "2m",
      policies = { { type = "Pods", value = 1, period = "1m" } } } } })
    assert.equal(hpa.check(s), s)
    assert.same(hpa.check(json.decode(json.encode(s))), s)
  end)
end)

describe("hpa.decide", function()
  it("raises naming the argument on misuse", function()
    assert.match(err_of(hpa.decide, spec(), nil, { current = -1 }, 0), "scaling: obs.current: integer >= 0 expected")
    assert.match(err_of(hpa.decide, spec(), nil, obs(2, 10), "now"), "scaling: now: number expected")
    assert.match(err_of(hpa.decide, spec(), "state", obs(2, 10), 0), "scaling: state: table or nil expected")
    assert.match(err_of(hpa.decide, { max_replicas = 0 }, nil, obs(2, 10), 0), "scaling: max_replicas")
  end)

  it("leaves the state it was given alone and records the scale only when the count changes", function()
    local s = spec { behavior = {} }
    local d1, st1 = hpa.decide(s, nil, obs(2, 40), 1000)
    assert.equal(d1.desired, 4)
    assert.same(st1.scale_up_events, { { change = 2, at = 1000, outdated = false } })
    assert.equal(st1.last_scale_time, 1000)
    local before = json.encode(st1)
    -- within tolerance: no change, no event, the recommendation is still remembered
    local d2, st2 = hpa.decide(s, st1, obs(4, 21), 1015)
    assert.equal(d2.desired, 4)
    assert.equal(json.encode(st1), before, "the given state is untouched")
    assert.equal(#st2.scale_up_events, 1)
    assert.equal(#st2.recommendations, #st1.recommendations + 1)
    assert.equal(st2.last_scale_time, 1000)
  end)

  it("goes on from a state that went through JSON as from the original", function()
    local s = spec { behavior = { scale_down = { stabilization_window = "60s",
      policies = { { type = "Pods", value = 1, period = "30s" } } } } }
    local _, st = hpa.decide(s, nil, obs(6, 5), 1000)
    local a = hpa.decide(s, st, obs(6, 5), 1075)
    local b = hpa.decide(s, json.decode(json.encode(st)), obs(6, 5), 1075)
    assert.same(a, b)
  end)

  it("explains the result: proposals per metric, the winner, the limit", function()
    local s = spec { max_replicas = 5, metrics = { RPS,
      { name = "queue", type = "external", target = { type = "value", value = 100 } } } }
    local o = obs(2, 50)
    o.metrics.queue = { value = 150 }
    local d = hpa.decide(s, nil, o, 0)
    assert.equal(d.proposals[1].metric, "rps")
    assert.equal(d.proposals[1].replicas, 5)
    assert.equal(d.proposals[1].value, 50)
    assert.equal(d.proposals[1].target, 20)
    assert.equal(d.proposals[1].ready, 2)
    assert.equal(d.proposals[2].metric, "queue")
    assert.equal(d.proposals[2].replicas, 3)
    assert.equal(d.recommended, 5)
    assert.equal(d.desired, 4)
    assert.equal(d.limited_by, "scale_up_policy")
    assert.equal(d.condition, "ScaleUpLimit")
    assert.equal(d.reason, "rps above target: 2 -> 4; the desired replica count is increasing faster than the "
      .. "maximum scale rate (ScaleUpLimit, recommended 5)")
  end)

  it("names the stabilization window when it holds the count", function()
    local s = spec()
    local _, st = hpa.decide(s, nil, obs(4, 20), 0)
    local d = hpa.decide(s, st, obs(4, 5), 15)
    assert.equal(d.recommended, 1)
    assert.equal(d.desired, 4)
    assert.equal(d.limited_by, "stabilization_window")
    assert.equal(d.reason, "no change: 4 replicas; stabilization window holds 4 (recommended 1)")
  end)

  it("skips a failed metric on the way up, holds on the way down", function()
    local s = spec { metrics = { RPS, { name = "queue", type = "external", target = { type = "value", value = 10 } } } }
    local up = obs(2, 40)
    up.metrics.queue = { error = "prometheus: connection refused" }
    local d = hpa.decide(s, { recommendations = {} }, up, 0)
    assert.equal(d.desired, 4)
    assert.equal(d.proposals[2].error, "prometheus: connection refused")
    local down = obs(4, 2)
    down.metrics.queue = { error = "prometheus: connection refused" }
    d = hpa.decide(s, { recommendations = {} }, down, 0)
    assert.equal(d.desired, 4)
    assert.equal(d.scaling_active, "FailedGetExternalMetric")
    assert.equal(d.error, "invalid metrics (1 invalid out of 2), first error is: queue: prometheus: connection refused")
  end)

  it("a metric the caller did not sample is a failed metric", function()
    local o = obs(3, 10)
    o.metrics = {}
    local d = hpa.decide(spec(), nil, o, 0)
    assert.equal(d.desired, 3)
    assert.equal(d.proposals[1].error, "no sample")
  end)

  it("a sample that is not a finite number fails its metric, naming the instance", function()
    local o = obs(2, 10)
    o.metrics.rps.per_instance["api/r1/2"] = 0 / 0
    local d = hpa.decide(spec(), nil, o, 0)
    assert.equal(d.desired, 2)
    assert.equal(d.proposals[1].error, "sample of instance api/r1/2 is not a finite number")
    o.metrics.rps = { average = math.huge }
    assert.equal(hpa.decide(spec(), nil, o, 0).proposals[1].error, "average is not a finite number")
  end)

  it("an AverageValue target with no replica in the status scales from the value alone, with finite fields", function()
    local s = spec { min_replicas = 0, metrics = { { name = "queue", type = "external", target = { type = "average_value", value = 10 } } } }
    local d = hpa.decide(s, nil, { current = 0, status_replicas = 0, metrics = { queue = { value = 35 } } }, 0)
    assert.equal(d.desired, 4)
    assert.same(json.decode(json.encode(d.proposals[1])), { metric = "queue", replicas = 4, target = 10 })
  end)

  it("an average stands for every running instance", function()
    local o = obs(3, 0)
    o.metrics.rps = { average = 40 }
    assert.equal(hpa.decide(spec(), nil, o, 0).desired, 6)
  end)

  it("missing samples count as 0 on the way up, as the target on the way down", function()
    -- 4 instances, 2 report 60 each: up, the missing two at 0 -> 30 avg -> ceil(1.5 * 4) = 6
    local d = hpa.decide(spec(), nil, obs(4, { 60, 60 }, 4), 0)
    assert.equal(d.proposals[1].missing, 2)
    assert.equal(d.desired, 6)
    -- 4 instances, 2 report 2 each: down, the missing two at the target -> (2+2+20+20)/4 = 11 -> ceil(0.55 * 4) = 3
    d = hpa.decide(spec(), { recommendations = {} }, obs(4, { 2, 2 }, 4), 0)
    assert.equal(d.desired, 3)
  end)

  it("per-direction tolerances (behavior.scale_up.tolerance, Kubernetes 1.33)", function()
    local o = obs(10, 21) -- 5 % above target
    assert.equal(hpa.decide(spec { max_replicas = 20 }, nil, o, 0).desired, 10)
    local s = spec { max_replicas = 20, behavior = { scale_up = { tolerance = 0.02 } } }
    assert.equal(hpa.decide(s, nil, o, 0).desired, 11)
  end)

  it("current 0 and min_replicas >= 1: scaling disabled, left to KEDA", function()
    local d = hpa.decide(spec(), nil, { current = 0 }, 0)
    assert.equal(d.desired, 0)
    assert.equal(d.scaling_active, "ScalingDisabled")
  end)
end)

describe("hpa.instance", function()
  local function inst(state, ready)
    return { id = "api/r1/1", service = "api", revision = "r1", index = 1, state = state, ready = ready,
      started_at = 100, ready_at = 130 }
  end
  it("maps the supervisor's states to pod phases", function()
    local CASES = {
      { "starting", false, "pending", false }, { "running", false, "running", false }, { "running", true, "running", true },
      { "restarting", false, "running", false }, { "stopping", true, "deleted", false },
      { "exited", false, "failed", false }, { "failed", false, "failed", false },
    }
    for _, c in ipairs(CASES) do
      local o = hpa.instance(inst(c[1], c[2]), { cpu = 0.5 })
      assert.same(o, { id = "api/r1/1", phase = c[3], ready = c[4], started_at = 100, ready_at = 130, request = { cpu = 0.5 } },
        c[1])
    end
  end)
  it("raises naming the argument", function()
    assert.equal(err_of(hpa.instance, "api/r1/1"), "scaling: instance: table expected, got string")
    assert.equal(err_of(hpa.instance, inst("zombie")), "scaling: instance.state: unknown state zombie")
    assert.equal(err_of(hpa.instance, inst("running"), 0.5), "scaling: request: table or nil expected")
  end)
end)

describe("docs/scaling/hpa.md", function()
  it("the example runs and returns what the page says", function()
    local f = assert(io.open("docs/scaling/hpa.md"))
    local text = f:read("*a")
    f:close()
    local code
    for block in text:gmatch("```lua\n(.-)```") do
      if block:find("local function tick", 1, true) then code = block end
    end
    assert.truthy(code, "the example block is on the page")
    local log = assert(loadstring(code, "=hpa.md"))()
    assert.same(log, { "0s 2->6 scale_up_policy", "15s 6->9 -", "30s 9->9 stabilization_window",
      "300s 9->9 stabilization_window", "315s 9->2 -" })
    assert.truthy(text:find('"0s 2->6 scale_up_policy", "15s 6->9 -", "30s 9->9 stabilization_window",\n"300s 9->9 '
      .. 'stabilization_window", "315s 9->2 -"', 1, true), "the page says what it returns")
  end)
end)
