-- steward.scaling.autoscaler{} and one tick's decision (steward.scaling.autoscaler) on a fake
-- clock, with the real decision modules (keda around hpa): the spec's errors name the field;
-- unready and failed instances are not ready capacity; min_replicas brings a service up from 0;
-- the schedule's window and the quota's headroom narrow the bounds and are named as the limit;
-- the forecast is one more proposal (predicted:<metric>); the scale-down stabilization window holds the count (no flapping)
-- until it has passed, then lets it go.
local t = require "steward.tap"
local scaling = require "steward.scaling"
local A = require "steward.scaling.autoscaler"

local rps = scaling.source.haproxy{ metric = "rps" }
local function spec(over)
  local o = { service = "api", revision = "v1", min_replicas = 1, max_replicas = 10,
    metrics = { { name = "rps", source = rps, target = 100 } },
    behavior = { scale_down = { stabilization_window = "5s" } } }
  for k, v in pairs(over or {}) do o[k] = v end
  return o
end

-- the policy table
local p = scaling.autoscaler(spec{ name = "autoscale.api" })
t.is(p.name, "autoscale.api", "autoscaler{} returns a policy table with its name")
t.is_deeply(p.capabilities, { deploy = { "api" } }, "it needs the deploy capability for its service")
t.is(p.autoscaler.interval, 0.25, "interval defaults to 250ms")
t.is(p.autoscaler.metrics[1].target.type, "average_value", "a number target of a per-instance source is an average value")
t.is(type(p.decide), "function", "decide answers its status")

-- errors name the field
local function refuses(over, pattern, name)
  t.raises(function() scaling.autoscaler(spec(over)) end, pattern, name)
end
refuses({ service = "a b" }, "scaling.autoscaler: service: a service name", "a bad service name")
refuses({ max_replicas = false }, "scaling.autoscaler: max_replicas: an integer >= 1 expected", "max_replicas not a number")
refuses({ min_replicas = 5, max_replicas = 3 }, "scaling.autoscaler: min_replicas: 5 is above max_replicas %(3%)", "min above max")
refuses({ interval = "10ms" }, "scaling.autoscaler: interval: at least 50ms", "an interval too short")
refuses({ interval = "soon" }, "scaling.autoscaler: interval: duration expected", "an interval that is no duration")
refuses({ metrics = {} }, "scaling.autoscaler: metrics: a list of at least one metric", "no metrics")
refuses({ metrics = { { name = "rps", source = {}, target = 1 } } }, "scaling.autoscaler: metrics%[1%]%.source: scaling%.source", "a source that is not one")
refuses({ metrics = { { name = "rps", source = rps, target = 0 } } }, "scaling.autoscaler: metrics%[1%]%.target%.value: a number > 0", "a zero target")
refuses({ metrics = { { name = "rps", source = rps, target = 1, type = "external" } } },
  "scaling.autoscaler: metrics%[1%]%.type: a haproxy source measures each instance", "a per-instance source as external")
refuses({ metrics = { { name = "rps", source = rps, target = 1 }, { name = "rps", source = rps, target = 2 } } },
  "scaling.autoscaler: metrics%[2%]%.name: 'rps' is also metrics%[1%]", "two metrics with one name")
refuses({ metrics = { { name = "rps", source = rps, target = 1, every = 2 } } }, "scaling.autoscaler: metrics%[1%]%.every: unknown field", "an unknown metric field")
refuses({ replicas = 3 }, "scaling.autoscaler: replicas: unknown field", "an unknown field")
refuses({ behavior = { scale_down = { policies = { { type = "Pods", value = 1, period = "x" } } } } },
  "scaling.autoscaler: behavior%.scale_down%.policies%[1%]%.period", "a bad behavior policy (hpa.check names it)")
refuses({ predictive = { metric = "cpu", target = 1 } }, "scaling.autoscaler: predictive%.metric: the name of one of the metrics", "predictive on an unknown metric")

