-- steward.scaling.predict: the proof that predictive scaling starts instances before a daily
-- ramp while a reactive HPA on the same data rises only after it, on a fake clock walking minute
-- by minute through the fourth morning of a seeded series; and the proposal's fields, errors and
-- misuse.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local predict = require "steward.scaling.predict"
local hpa = require "steward.scaling.hpa"

local DAY = 86400
local T0 = 1796601600 -- 2026-12-07T00:00:00Z
local RAMP = 9 * 3600 -- the ramp starts at 09:00 UTC every day

-- 60 requests/s at night (one instance), a ramp from 09:00 to 09:30 up to 1000, down again 17:00-17:30.
local function shape(t)
  local s = t % DAY
  if s < RAMP then return 60 end
  if s < RAMP + 1800 then return 60 + 940 * (s - RAMP) / 1800 end
  if s < 17 * 3600 then return 1000 end
  if s < 17 * 3600 + 1800 then return 1000 - 940 * (s - 17 * 3600) / 1800 end
  return 60
end

-- keep: the share of samples kept; hole: {from, to} with no samples at all.
local function series(seed, to, keep, hole)
  local s = seed
  local function uniform()
    s = (s * 1103515245 + 12345) % 2147483648
    return (s + 0.5) / 2147483648
  end
  local out = {}
  for t = T0, to, 60 do
    local noise = math.sqrt(-2 * math.log(uniform())) * math.cos(2 * math.pi * uniform()) * 5
    local kept = uniform() < (keep or 1) and not (hole and t >= hole[1] and t < hole[2])
    if kept then out[#out + 1] = { t, shape(t) + noise } end
  end
  return out
end

local function upto(s, now)
  local out = {}
  for i = 1, #s do
    if s[i][1] > now then break end
    out[i] = s[i]
  end
  return out
end

local function ramp_cases(title, seed, keep, hole)
describe(title, function()
  local day4 = T0 + 3 * DAY
  local all = series(seed, day4 + RAMP + 3600, keep, hole)
  local spec = { metric = "rps", target = 100, lead = "5m", season = "1d", step = "1m" }
  local reactive = { min_replicas = 1, max_replicas = 20,
                     metrics = { { name = "rps", type = "external", target = { type = "average_value", value = 100 } } } }

  -- The first minute of the fourth morning at which each side proposes more than one instance.
  local first_predictive, first_reactive
  for now = day4 + RAMP - 1800, day4 + RAMP + 1800, 60 do
    local past = upto(all, now)
    local p = assert(predict.proposal(spec, past, now))
    if not first_predictive and p.replicas > 1 then first_predictive = now end
    local d = hpa.decide(reactive, nil, { current = 1, metrics = { rps = { value = past[#past][2] } } }, now)
    if not first_reactive and d.desired > 1 then first_reactive = now end
  end

  it("the predictive proposal rises at ramp start - lead, before the ramp", function()
    assert.truthy(first_predictive, "never rose")
    local lead = first_predictive - (day4 + RAMP)
    assert.truthy(lead <= 0 and lead >= -300, string.format("rose %ds from ramp start", lead))
  end)

  it("a reactive HPA on the same data rises only after the ramp started", function()
    assert.truthy(first_reactive > day4 + RAMP)
    assert.truthy(first_reactive - first_predictive >= 300,
                  string.format("predictive ahead by %ds only", first_reactive - first_predictive))
  end)

  it("at the plateau it proposes what the load needs", function()
    local now = day4 + RAMP + 1800
    local p = assert(predict.proposal(spec, upto(all, now), now))
    assert.truthy(p.replicas >= 10 and p.replicas <= 11, "replicas " .. p.replicas)
  end)

  it("reports the forecast, its interval, when, and its own lead-ahead error", function()
    local now = day4 + RAMP - 600
    local p = assert(predict.proposal(spec, all, now)) -- samples after now are ignored
    assert.same({ p.metric, p.at, p.target, p.model, p.error.lead }, { "rps", now + 300, 100, "holt_winters", 300 })
    assert.truthy(p.low <= p.forecast and p.forecast <= p.high)
    assert.truthy(p.error.n > 1000 and p.error.rmse > 0 and p.error.mape > 0)
    assert.equal(p.replicas, math.ceil(p.forecast / 100 - 1e-9))
  end)
end)

describe("proposal", function()
  it("nil and the reason with less than two days of history", function()
    local s = series(2, T0 + 1.5 * DAY)
    local p, err = predict.proposal({ metric = "rps", target = 100 }, s, T0 + 1.5 * DAY)
    assert.equal(p, nil)
    assert.match(err, "^too little history")
  end)
  it("keeps fitted parameters until refit", function()
    local spec = { metric = "rps", target = 100, step = "10m", refit = "1h" }
    local s = series(3, T0 + 3 * DAY)
    local a = assert(predict.proposal(spec, s, T0 + 2.5 * DAY))
    local b = assert(predict.proposal(spec, s, T0 + 2.5 * DAY + 1800))
    assert.same(b.params, a.params)
  end)
  it("fixed smoothing parameters are used as given", function()
    local p = assert(predict.proposal({ metric = "rps", target = 100, step = "10m", alpha = 0.2, beta = 0, gamma = 0.3 },
                                      series(4, T0 + 3 * DAY), T0 + 3 * DAY))
    assert.same(p.params, { alpha = 0.2, beta = 0, gamma = 0.3 })
  end)
end)
end

ramp_cases("a daily ramp, seed 1", 1)
ramp_cases("a daily ramp with gaps (a quarter of the samples lost, the second morning's ramp missing), seed 2", 2, 0.75,
           { T0 + DAY + RAMP - 3600, T0 + DAY + RAMP + 7200 })

describe("into the autoscaler's decision", function()
  local keda = require "steward.scaling.keda"
  local spec = { metric = "rps", target = 100, lead = "5m" }
  local autoscaler = {
    min_replicas = 0, max_replicas = 20, cooldown = "60s",
    metrics = { { name = "rps", type = "external", activation = 1, target = { type = "average_value", value = 100 } },
                predict.metric(spec) },
  }
  it("metric() is an external average_value metric with the target and the activation (default: the target)", function()
    assert.same(predict.metric(spec), { name = "predicted:rps", type = "external", activation = 100,
                                        target = { type = "average_value", value = 100 } })
  end)
  it("the forecast's replicas win over a reactive proposal that is lower", function()
    local obs = { current = 2, metrics = { rps = { value = 150 },
                                           ["predicted:rps"] = predict.observation({ forecast = 640 }) } }
    local d = keda.decide(autoscaler, nil, obs, 0)
    assert.same({ d.desired, d.proposals[1].replicas, d.proposals[2].replicas }, { 4, 2, 7 })
    assert.equal(d.limited_by, "scale_up_policy")
  end)
  it("a forecast above its activation wakes a service at zero before the load arrives", function()
    local obs = { current = 0, metrics = { rps = { value = 0 }, ["predicted:rps"] = predict.observation({ forecast = 180 }) } }
    local d = keda.decide(autoscaler, nil, obs, 0)
    assert.same({ d.phase, d.desired, d.active_triggers }, { "activate", 1, { "predicted:rps" } })
  end)
  it("no forecast yet is neutral: it neither fails the decision nor keeps the service from zero", function()
    local p, err = predict.proposal(spec, {}, 0)
    local o = predict.observation(p, err)
    assert.same(o, { value = 0, unavailable = "too little history: no samples" })
    local d = keda.decide(autoscaler, { created = 0, last_active = 0 },
                          { current = 1, metrics = { rps = { value = 0 }, ["predicted:rps"] = o } }, 100)
    assert.same({ d.phase, d.desired, d.trigger_error }, { "deactivate", 0, false })
  end)
end)

describe("check", function()
  it("fills the defaults", function()
    local c = predict.check { metric = "rps", target = 50 }
    assert.same({ c.lead, c.season, c.step, c.refit }, { 300, 86400, 60, 3600 })
  end)
  local bad = {
    { { target = 1 }, "scaling: predictive%.metric: the name of a metric expected" },
    { { metric = "rps", target = 0 }, "scaling: predictive%.target: a positive number expected" },
    { { metric = "rps", target = 1, lead = "soon" }, "scaling: predictive%.lead: duration" },
    { { metric = "rps", target = 1, step = "7m" }, "scaling: predictive%.step: must divide the season" },
    { { metric = "rps", target = 1, alpha = 3 }, "scaling: predictive%.alpha: a number from 0 to 1" },
    { { metric = "rps", target = 1, horizon = "1h" }, "scaling: predictive%.horizon: unknown field" },
    { { metric = "rps", target = 1, activation = "x" }, "scaling: predictive%.activation: number expected" },
  }
  for _, b in ipairs(bad) do
    it("refuses " .. b[2], function() assert.error(function() predict.check(b[1]) end, b[2]) end)
  end
end)

describe("docs/scaling/predictive.md", function()
  it("its examples run as written and print what their --> comments say", function()
    assert(loadfile("tests/support/doc_examples.lua"))()("docs/scaling/predictive.md", assert)
  end)
end)
