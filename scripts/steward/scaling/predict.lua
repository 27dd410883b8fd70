-- steward.scaling.predict: predictive scaling. From a metric's history it forecasts the value at
-- now + lead (additive Holt-Winters with a daily season, steward.capacity.forecast) and proposes
-- the replicas that value needs, so instances start before a ramp that happens every day. The
-- autoscaler adds the proposal to the reactive ones (the largest wins). Pure: the caller passes
-- the series and the clock.
local forecast = require "steward.capacity.forecast"
local time = require "steward.time"

local type, error, format, tostring, ceil, setmetatable, pairs = type, error, string.format, tostring, math.ceil, setmetatable, pairs

local M = {}

local function fail(field, reason) error(format("scaling: predictive.%s: %s", field, reason), 4) end

local function duration(v, field, default)
  if v == nil then v = default end
  local d
  if type(v) == "number" then d = v elseif type(v) == "string" then d = time.parse_duration(v) end
  if type(d) ~= "number" or d < 0 then fail(field, "duration (\"5m\", \"1d\") expected, got " .. tostring(v)) end
  return d
end

local function unit(v, field)
  if v == nil then return nil end
  if type(v) ~= "number" or v < 0 or v > 1 then fail(field, "a number from 0 to 1 expected, got " .. tostring(v)) end
  return v
end

local CHECKED = setmetatable({}, { __mode = "k" })

-- check(spec) -> the spec normalised (durations in seconds), or raises an error naming the field.
-- spec = {metric = name, target = value one instance handles, lead = "5m", season = "1d",
-- step = "1m", refit = "1h", alpha, beta, gamma (fixed smoothing; fitted when absent),
-- activation (the forecast that wakes a service at zero, default target: one instance's worth)}.
function M.check(spec)
  if type(spec) ~= "table" then error("scaling: predictive: table expected, got " .. type(spec), 2) end
  if CHECKED[spec] then return spec end
  local out = {}
  if type(spec.metric) ~= "string" or spec.metric == "" then fail("metric", "the name of a metric expected") end
  out.metric = spec.metric
  if type(spec.target) ~= "number" or spec.target <= 0 then
    fail("target", "a positive number expected (the value one instance handles), got " .. tostring(spec.target))
  end
  out.target = spec.target
  out.lead = duration(spec.lead, "lead", "5m")
  out.season = duration(spec.season, "season", "1d")
  out.step = duration(spec.step, "step", "1m")
  out.refit = duration(spec.refit, "refit", "1h")
  if out.season <= 0 then fail("season", "must be positive") end
  if out.step <= 0 or out.season / out.step < 2 or out.season % out.step ~= 0 then
    fail("step", format("must divide the season (%gs) into 2 or more steps, got %gs", out.season, out.step))
  end
  out.alpha, out.beta, out.gamma = unit(spec.alpha, "alpha"), unit(spec.beta, "beta"), unit(spec.gamma, "gamma")
  if spec.activation ~= nil and (type(spec.activation) ~= "number" or spec.activation ~= spec.activation) then
    fail("activation", "number expected, got " .. tostring(spec.activation))
  end
  out.activation = spec.activation == nil and out.target or spec.activation
  for k in pairs(spec) do
    if out[k] == nil and k ~= "alpha" and k ~= "beta" and k ~= "gamma" then fail(k, "unknown field") end
  end
  CHECKED[out] = true
  return out
end

-- Fitted smoothing parameters per spec table: fitting costs a hundred passes over the history,
-- a tick needs one, so the fit is redone only every `refit`. Weak keys: a reloaded policy's
-- old spec goes with it.
local PARAMS = setmetatable({}, { __mode = "k" })

-- proposal(spec, series, now) -> {metric, replicas, forecast, low, high, at = now + lead,
-- error = {mape, rmse, n, lead}, model = "holt_winters", params = {alpha, beta, gamma}}, or
-- nil, reason (too little history: two seasons are needed). series = {{t, v}, ...}: the
-- metric's total over the service (what `target` is a per-instance share of); samples after
-- `now` are ignored. The error is the one of the model's own lead-ahead forecasts over the last
-- season (what the proposal is worth), not of the one-step fit.
function M.proposal(spec, series, now)
  local key = spec
  spec = M.check(spec)
  if type(series) ~= "table" then error("scaling: predict.proposal: series: a list of {t, v} expected, got " .. type(series), 2) end
  if type(now) ~= "number" then error("scaling: predict.proposal: now: seconds expected, got " .. type(now), 2) end
  local past = series
  local last = series[#series]
  if last and type(last) == "table" and type(last[1] or last.t) == "number" and (last[1] or last.t) > now then
    past = {}
    for i = 1, #series do
      local e = series[i]
      local t = type(e) == "table" and (e[1] or e.t)
      if type(t) == "number" and t > now then break end
      past[i] = e
    end
  end
  local cached = PARAMS[key]
  local opts = { season = spec.season, step = spec.step, lead = spec.lead,
                 alpha = spec.alpha, beta = spec.beta, gamma = spec.gamma }
  if cached and now - cached.at < spec.refit and now >= cached.at then
    opts.alpha, opts.beta, opts.gamma = cached.alpha, cached.beta, cached.gamma
  end
  local model, err = forecast.holt_winters(past, opts)
  if not model then return nil, err end
  if not (cached and opts.alpha == cached.alpha and opts.beta == cached.beta and opts.gamma == cached.gamma) then
    PARAMS[key] = { at = now, alpha = model.alpha, beta = model.beta, gamma = model.gamma }
  end
  local at = now + spec.lead
  local v, low, high = model:predict(at)
  local replicas = 0
  if v > 0 then replicas = ceil(v / spec.target - 1e-9) end
  local e = model.lead_error or { rmse = model.sigma, n = 0 }
  return {
    metric = spec.metric, replicas = replicas, forecast = v, low = low, high = high, at = at,
    target = spec.target, model = "holt_winters",
    error = { mape = e.mape, rmse = e.rmse, n = e.n, lead = spec.lead },
    params = { alpha = model.alpha, beta = model.beta, gamma = model.gamma },
  }
end

-- metric(spec) -> the HPA/KEDA metric that carries the proposal into the autoscaler's decision:
-- an external metric "predicted:<metric>" with an average_value target of `target`, so HPA
-- proposes ceil(forecast / target) beside the reactive metrics (the largest wins) and its
-- tolerance, stabilization and rate policies apply to it as to any other.
function M.metric(spec)
  spec = M.check(spec)
  return { name = "predicted:" .. spec.metric, type = "external", activation = spec.activation,
           target = { type = "average_value", value = spec.target } }
end

-- observation(proposal [, err]) -> the obs.metrics entry for metric(spec): {value = forecast}.
-- Without a proposal (too little history) it is a neutral {value = 0, unavailable = err}, not
-- an error: HPA holds a scale-down back when a metric fails, and KEDA never goes to zero while a
-- trigger fails, so two days without history must not pin a service up.
function M.observation(p, err)
  if type(p) ~= "table" then return { value = 0, unavailable = tostring(err or "no forecast") } end
  return { value = p.forecast > 0 and p.forecast or 0 }
end

return M
