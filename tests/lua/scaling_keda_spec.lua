-- steward.scaling.keda: KEDA's scale executor as table-driven specs on the fake clock. The cases
-- named Test* port github:kedacore/keda pkg/scaling/executor/scale_scaledobjects_test.go (their
-- mocks of the Scale client become obs.current and the decision's desired),
-- triggers_activity_test.go (which triggers are active) and pkg/scaling/scale_handler_test.go's
-- activity cases (isActive, isError and the active triggers of getScaledObjectState). Not ported, by design: the paused,
-- paused-scale-in/out and force-activation annotations (steward has no annotations: a policy is
-- disabled or edited instead), fallback replicas, and Kubernetes' conditions and events (the
-- decision's phase and reason carry them). The rest pins our reading of the executor: the
-- activation threshold is strict (value > activation), cooldown counts from the last active
-- decision, failing sources never scale to zero, and 1 <-> N is steward.scaling.hpa's.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local keda = require "steward.scaling.keda"

-- A ScaledObject with one external trigger "q" (a queue length, 10 per instance).
local function so(t)
  local s = { metrics = { { name = "q", type = "external", target = { type = "average_value", value = 10 },
                            activation = t.activation } } }
  for k, v in pairs(t) do if k ~= "activation" then s[k] = v end end
  return s
end

local function obs(current, values)
  local m = {}
  for k, v in pairs(values or {}) do m[k] = type(v) == "table" and v or { value = v } end
  return { current = current, metrics = m }
end

describe("KEDA's executor (scale_scaledobjects_test.go)", function()
  -- active = a trigger above its threshold; value 5 with activation 0 is active, 0 is not.
  local cases = {
    { "TestScaleToMinReplicasWhenNotActive", { min_replicas = 0 }, 10, false, 0, "deactivate" },
    { "TestScaleToMinReplicasFromLowerInitialReplicaCount", { min_replicas = 5 }, 1, false, 5, "min_replicas" },
    { "TestScaleFromMinReplicasWhenActive", { min_replicas = 0 }, 0, true, 1, "activate" },
    { "TestScaleToIdleReplicasWhenNotActive", { idle_replicas = 0, min_replicas = 5 }, 10, false, 0, "deactivate" },
    { "TestScaleFromIdleToMinReplicasWhenActive", { idle_replicas = 0, min_replicas = 5 }, 0, true, 5, "activate" },
    { "TestEventWitTriggerInfo", { idle_replicas = 0, min_replicas = 5 }, 2, true, 5, "activate" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local d, st = keda.decide(so(c[2]), nil, obs(c[3], { q = c[4] and 5 or 0 }), 1000)
      assert.equal(d.desired, c[5])
      assert.equal(d.phase, c[6])
      assert.equal(d.active, c[4])
      if c[4] then assert.equal(st.last_active, 1000) else assert.equal(st.last_active, nil) end
    end)
  end

  it("TestEventWitTriggerInfo: the reason names the trigger and the counts", function()
    local d = keda.decide(so { idle_replicas = 0, min_replicas = 5 }, nil, obs(2, { q = 5 }), 0)
    assert.equal(d.reason, "activated: q above the activation threshold: 2 -> 5")
  end)
end)

describe("triggers' activity (triggers_activity_test.go)", function()
  local spec = { min_replicas = 0, metrics = {} }
  for i, n in ipairs { "trigger-a", "trigger-b", "trigger-c" } do
    spec.metrics[i] = { name = n, type = "external", target = { type = "value", value = 10 } }
  end
  local function active(values)
    local d = keda.decide(spec, nil, obs(1, values), 0)
    local out = {}
    for _, t in ipairs(d.triggers) do out[t.metric] = t.active end
    return out, d.active
  end
  it("All triggers inactive", function()
    assert.same({ active { ["trigger-a"] = 0, ["trigger-b"] = 0, ["trigger-c"] = 0 } },
                { { ["trigger-a"] = false, ["trigger-b"] = false, ["trigger-c"] = false }, false })
  end)
  it("One trigger active", function()
    assert.same({ active { ["trigger-a"] = 3, ["trigger-b"] = 0, ["trigger-c"] = 0 } },
                { { ["trigger-a"] = true, ["trigger-b"] = false, ["trigger-c"] = false }, true })
  end)
  it("Multiple triggers active", function()
    assert.same({ active { ["trigger-a"] = 3, ["trigger-b"] = 0, ["trigger-c"] = 1 } },
                { { ["trigger-a"] = true, ["trigger-b"] = false, ["trigger-c"] = true }, true })
  end)
  it("All triggers active", function()
    assert.same({ active { ["trigger-a"] = 3, ["trigger-b"] = 2, ["trigger-c"] = 1 } },
                { { ["trigger-a"] = true, ["trigger-b"] = true, ["trigger-c"] = true }, true })
  end)
end)

describe("the scale handler's state (scale_handler_test.go)", function()
  local spec = { min_replicas = 0, metrics = {
    { name = "metric-name", type = "external", target = { type = "value", value = 10 } },
    { name = "other-metric", type = "external", target = { type = "value", value = 10 } } } }
  it("TestCheckScaledObjectScalersWithError", function()
    local one = { min_replicas = 0, metrics = { spec.metrics[1] } }
    local d = keda.decide(one, nil, { current = 0, metrics = { ["metric-name"] = { error = "some error" } } }, 0)
    assert.same({ d.active, d.trigger_error, d.active_triggers }, { false, true, {} })
  end)
  it("TestCheckScaledObjectFindFirstActiveNotIgnoreOthers", function()
    local d = keda.decide(spec, nil, { current = 0, metrics = { ["metric-name"] = { value = 10 },
                                                                ["other-metric"] = { error = "some error" } } }, 0)
    assert.same({ d.active, d.trigger_error, d.active_triggers }, { true, true, { "metric-name" } })
  end)
  it("active with a failing trigger: HPA decides, the last active time stays (PartialTriggerError)", function()
    local d, st = keda.decide(spec, { created = 0, last_active = 50 },
                              { current = 2, metrics = { ["metric-name"] = { value = 30 }, ["other-metric"] = { error = "x" } } }, 100)
    assert.same({ d.phase, d.last_active, st.last_active }, { "hpa", 50, 50 })
    d, st = keda.decide(spec, st, { current = 2, metrics = { ["metric-name"] = { value = 30 }, ["other-metric"] = { value = 0 } } }, 110)
    assert.same({ d.phase, st.last_active }, { "hpa", 110 })
  end)
end)

describe("activation threshold", function()
  local cases = {
    -- name, activation, observation, active
    { "value above the threshold is active", 5, { value = 6 }, true },
    { "value equal to the threshold is not active (strict, as KEDA's scalers)", 5, { value = 5 }, false },
    { "average is compared as reported", 5, { average = 5.5 }, true },
    { "per-instance values are summed (the total a scaler reports)", 5, { per_instance = { a = 3, b = 3 } }, true },
    { "per-instance total below the threshold", 5, { per_instance = { a = 2, b = 2 } }, false },
    { "negative threshold: zero is active", -1, { value = 0 }, true },
    { "a failing source is not active", 0, { error = "connection refused" }, false },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local d = keda.decide(so { activation = c[2] }, nil, { current = 0, metrics = { q = c[3] } }, 0)
      assert.equal(d.active, c[4])
      assert.equal(d.desired, c[4] and 1 or 0)
    end)
  end
  it("0 <-> 1 by activation, 1 <-> N by HPA: a value above activation but under one instance's target keeps 1", function()
    local s = so { activation = 2 }
    local d, st = keda.decide(s, nil, obs(0, { q = 3 }), 0)
    assert.equal(d.desired, 1)
    d = keda.decide(s, st, obs(1, { q = 3 }), 15)
    assert.same({ d.phase, d.desired }, { "hpa", 1 })
    d = keda.decide(s, st, obs(1, { q = 45 }), 30)
    assert.same({ d.phase, d.desired, d.proposals[1].replicas }, { "hpa", 4, 5 })
    assert.equal(d.limited_by, "scale_up_policy")
  end)
end)

describe("cooldown on the fake clock", function()
  it("scales to zero only after cooldown since the last active time (strictly after, as Time.Before)", function()
    local s = so { cooldown = "300s" }
    local d, st = keda.decide(s, nil, obs(0, { q = 5 }), 0)
    assert.equal(d.desired, 1)
    d, st = keda.decide(s, st, obs(1, { q = 5 }), 100)     -- still active: last_active moves
    assert.equal(st.last_active, 100)
    d, st = keda.decide(s, st, obs(1, { q = 0 }), 200)
    assert.same({ d.phase, d.desired, d.limited_by }, { "cooldown", 1, "cooldown" })
    d, st = keda.decide(s, st, obs(1, { q = 0 }), 400)     -- exactly 300 s: not yet
    assert.same({ d.phase, d.desired }, { "cooldown", 1 })
    d, st = keda.decide(s, st, obs(1, { q = 0 }), 400.25)
    assert.same({ d.phase, d.desired }, { "deactivate", 0 })
    d = keda.decide(s, st, obs(0, { q = 0 }), 401)
    assert.same({ d.phase, d.desired }, { "idle", 0 })
  end)

  it("a trigger active again during cooldown cancels it", function()
    local s = so { cooldown = "60s" }
    local _, st = keda.decide(s, nil, obs(1, { q = 5 }), 0)
    _, st = keda.decide(s, st, obs(1, { q = 0 }), 50)
    _, st = keda.decide(s, st, obs(1, { q = 1 }), 55)
    local d = keda.decide(s, st, obs(1, { q = 0 }), 70)
    assert.same({ d.phase, d.desired, d.last_active }, { "cooldown", 1, 55 })
  end)

  it("during cooldown HPA (minimum 1) may still scale N down to 1; zero waits for the cooldown", function()
    local s = so { cooldown = "600s", behavior = { scale_down = { stabilization_window = "0s" } } }
    local _, st = keda.decide(s, nil, obs(4, { q = 40 }), 0)
    local d
    d, st = keda.decide(s, st, obs(4, { q = 0 }), 60)
    assert.same({ d.phase, d.desired }, { "cooldown", 1 })
    d, st = keda.decide(s, st, obs(1, { q = 0 }), 120)
    assert.same({ d.phase, d.desired }, { "cooldown", 1 })
    d = keda.decide(s, st, obs(1, { q = 0 }), 601)
    assert.same({ d.phase, d.desired }, { "deactivate", 0 })
  end)

  it("never active: initial_cooldown counts from the first decision", function()
    local s = so { initial_cooldown = "120s" }
    local d, st = keda.decide(s, nil, obs(3, { q = 0 }), 1000)
    assert.equal(d.phase, "cooldown")
    d, st = keda.decide(s, st, obs(3, { q = 0 }), 1121)
    assert.same({ d.phase, d.desired }, { "deactivate", 0 })
  end)

  it("idle_replicas: deactivation goes to idle, activation back to min", function()
    local s = so { idle_replicas = 1, min_replicas = 3, cooldown = "10s" }
    local d, st = keda.decide(s, nil, obs(3, { q = 1 }), 0)
    assert.equal(d.phase, "hpa")
    d, st = keda.decide(s, st, obs(3, { q = 0 }), 11)
    assert.same({ d.phase, d.desired }, { "deactivate", 1 })
    d = keda.decide(s, st, obs(1, { q = 2 }), 20)
    assert.same({ d.phase, d.desired }, { "activate", 3 })
  end)
end)

describe("failing sources", function()
  it("a failing trigger never scales to zero (KEDA without a fallback)", function()
    local s = so { cooldown = "0s" }
    local d = keda.decide(s, { created = 0, last_active = 0 }, { current = 2, metrics = { q = { error = "timeout" } } }, 1000)
    assert.truthy(d.desired > 0)
    assert.equal(d.triggers[1].error, "timeout")
  end)
  it("a missing observation is an error too", function()
    local d = keda.decide(so {}, nil, { current = 0, metrics = {} }, 0)
    assert.same({ d.desired, d.triggers[1].error }, { 0, "no observation" })
  end)
  it("one trigger active, another failing: active wins", function()
    local s = so {}
    s.metrics[2] = { name = "rps", type = "external", target = { type = "value", value = 100 } }
    local d = keda.decide(s, nil, { current = 0, metrics = { q = { value = 3 }, rps = { error = "down" } } }, 0)
    assert.same({ d.active, d.desired }, { true, 1 })
  end)
end)

describe("check", function()
  it("fills KEDA's defaults and derives the HPA spec with min 1", function()
    local c = keda.check(so {})
    assert.same({ c.min_replicas, c.max_replicas, c.cooldown, c.initial_cooldown, c.hpa.min_replicas, c.hpa.max_replicas },
                { 0, 100, 300, 0, 1, 100 })
    assert.equal(c.triggers[1].activation, 0)
  end)
  local bad = {
    { { min_replicas = -1 }, "scaling: min_replicas: a whole number >= 0 expected" },
    { { idle_replicas = 2, min_replicas = 2 }, "scaling: idle_replicas: must be below min_replicas %(2%), got 2" },
    { { cooldown = "soon" }, "scaling: cooldown: duration" },
    { { activation = "x" }, "scaling: metrics%[1%]%.activation: number expected" },
    { { min_replicas = 5, max_replicas = 3 }, "scaling: min_replicas: 5 is above max_replicas 3" },
  }
  for _, b in ipairs(bad) do
    it("refuses " .. b[2], function()
      assert.error(function() keda.check(so(b[1])) end, b[2])
    end)
  end
  it("refuses a spec without metrics", function()
    assert.error(function() keda.check { min_replicas = 0 } end, "scaling: metrics: a non%-empty list")
  end)
  it("HPA's own checks still apply to the derived spec", function()
    assert.error(function() keda.check(so { behavior = { scale_up = { select_policy = "Sometimes" } } }) end,
                 "scaling: behavior%.scale_up%.select_policy")
  end)
end)

describe("docs/scaling/keda.md", function()
  it("its examples run as written and print what their --> comments say", function()
    assert(loadfile("tests/support/doc_examples.lua"))()("docs/scaling/keda.md", assert)
  end)
end)
