-- steward.capacity.forecast: the proof on synthetic data. A daily sine plus linear growth plus
-- Gaussian noise from a seeded generator (the seed is in the test names, so a failure replays):
-- the predicted saturation day lies within the stated interval of the true one, Holt-Winters
-- beats the plain linear model on a holdout, and gaps in the series do not break either model.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local forecast = require "steward.capacity.forecast"

local DAY = 86400
local T0 = 1796601600 -- 2026-12-07T00:00:00Z

-- A linear congruential generator (glibc's constants) and Box-Muller: the same series on every
-- machine, whatever math.random is.
local function generator(seed)
  local s = seed
  local function uniform()
    s = (s * 1103515245 + 12345) % 2147483648
    return (s + 0.5) / 2147483648
  end
  local function gauss()
    return math.sqrt(-2 * math.log(uniform())) * math.cos(2 * math.pi * uniform())
  end
  return uniform, gauss
end

-- base + growth per day, a daily swing peaking at 18:00 UTC, noise sd; keep: share of samples kept.
local function truth(t, p)
  return p.base + p.growth * (t - T0) / DAY + p.swing * math.sin(2 * math.pi * ((t % DAY) / DAY - 0.5))
end

local function synthetic(p)
  local uniform, gauss = generator(p.seed)
  local out = {}
  for t = T0, T0 + p.days * DAY - 1, p.every do
    local keep = uniform() < (p.keep or 1)
    local noise = gauss() * p.noise
    local gap = p.gap and t >= p.gap[1] and t < p.gap[2]
    if keep and not gap then out[#out + 1] = { t, truth(t, p) + noise } end
  end
  return out
end

-- When the noise-free series first reaches limit after `from` (to the minute).
local function true_saturation(p, limit, from)
  local t = from
  while truth(t, p) < limit do t = t + 60 end
  return t
end

local BASE = { base = 100, growth = 5, swing = 30, noise = 5, days = 28, every = 600 }
local function params(t)
  local p = {}
  for k, v in pairs(BASE) do p[k] = v end
  for k, v in pairs(t) do p[k] = v end
  return p
end

describe("horizon on a seasonal series with a trend", function()
  for _, seed in ipairs { 1, 42, 2026 } do
    it("seed " .. seed .. ": the true saturation day is within [low, high] and near the estimate", function()
      local p = params { seed = seed }
      local s = synthetic(p)
      local now = s[#s][1]
      local h = assert(forecast.horizon(s, 300, { step = "1h" }))
      local true_days = (true_saturation(p, 300, now) - now) / DAY
      assert.equal(h.model, "holt_winters")
      assert.truthy(h.low <= true_days and true_days <= h.high,
                    string.format("true %.2f days outside [%.2f, %.2f]", true_days, h.low, h.high))
      assert.truthy(math.abs(h.days - true_days) < 1.5, string.format("estimate %.2f, true %.2f", h.days, true_days))
      assert.truthy(h.low <= h.days and h.days <= h.high)
      assert.equal(h.at, now + h.days * DAY)
      assert.truthy(h.error.rmse > 0 and h.error.mape > 0 and h.error.n > 0)
    end)
  end

  it("seed 7: Holt-Winters beats the plain linear model on the holdout", function()
    local s = synthetic(params { seed = 7 })
    local hw = assert(forecast.horizon(s, 300, { step = "1h" }))
    local lin = assert(forecast.horizon(s, 300, { model = "linear" }))
    assert.equal(lin.model, "linear")
    assert.truthy(hw.error.rmse < lin.error.rmse / 2,
                  string.format("Holt-Winters rmse %.2f, linear %.2f", hw.error.rmse, lin.error.rmse))
    assert.truthy(hw.error.mape < lin.error.mape)
  end)

  it("seed 11: gaps (30 % of samples lost and a 12-hour hole) do not break it", function()
    local p = params { seed = 11, keep = 0.7, gap = { T0 + 20 * DAY, T0 + 20.5 * DAY } }
    local s = synthetic(p)
    local now = s[#s][1]
    local h = assert(forecast.horizon(s, 300, { step = "1h" }))
    local true_days = (true_saturation(p, 300, now) - now) / DAY
    assert.truthy(h.low <= true_days and true_days <= h.high,
                  string.format("true %.2f days outside [%.2f, %.2f]", true_days, h.low, h.high))
    local lin = assert(forecast.horizon(s, 300, { model = "linear" }))
    assert.truthy(lin.days > 0)
  end)

  it("seed 3: a 10-minute grid (step 600) agrees with the hourly one", function()
    local p = params { seed = 3, days = 21 }
    local s = synthetic(p)
    local now = s[#s][1]
    local h = assert(forecast.horizon(s, 260, { step = "10m" }))
    local true_days = (true_saturation(p, 260, now) - now) / DAY
    assert.truthy(h.low <= true_days and true_days <= h.high,
                  string.format("true %.2f days outside [%.2f, %.2f]", true_days, h.low, h.high))
  end)

  it("less than two days of history: the linear model answers", function()
    local p = params { seed = 5, days = 1.5, swing = 0 }
    local h = assert(forecast.horizon(synthetic(p), 200, { step = "1h" }))
    assert.equal(h.model, "linear")
    assert.truthy(h.days > 15 and h.days < 25, "days " .. h.days)
  end)

  it("no upward trend: nil and the reason", function()
    local p = params { seed = 9, growth = -1 }
    local h, err = forecast.horizon(synthetic(p), 300, { step = "1h" })
    assert.equal(h, nil)
    assert.match(err, "^no upward trend")
  end)

  it("a limit already reached: zero days", function()
    local h = assert(forecast.horizon(synthetic(params { seed = 4 }), 50, { step = "1h" }))
    assert.same({ h.days, h.low }, { 0, 0 })
  end)

  it("too little history: nil and the reason", function()
    local h, err = forecast.horizon({ { 0, 1 }, { 60, 2 } }, 10)
    assert.equal(h, nil)
    assert.match(err, "^too little history")
  end)
end)

describe("linear", function()
  it("recovers an exact line; the interval has the residuals' width", function()
    local s = {}
    for i = 0, 99 do s[#s + 1] = { i * 60, 10 + 0.5 * i + (i % 2 == 0 and 1 or -1) } end
    local m = assert(forecast.linear(s))
    assert.truthy(math.abs(m.slope * 60 - 0.5) < 1e-3)
    local v, lo, hi = m:predict(100 * 60)
    assert.truthy(math.abs(v - 60) < 0.2)
    assert.truthy(hi - lo > 3.5 and hi - lo < 4.5, "width " .. (hi - lo))
    local _, lo2, hi2 = m:predict(1000 * 60)
    assert.truthy(hi2 - lo2 > hi - lo)   -- further from the data, wider
  end)
  it("nil for fewer than 3 samples or one instant", function()
    assert.equal(select(2, forecast.linear { { 1, 1 }, { 2, 2 } }), "too little history: 2 samples, 3 needed")
    assert.match(select(2, forecast.linear { { 1, 1 }, { 1, 2 }, { 1, 3 } }), "same time")
  end)
end)

describe("holt_winters", function()
  it("fits alpha, beta, gamma inside [0, 1] and reproduces a noise-free season", function()
    local p = params { seed = 1, noise = 0, days = 14, every = 3600 }
    local m = assert(forecast.holt_winters(synthetic(p), { step = 3600 }))
    for _, k in ipairs { "alpha", "beta", "gamma" } do assert.truthy(m[k] >= 0 and m[k] <= 1, k .. " " .. m[k]) end
    local t = T0 + 15 * DAY + 6 * 3600
    local v = m:predict(t)
    assert.truthy(math.abs(v - truth(t, p)) < 2, string.format("predicted %.2f, true %.2f", v, truth(t, p)))
  end)
  it("keeps given parameters", function()
    local m = assert(forecast.holt_winters(synthetic(params { seed = 2, days = 3, every = 3600 }),
                                           { step = "1h", alpha = 0.3, beta = 0.01, gamma = 0.2 }))
    assert.same({ m.alpha, m.beta, m.gamma }, { 0.3, 0.01, 0.2 })
  end)
  it("measures its lead-ahead forecasts over the last season", function()
    local m = assert(forecast.holt_winters(synthetic(params { seed = 6, days = 7 }), { step = "10m", lead = 3600 }))
    assert.truthy(m.lead_error.n > 100 and m.lead_error.rmse > 0 and m.lead_error.lead == 3600)
  end)
  it("nil with the reason under two seasons", function()
    local m, err = forecast.holt_winters(synthetic(params { seed = 2, days = 1.9, every = 3600 }), { step = "1h" })
    assert.equal(m, nil)
    assert.match(err, "^too little history: 1%.92 seasons, two needed")
  end)
end)

describe("errors", function()
  it("MAPE in percent over non-zero samples, RMSE over all", function()
    local model = { predict = function(_, t) return t end }
    local e = forecast.errors(model, { { 1, 2 }, { 2, 2 }, { 3, 0 } })
    assert.same(e, { mape = 25, rmse = math.sqrt(10 / 3), n = 3 })
  end)
end)

describe("misuse", function()
  it("names the bad entry", function()
    assert.error(function() forecast.linear { { 1, 1 }, { 2, "x" } } end, "forecast%.linear: series%[2%]: {t, v} with two numbers expected")
    assert.error(function() forecast.linear { { 2, 1 }, { 1, 1 } } end, "series%[2%]: times must not go backwards")
    assert.error(function() forecast.holt_winters({}, { step = "7m" }) end, "opts%.step: must divide the season")
    assert.error(function() forecast.holt_winters({}, { alpha = 2 }) end, "opts%.alpha: a number from 0 to 1")
    assert.error(function() forecast.horizon({}, "a lot") end, "forecast%.horizon: limit: number expected")
    assert.error(function() forecast.errors({}, {}) end, "forecast%.errors: model:")
  end)
end)

describe("docs/capacity/forecast.md", function()
  it("its examples run as written and print what their --> comments say", function()
    assert(loadfile("tests/support/doc_examples.lua"))()("docs/capacity/forecast.md", assert)
  end)
end)
