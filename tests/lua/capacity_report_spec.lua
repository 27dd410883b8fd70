-- steward.capacity.report on a real store and a fake clock: a synthetic series (28 days, hourly,
-- a daily season of +-200 over a trend of +20 a day, noise) is imported; the report forecasts the
-- day it reaches its limit and the true day (from the noise-free curve) lies in its interval;
-- it warns when that is within the lead time and not otherwise; a service at its limit is
-- saturated; no history or too little is said, not guessed; the `capacity` key's errors name
-- the field.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local capacity = require "steward.capacity"
local ccfg = require "steward.capacity.config"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st

local DAY = 86400
local T0 = 1796000000 - 1796000000 % DAY
local NOW = T0 + 28 * DAY
local LIMIT = 1000 + 20 * 40 + 200 -- the daily peak reaches it about 12 days after NOW

local function truth(tt) local d = (tt - T0) / DAY; return 1000 + 20 * d + 200 * math.sin(2 * math.pi * d) end

local function main()
  store.set_default(st)
  local seed = 12345
  local function noise() seed = (seed * 1103515245 + 12345) % 2147483648; return (seed / 2147483648 - 0.5) * 30 end
  local pts = {}
  for i = 0, 28 * 24 - 1 do pts[#pts + 1] = { T0 + i * 3600, truth(T0 + i * 3600) + noise() } end
  t.is(assert(capacity.import("api:rps", pts)), 28 * 24, "the synthetic series is imported")
  assert(capacity.import("tiny:rps", { { NOW - 7200, 5 }, { NOW - 3600, 6 } }))
  assert(capacity.import("flat:rps", (function()
    local p = {}
    for i = 0, 28 * 24 - 1 do p[#p + 1] = { T0 + i * 3600, 500 - i * 0.1 } end
    return p
  end)()))
  local true_at
  for tt = NOW, NOW + 60 * DAY, 60 do if truth(tt) >= LIMIT then true_at = tt; break end end
  local true_days = (true_at - NOW) / DAY

  capacity.configure({ capacity = { services = {
    api = { metric = "api:rps", limit = { per_instance = LIMIT / 10, instances = 10 }, lead_time = "14d" },
    calm = { metric = "api:rps", limit = LIMIT, lead_time = "7d" },
    hot = { metric = "api:rps", limit = 1000, lead_time = "7d" },
    tiny = { metric = "tiny:rps", limit = 10 },
    flat = { metric = "flat:rps", limit = 1000 },
    none = { metric = "none:rps", limit = 10 },
  } } })
  local r = assert(capacity.report("api", NOW))
  t.is(r.service, "api", "report(api): one service")
  t.is(r.limit, LIMIT, "... the limit per instance times instances")
  t.is(r.limit_text, "200 per instance x 10 instances", "... and how it was stated")
  t.ok(r.horizon and r.horizon.low <= true_days and true_days <= r.horizon.high,
    ("the true saturation day (%.2f) lies within the stated interval (%.2f to %.2f)"):format(true_days,
      r.horizon and r.horizon.low or -1, r.horizon and r.horizon.high or -1))
  t.ok(r.horizon and math.abs(r.horizon.days - true_days) < 1, ("... the point estimate (%.2f days) within a day of it"):format(
    r.horizon and r.horizon.days or -1))
  t.is(r.model, "holt_winters", "... by Holt-Winters (four weeks of a daily season)")
  t.ok(r.error and r.error.mape and r.error.mape < 5, "... with its error on a holdout (MAPE " ..
    tostring(r.error and r.error.mape) .. " %)")
  t.is(r.status, "warning", "12 days to the limit with a 14 days lead time: a warning")
  t.ok(r.alert, "... that alerts")
  t.like(r.reason, "^api:rps reaches its limit 2000 in 12%.%d days %(", "... saying when")
  t.ok(math.abs(r.current - truth(NOW - 3600)) < 20, "current: the last hour's value")
  local calm = assert(capacity.report("calm", NOW))
  t.is(calm.status, "ok", "the same horizon with a 7 days lead time: ok")
  t.is(calm.alert, false, "... no alert")
  local hot = assert(capacity.report("hot", NOW))
  t.is(hot.status, "saturated", "a limit below the current value: saturated")
  t.ok(hot.alert, "... alerts")
  local tiny = assert(capacity.report("tiny", NOW))
  t.is(tiny.status, "unknown", "two samples: no forecast, status unknown")
  t.like(tiny.reason, "too little history", "... and the reason")
  t.is(tiny.horizon, nil, "... no horizon")
  local flat = assert(capacity.report("flat", NOW))
  t.like(flat.reason, "no upward trend", "a falling series: no upward trend")
  t.is(flat.status, "ok", "... which is ok")
  local none = assert(capacity.report("none", NOW))
  t.is(none.status, "unknown", "no history: unknown")
  t.like(none.reason, "^no history of none:rps", "... said so")
  local all = assert(capacity.report(nil, NOW))
  local names = {}
  for i, x in ipairs(all) do names[i] = x.service end
  t.is(table.concat(names, ","), "api,calm,flat,hot,none,tiny", "report() lists every configured service, sorted")
  local broken = assert(require("steward.capacity.report").one(st, "api", ccfg.check({ services = {
    api = { metric = "api:rps", limit = 5000 } } }).services.api, NOW, { horizon = function() error("boom") end }))
  t.ok(broken.status == "unknown" and broken.reason:match("^forecast failed: .*boom") and broken.current,
    "a forecast that raises: the report still answers, saying why it has no horizon")
  local nope, err = capacity.report("ghost", NOW)
  t.ok(nope == nil and err:match("no service ghost"), "an unknown service: nil and why")
  local g = require("steward.metrics").get("steward_capacity_horizon_days")
  t.ok(g and g.series and g.series["api"] and math.abs(g.series["api"].value - r.horizon.days) < 1e-9,
    "steward_capacity_horizon_days{service=api} is the last report's horizon")

  -- config errors
  local function bad(v, pattern, name)
    local ok, e = pcall(ccfg.check, v)
    t.ok(not ok and tostring(e):match(pattern), name .. " (" .. tostring(e) .. ")")
  end
  bad({ services = { api = { metric = "api:rps" } } }, "^capacity%.services%.api%.limit: a number", "a service without a limit")
  bad({ services = { api = { metric = "api:rps", limit = -3 } } }, "^capacity%.services%.api%.limit: positive", "a negative limit")
  bad({ services = { api = { metric = "api:rps", limit = { per_instance = 5 } } } }, "limit%.instances: integer", "per_instance alone")
  bad({ services = { api = { limit = 5 } } }, "^capacity%.services%.api%.metric: series name expected", "no metric")
  bad({ services = { api = { metric = "a:b", limit = 5, lead_time = "soon" } } }, "^capacity%.services%.api%.lead_time:", "a bad lead time")
  bad({ retention = "0s" }, "^capacity%.retention: positive duration", "a zero retention")
  bad({ servces = {} }, "^capacity%.servces: unknown field", "a typo")
end

spec.run(main)
