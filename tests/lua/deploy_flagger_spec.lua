-- steward.deploy.flagger: Flagger's canary schedule as table-driven specs on the fake clock.
-- Each case names the Go test it ports from github:fluxcd/flagger pkg/controller
-- (scheduler_svc_test.go, scheduler_deployment_test.go; fixtures from
-- scheduler_deployment_fixture_test.go: threshold 10, step_weight 10, max_weight 50). Flagger's
-- advanceCanary calls are next() calls; its first "detect changes" call is flagger.new().
-- Run by `steward test`; under prove it hands itself to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local flagger = require "steward.deploy.flagger"
local json = require "steward.json"

local function fixture(extra)
  local o = { threshold = 10, step_weight = 10, max_weight = 50, interval = "1m" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Drives a schedule tick by tick on the fake clock (each tick after the action's next_in), and
-- through a JSON round trip, as the rollout stores it between ticks.
local function drive(s, ticks, checks)
  local out = {}
  for i = 1, ticks do
    s = json.decode(json.encode(s))
    local a = flagger.next(s, checks == nil and true or checks[i])
    out[#out + 1] = { a = a, phase = s.phase, primary = s.primary_weight, canary = s.canary_weight }
    if a.next_in then clock.advance(a.next_in) end
  end
  return out, s
end

describe("canary weights (scheduler_svc_test.go)", function()
  -- { Go test, settings, expected primary weights after each tick until max weight }
  local cases = {
    { "TestScheduler_ServicePromotion", { threshold = 10, step_weight = 20, max_weight = 50 }, { 80, 60, 40 } },
    { "TestScheduler_ServicePromotionMaxWeight", { threshold = 10, step_weight = 50, max_weight = 100 }, { 50, 0 } },
    { "TestScheduler_ServicePromotionWithWeightsHappyCase", { threshold = 10, step_weights = { 1, 2, 10, 80 } }, { 99, 98, 90, 20 } },
    { "TestScheduler_ServicePromotionWithWeightsOverflow", { threshold = 10, step_weights = { 1, 2, 10, 200 } }, { 99, 98, 90, 0 } },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. ": primary " .. table.concat(c[3], ", ") .. ", then promote, finalise, succeed", function()
      local s = flagger.new(c[2])
      local n = #c[3]
      local start = clock.now()
      local ticks
      ticks, s = drive(s, n + 3)
      for i, want in ipairs(c[3]) do
        assert.same({ ticks[i].a.action, ticks[i].primary, ticks[i].canary, ticks[i].phase },
          { "set_weight", want, 100 - want, "Progressing" }, "tick " .. i)
      end
      assert.same({ ticks[n + 1].a.action, ticks[n + 1].phase }, { "promote", "Promoting" })
      assert.same({ ticks[n + 2].a.action, ticks[n + 2].primary, ticks[n + 2].canary, ticks[n + 2].phase },
        { "set_weight", 100, 0, "Finalising" }, "promotion routes everything to the primary at once")
      assert.same({ ticks[n + 3].a.action, ticks[n + 3].phase }, { "finalise", "Succeeded" })
      assert.same(flagger.next(s, true), { action = "done", phase = "Succeeded" })
      assert.equal(clock.now() - start, (n + 2) * 60, "one interval between ticks")
    end)
  end
end)

describe("phases (scheduler_deployment_test.go)", function()
  it("TestScheduler_DeploymentAnalysisPhases: step_weight 100, step_weight_promotion 50", function()
    local ticks = drive(flagger.new { interval = "1m", step_weight = 100, step_weight_promotion = 50 }, 5)
    local got = {}
    for i, t in ipairs(ticks) do got[i] = { t.phase, t.canary } end
    assert.same(got, { { "Progressing", 100 }, { "Promoting", 100 }, { "Promoting", 50 }, { "Finalising", 0 }, { "Succeeded", 0 } })
  end)
  it("TestScheduler_DeploymentBlueGreenAnalysisPhases: iterations 1", function()
    local ticks = drive(flagger.new { interval = "1m", iterations = 1 }, 5)
    local got = {}
    for i, t in ipairs(ticks) do got[i] = { t.phase, t.a.action, t.primary } end
    assert.same(got, {
      { "Progressing", "wait", 100 },       -- iteration 1 of the analysis, traffic on the primary
      { "Progressing", "set_weight", 0 },   -- iterations done: all traffic to the canary
      { "Promoting", "promote", 0 },
      { "Finalising", "set_weight", 100 },
      { "Succeeded", "finalise", 100 },
    })
  end)
  it("TestScheduler_DeploymentABTesting: iterations with a match route the matched traffic to the canary", function()
    local match = { { headers = { ["x-canary"] = { exact = "insider" } } } }
    local s = flagger.new(fixture { step_weight = 0, max_weight = 0, iterations = 10, match = match })
    assert.equal(flagger.strategy(s), "ab")
    local a = flagger.next(s, true)
    assert.same({ a.action, a.primary, a.canary, a.iteration, a.match }, { "set_weight", 0, 100, 1, match })
    s.iteration = 10 -- the test sets the status' iterations to the maximum
    assert.same(flagger.next(s, true).action, "promote")
    flagger.next(s, true)
    assert.equal(s.phase, "Finalising")
    assert.equal(flagger.next(s, true).action, "finalise")
    assert.equal(s.phase, "Succeeded")
  end)
  it("TestScheduler_DeploymentPromotion: from weights 60/40, progressing, promoting, finalising, succeeded", function()
    local s = flagger.new(fixture())
    s.primary_weight, s.canary_weight = 60, 40 -- the test sets the routes by hand
    local got = {}
    for i = 1, 4 do
      local a = flagger.next(s, true)
      got[i] = { a.action, s.phase, s.primary_weight, s.canary_weight }
    end
    assert.same(got, {
      { "set_weight", "Progressing", 50, 50 },
      { "promote", "Promoting", 50, 50 },
      { "set_weight", "Finalising", 100, 0 },
      { "finalise", "Succeeded", 100, 0 },
    })
  end)
  it("TestScheduler_DeploymentRollback: failed checks at the threshold roll back", function()
    local s = flagger.new(fixture())
    s.failed_checks = 10
    local a = flagger.next(s, false)
    assert.same({ a.action, a.primary, a.canary, s.phase }, { "rollback", 100, 0, "Failed" })
    assert.match(a.reason, "failed checks threshold reached 10")
    assert.same(flagger.next(s, true), { action = "done", phase = "Failed" })
  end)
  it("TestScheduler_DeploymentNewRevisionReset: a new revision sends traffic back to the primary", function()
    local s = flagger.new(fixture())
    local a = flagger.next(s, true)
    assert.same({ a.primary, a.canary }, { 90, 10 })
    a = flagger.restart(s)
    assert.same({ a.action, a.primary, a.canary, s.phase, s.failed_checks }, { "set_weight", 100, 0, "Progressing", 0 })
  end)
end)

describe("failed checks and the threshold", function()
  -- { checks per tick, threshold, expected actions }
  local cases = {
    { "threshold 2: two failures, then rollback on the next tick", { true, false, false, true }, 2,
      { "set_weight", "wait", "wait", "rollback" } },
    { "a failure halts advancement but does not reset", { true, false, true, true }, 2,
      { "set_weight", "wait", "set_weight", "set_weight" } },
    { "threshold 0 is Flagger's default of 1", { false, true }, 0, { "wait", "rollback" } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local ticks = drive(flagger.new(fixture { threshold = c[3] }), #c[2], c[2])
      local got = {}
      for i, t in ipairs(ticks) do got[i] = t.a.action end
      assert.same(got, c[4])
    end)
  end
  it("the weights after a halted tick go on from where they were", function()
    local ticks = drive(flagger.new(fixture()), 4, { true, false, true, true })
    local got = {}
    for i, t in ipairs(ticks) do got[i] = t.canary end
    assert.same(got, { 10, 10, 20, 30 })
  end)
  it("abort rolls back at once, whatever the checks", function()
    local s = flagger.new(fixture())
    flagger.next(s, true)
    local a = flagger.abort(s, "stopped by alice")
    assert.same({ a.action, a.primary, a.canary, a.reason, s.phase }, { "rollback", 100, 0, "stopped by alice", "Failed" })
  end)
end)

describe("settings", function()
  it("next_step_weight and max_weight (nextStepWeight, maxWeight)", function()
    local s = flagger.new { step_weights = { 5, 10, 30 } }
    assert.same({ flagger.next_step_weight(s, 0), flagger.next_step_weight(s, 5), flagger.next_step_weight(s, 10),
      flagger.next_step_weight(s, 30), flagger.next_step_weight(s, 100), flagger.max_weight(s) }, { 5, 5, 20, 70, 1, 30 })
    s = flagger.new { step_weight = 25 }
    assert.same({ flagger.next_step_weight(s, 50), flagger.max_weight(s) }, { 25, 100 })
    s = flagger.new { step_weight = 7, step_weights = { 1, 2 } }
    assert.equal(flagger.next_step_weight(s, 1), 7, "step_weight wins over step_weights")
  end)
  it("defaults: interval 1m, threshold 1", function()
    local s = flagger.new { step_weight = 10 }
    assert.same({ s.interval, s.threshold, s.phase, s.primary_weight, s.canary_weight }, { 60, 1, "Progressing", 100, 0 })
  end)
  it("bad settings name the field", function()
    assert.error(function() flagger.new { step_weight = 120 } end, "flagger: step_weight: integer between 0 and 100")
    assert.error(function() flagger.new { step_weights = { 10, 5 } } end, "step_weights%[2%]: weights must increase")
    assert.error(function() flagger.new { step_weight = 10, interval = "soon" } end, "interval: positive duration")
    assert.error(function() flagger.new { max_weight = 50 } end, "a canary needs step_weight or step_weights")
    assert.error(function() flagger.new { step_weight = 10, treshold = 3 } end, "flagger: treshold: unknown field")
    assert.error(function() flagger.next({}, true) end, "schedule: a schedule table")
  end)
end)