-- obs: what counts as ready capacity
local function inst(i, o)
  local x = { id = "api/v1/" .. i, revision = "v1", index = i, state = "running", ready = true, pid = 100 + i, started_at = 0 }
  for k, v in pairs(o or {}) do x[k] = v end
  return x
end
local obs = A.obs({ inst(1), inst(2, { ready = false }), inst(3, { state = "failed", pid = nil, ready = false }),
  inst(4, { state = "stopping" }), inst(1, { id = "api/v0/1", revision = "v0" }) }, "v1", {}, {}, 0)
t.is(obs.current, 3, "current counts the revision's instances that are not on their way out")
t.is(obs.instances[1].ready, true, "a ready instance is ready")
t.is(obs.instances[2].ready, false, "a not-ready instance is not ready capacity")
t.is(obs.instances[3].phase, "failed", "a failed instance is HPA's failed pod")

local function metrics(values)
  local per = {}
  for id, v in pairs(values) do per[id] = v end
  return { rps = { per_instance = per } }
end
local s = scaling.check(spec())

-- an unready instance is not counted: the missing/unready handling of HPA applies
local o = A.obs({ inst(1), inst(2, { ready = false }) }, "v1", metrics({ ["api/v1/1"] = 300 }), {}, 10)
local d = A.decide(s, nil, o, 10, {})
t.is(d.proposals[1].ready, 1, "the proposal counts one ready instance")
t.ok(d.desired > 2, "the load of the ready one scales up: " .. tostring(d.desired))

-- 0 -> min_replicas, whatever the (failing) metric says
o = A.obs({}, "v1", { rps = { error = "no sample yet" } }, {}, 0)
d = A.decide(s, nil, o, 0, {})
t.is(d.desired, 1, "a service at 0 is brought up to min_replicas")
t.is(A.outcome(d), "scaled_up", "an outcome of scaled_up")

-- bounds: schedule, quota, predictive
local two = { inst(1), inst(2) }
local hot = metrics({ ["api/v1/1"] = 500, ["api/v1/2"] = 500 })
d = A.decide(s, nil, A.obs(two, "v1", hot, {}, 0), 0, { headroom = 1, quota = "tenants.acme.instances" })
t.is(d.desired, 3, "the quota's headroom caps the scale-up at current + headroom")
t.is(d.limited_by, "quota tenants.acme.instances", "and the quota is named as the limit")
d = A.decide(s, nil, A.obs(two, "v1", hot, {}, 0), 0, { window = { min = 1, max = 4, window = "night" } })
t.is(d.desired, 4, "the schedule's window max caps it")
t.is(d.limited_by, "schedule night", "and the window is named as the limit")
local calm = metrics({ ["api/v1/1"] = 10, ["api/v1/2"] = 10 })
d = A.decide(s, nil, A.obs(two, "v1", calm, {}, 0), 0, { window = { min = 5, max = 10, window = "business" } })
t.is(d.desired, 5, "the schedule's window min raises it")
t.is(d.limited_by, "schedule business", "named as the limit")
local sp = scaling.check(spec{ predictive = { metric = "rps", target = 100, lead = "5m" } })
local function proposal_of(dd, name)
  for _, x in ipairs(dd.proposals or {}) do if x.metric == name then return x end end
end
d = A.decide(sp, nil, A.obs(two, "v1", calm, {}, 0), 0, { predicted = { replicas = 6, forecast = 580, low = 540, high = 620, at = 300 } })
t.is(d.desired, 6, "a forecast of 580 (target 100) proposes 6 beside the calm metric's 1: instances start ahead of the ramp")
local pp = proposal_of(d, "predicted:rps")
t.ok(pp and pp.replicas == 6 and pp.forecast == 580 and pp.low == 540 and pp.at == 300,
  "the predictive proposal is one of the proposals, with its forecast, interval and time")
