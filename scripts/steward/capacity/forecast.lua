-- steward.capacity.forecast: the forecasting maths shared by predictive scaling and capacity
-- reports. Additive Holt-Winters (level, trend, one season; parameters fitted on the
-- one-step-ahead squared error when not given), linear least squares with a prediction
-- interval, the time a forecast reaches a limit, and error measures on a holdout. Pure: no I/O,
-- no clock; times are the caller's seconds. Series are { {t, v}, ... } sorted by t; gaps
-- (missing samples) are allowed everywhere.
local hw = require "steward.capacity.forecast_hw"
local stats = require "steward.capacity.forecast_stats"

local type, error, tostring, select, setmetatable, require = type, error, tostring, select, setmetatable, require
local format, floor, sqrt, abs, max = string.format, math.floor, math.sqrt, math.abs, math.max

local M = {}

local checked_series = stats.series

-- Linear model ---------------------------------------------------------------------------------

local Linear = {}
Linear.__index = Linear

-- predict(t) -> value, low, high: the fitted line at t and its prediction interval (Student's t
-- at the model's level: a new observation, not the mean, so the interval never shrinks below
-- the residuals' spread).
function Linear:predict(t)
  if type(t) ~= "number" then error("forecast model:predict: t: number expected, got " .. type(t), 2) end
  local v = self.intercept + self.slope * (t - self.mean_t)
  local d = t - self.mean_t
  local half = self.tq * self.sigma * sqrt(1 + 1 / self.n + (self.sxx > 0 and d * d / self.sxx or 0))
  return v, v - half, v + half
end

-- linear(series [, {level = 0.95}]) -> model {kind = "linear", slope (per second), intercept,
-- sigma, n, level} with model:predict(t), or nil, reason (fewer than 3 samples, one instant).
function M.linear(series, opts)
  local s = checked_series(series, "forecast.linear")
  opts = opts or {}
  if type(opts) ~= "table" then error("forecast.linear: opts: table expected, got " .. type(opts), 2) end
  local level = stats.level(opts.level, "forecast.linear")
  local n = #s
  if n < 3 then return nil, format("too little history: %d samples, 3 needed", n) end
  local st, sv = 0, 0
  for i = 1, n do st, sv = st + s[i][1], sv + s[i][2] end
  local mt, mv = st / n, sv / n
  local sxx, sxy = 0, 0
  for i = 1, n do
    local dt = s[i][1] - mt
    sxx, sxy = sxx + dt * dt, sxy + dt * (s[i][2] - mv)
  end
  if sxx == 0 then return nil, "too little history: every sample has the same time" end
  local slope = sxy / sxx
  local sse = 0
  for i = 1, n do
    local r = s[i][2] - (mv + slope * (s[i][1] - mt))
    sse = sse + r * r
  end
  local sigma = sqrt(sse / (n - 2))
  return setmetatable({ kind = "linear", slope = slope, intercept = mv, mean_t = mt, sxx = sxx, n = n,
                        sigma = sigma, level = level, tq = stats.t_quantile(level, n - 2),
                        first = s[1][1], last = s[n][1] }, Linear)
end

-- Holt-Winters --------------------------------------------------------------------------------

local function duration_opt(v, field, default)
  if v == nil then return default end
  if type(v) == "number" then
    if v > 0 then return v end
  elseif type(v) == "string" then
    local d = require("steward.time").parse_duration(v)
    if d and d > 0 then return d end
  end
  error(format("forecast.holt_winters: opts.%s: a positive duration (\"1d\", 86400) expected, got %s", field, tostring(v)), 3)
end

local function unit_opt(v, field)
  if v == nil then return nil end
  if type(v) ~= "number" or v < 0 or v > 1 then
    error(format("forecast.holt_winters: opts.%s: a number from 0 to 1 expected, got %s", field, tostring(v)), 3)
  end
  return v
end

-- holt_winters(series [, {season = 86400, step = 60, alpha, beta, gamma, level = 0.95, lead}])
-- -> model {kind = "holt_winters", alpha, beta, gamma, sigma, season, step, level, sse, n,
-- lead_error} with model:predict(t), or nil, reason (less than two seasons of history). The
-- series is averaged onto a grid of `step`; a missing grid point advances level and trend
-- without an update. alpha, beta and gamma not given are fitted (a grid, then Nelder-Mead) on
-- the one-step-ahead squared error after the first season. With `lead` (seconds), the model
-- also measures its lead-ahead forecasts over the last season: lead_error = {mape, rmse, n}.
function M.holt_winters(series, opts)
  local s = checked_series(series, "forecast.holt_winters")
  opts = opts or {}
  if type(opts) ~= "table" then error("forecast.holt_winters: opts: table expected, got " .. type(opts), 2) end
  local season = duration_opt(opts.season, "season", 86400)
  local step = duration_opt(opts.step, "step", 60)
  local m = floor(season / step + 0.5)
  if m < 2 or abs(m * step - season) > 1e-6 * season then
    error(format("forecast.holt_winters: opts.step: must divide the season (%gs) into 2 or more steps, got %gs", season, step), 2)
  end
  local level = stats.level(opts.level, "forecast.holt_winters")
  local lead = opts.lead
  if lead ~= nil and (type(lead) ~= "number" or lead < 0) then
    error("forecast.holt_winters: opts.lead: seconds (a number >= 0) expected, got " .. tostring(lead), 2)
  end
  local params = { alpha = unit_opt(opts.alpha, "alpha"), beta = unit_opt(opts.beta, "beta"),
                   gamma = unit_opt(opts.gamma, "gamma") }
  local grid, err = hw.grid(s, step, m)
  if not grid then return nil, err end
  local model = hw.fit(grid, params, lead and floor(lead / step + 0.5) or nil)
  model.level, model.season, model.step = level, season, step
  model.z = stats.z_quantile(level)
  return setmetatable(model, hw.Model)
end

-- Choosing a model ------------------------------------------------------------------------------

local function fit(series, opts, who)
  local kind = opts.model
  if kind ~= nil and kind ~= "holt_winters" and kind ~= "linear" then
    error(who .. ": opts.model: \"holt_winters\" or \"linear\" expected, got " .. tostring(kind), 3)
  end
  if kind ~= "linear" then
    local model, err = M.holt_winters(series, opts)
    if model or kind == "holt_winters" then return model, err end
  end
  return M.linear(series, opts)
end
M.fit = fit

-- errors(model, holdout) -> {mape (percent, over non-zero samples), rmse, n}: model:predict
-- against samples it did not see.
function M.errors(model, holdout)
  if type(model) ~= "table" or type(model.predict) ~= "function" then
    error("forecast.errors: model: a model from forecast.linear or forecast.holt_winters expected", 2)
  end
  local s = checked_series(holdout, "forecast.errors")
  return stats.errors(function(t) return (model:predict(t)) end, s)
end

-- horizon(series, limit [, opts]) -> {at, days, low, high, model, error = {mape, rmse}, value}
-- or nil, reason. `at` is the first instant after `now` (default: the last sample) at which the
-- forecast reaches `limit`; `days` counts from `now`. `low` is when the upper bound of the
-- prediction interval reaches it (the pessimistic side: sooner), `high` when the lower bound
-- does (nil when not within `max`). opts: model ("holt_winters" | "linear"; default Holt-Winters
-- when two seasons of history exist, else linear), season, step, level, now, max (seconds
-- searched, default 365 days), holdout (seconds at the end kept out of the fit to measure the
-- error; default a fifth of the history).
function M.horizon(series, limit, opts)
  local s = checked_series(series, "forecast.horizon")
  if type(limit) ~= "number" or limit ~= limit then error("forecast.horizon: limit: number expected, got " .. tostring(limit), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("forecast.horizon: opts: table expected, got " .. type(opts), 2) end
  if #s < 3 then return nil, format("too little history: %d samples, 3 needed", #s) end
  local now = opts.now or s[#s][1]
  if type(now) ~= "number" then error("forecast.horizon: opts.now: number expected, got " .. type(now), 2) end
  local span_max = opts.max or 365 * 86400
  if type(span_max) ~= "number" or span_max <= 0 then error("forecast.horizon: opts.max: seconds expected", 2) end

  local model, err = fit(s, opts, "forecast.horizon")
  if not model then return nil, err end

  -- The error is measured honestly: the same kind of model fitted without the last part.
  local first, last = s[1][1], s[#s][1]
  local hold = opts.holdout or (last - first) / 5
  local train, test = {}, {}
  for i = 1, #s do
    if s[i][1] <= last - hold then train[#train + 1] = s[i] else test[#test + 1] = s[i] end
  end
  local e
  local sub = #test > 0 and #train >= 3 and fit(train, { model = model.kind, season = opts.season, step = opts.step,
                                                        level = opts.level }, "forecast.horizon")
  if sub then
    e = stats.errors(function(t) return (sub:predict(t)) end, test)
  else
    e = { mape = nil, rmse = model.sigma, n = 0, in_sample = true }
  end

  local res = model.kind == "holt_winters" and model.step or max(60, (last - first) / 1000)
  local function crossing(k)
    return stats.first_crossing(function(t) return select(k, model:predict(t)) end, limit, now, now + span_max, res)
  end
  local at = crossing(1)
  local v_now = model:predict(now)
  if not at then
    if model.kind == "linear" and model.slope <= 0 or model.kind == "holt_winters" and model.trend <= 0 then
      return nil, format("no upward trend: the %s forecast stays below %g within %g days", model.kind, limit, span_max / 86400)
    end
    return nil, format("not within %g days: the %s forecast stays below %g", span_max / 86400, model.kind, limit)
  end
  local lo, hi = crossing(3), crossing(2)
  return {
    at = at, days = (at - now) / 86400, low = lo and (lo - now) / 86400, high = hi and (hi - now) / 86400,
    model = model.kind, value = v_now, limit = limit, now = now,
    error = { mape = e.mape, rmse = e.rmse, n = e.n, in_sample = e.in_sample },
  }
end


return M