d = A.decide(sp, nil, A.obs(two, "v1", hot, {}, 0), 0, { predicted = { forecast = 150 } })
t.is(d.desired, 6, "the largest proposal wins: the reactive metric's above a low forecast")
d = A.decide(sp, nil, A.obs(two, "v1", calm, {}, 0), 0, { predicted_error = "too little history" })
pp = proposal_of(d, "predicted:rps")
t.ok(d.desired <= 2 and pp and pp.unavailable == "too little history",
  "without a forecast the predictive metric is neutral and says why: " .. tostring(pp and pp.unavailable))
d = A.decide(sp, nil, A.obs(two, "v1", calm, {}, 0), 0, { headroom = 0, quota = "services.api.instances",
  predicted = { forecast = 580 } })
t.is(d.desired, 2, "a quota without headroom holds even a predictive scale-up")

-- stabilization on the fake clock: high, then low; no scale-down within 5 s of the high one
local state
local cur = 2
local function tick(now, per)
  local list = {}
  for i = 1, cur do list[i] = inst(i) end
  local vals = {}
  for i = 1, cur do vals["api/v1/" .. i] = per end
  local dd, st = A.decide(s, state, A.obs(list, "v1", metrics(vals), {}, now), now, {})
  state = st
  cur = dd.desired
  return dd
end
d = tick(0, 250)
t.is(d.desired, 5, "250 rps on 2 instances at a target of 100: 5")
local changes, last = {}, 5
for step = 1, 15 do -- the load comes and goes every second for almost 4 s (high last at 2.75 s)
  local now = step * 0.25
  d = tick(now, (step % 8 < 4) and 100 or 10)
  if d.desired ~= last then changes[#changes + 1] = now; last = d.desired end
end
t.is(#changes, 0, "no scale-down while a higher recommendation is inside the 5 s window")
t.is(d.limited_by, "stabilization_window", "the hold names the window")
t.is(A.outcome(d), "limited", "a held-back tick is 'limited' (logged once per distinct hold)")
d = tick(7.5, 10)
t.is(d.desired, 5, "7.5 s: the high recommendation of 2.75 s is still inside the window")
d = tick(7.875, 10)
t.is(d.desired, 1, "once the window has passed the low recommendations scale it down: " .. tostring(d.desired))

-- in a policy's sandbox the sources are guarded: sampling a service needs `deploy` for it, a
-- Prometheus URL `http` for it, whoever calls sample (the loop checks too)
local policies = require "steward.runtime.policies"
local src = [[
local scaling = require "steward.scaling"
local p = scaling.autoscaler{ service = "api", max_replicas = 3,
  metrics = { { name = "rps", source = scaling.source.haproxy{ metric = "rps" }, target = 10 } } }
p.decide = function(input)
  local other = scaling.source.haproxy{ metric = "queue" }
  local prom = scaling.source.prometheus{ url = "http://10.0.0.9:9090", query = "up" }
  return { other = other.sample({ service = "billing", revision = "v1", instances = {} }, {}),
           prom = prom.sample({ service = "api", revision = "v1", instances = {} }, {}) }
end
return p
]]
local pol, perr = policies.load_file("/nonexistent/scaling/guarded.lua", "scaling.guarded",
  { source = src, grants = { ["scaling.*"] = { deploy = { "api" } } } })
t.ok(pol and pol.autoscaler, "an autoscaler policy loads with its deploy grant: " .. tostring(perr))
local got = pol.decide({})
t.like(got.other.error, "capability 'deploy' not granted to scaling.guarded %(service billing%)",
  "a source sampled for a service outside the policy's deploy grant is refused")
t.like(got.prom.error, "capability 'http' not granted to scaling.guarded", "a Prometheus source without `http` is refused")
t.raises(function() scaling.autoscaler(spec{ metrics = { { name = "x", source = scaling.source.nope, target = 1 } } }) end,
  "scaling.source.nope: unknown source", "an unknown source kind names itself")
t.done()
