-- steward.capacity.forecast_stats: the small statistics steward.capacity.forecast needs: series
-- checks, normal and Student's t quantiles, error measures, and the first time a function
-- reaches a limit.
local type, error, format, tostring = type, error, string.format, tostring
local sqrt, log, abs, floor, tan, pi, huge = math.sqrt, math.log, math.abs, math.floor, math.tan, math.pi, math.huge

local M = {}

-- series(s, who) -> s as { {t, v}, ... } (entries may also be {t = , v = }); raises an error
-- naming the entry when one is not a pair of numbers or times go backwards.
function M.series(s, who)
  if type(s) ~= "table" then error(who .. ": series: a list of {t, v} expected, got " .. type(s), 3) end
  local out, prev = {}, -huge
  for i = 1, #s do
    local e = s[i]
    local t, v
    if type(e) == "table" then t, v = e[1] or e.t, e[2] or e.v end
    if type(t) ~= "number" or type(v) ~= "number" or t ~= t or v ~= v then
      error(format("%s: series[%d]: {t, v} with two numbers expected", who, i), 3)
    end
    if t < prev then error(format("%s: series[%d]: times must not go backwards (%s after %s)", who, i, tostring(t), tostring(prev)), 3) end
    prev = t
    out[i] = { t, v }
  end
  return out
end

function M.level(v, who)
  if v == nil then return 0.95 end
  if type(v) ~= "number" or v <= 0 or v >= 1 then
    error(who .. ": opts.level: a probability between 0 and 1 (0.95) expected, got " .. tostring(v), 3)
  end
  return v
end

-- The standard normal quantile (P. J. Acklam's rational approximation, relative error < 1.2e-9).
local A = { -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
            -3.066479806614716e+01, 2.506628277459239e+00 }
local B = { -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
            -1.328068155288572e+01 }
local C = { -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
            4.374664141464968e+00, 2.938163982698783e+00 }
local D = { 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00 }

local function norm_inv(p)
  if p < 0.02425 then
    local q = sqrt(-2 * log(p))
    return (((((C[1] * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) * q + C[6]) /
           ((((D[1] * q + D[2]) * q + D[3]) * q + D[4]) * q + 1)
  elseif p > 1 - 0.02425 then
    return -norm_inv(1 - p)
  end
  local q = p - 0.5
  local r = q * q
  return (((((A[1] * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * r + A[6]) * q /
         (((((B[1] * r + B[2]) * r + B[3]) * r + B[4]) * r + B[5]) * r + 1)
end

-- z_quantile(level) -> z with P(|Z| <= z) = level.
function M.z_quantile(level) return norm_inv(0.5 + level / 2) end

-- t_quantile(level, dof) -> the two-sided Student's t quantile: the Cornish-Fisher expansion
-- around the normal one (within 1 % from 3 degrees of freedom; 1 and 2 are exact).
function M.t_quantile(level, dof)
  local p = 0.5 + level / 2
  if dof <= 1 then return tan(pi * (p - 0.5)) end
  if dof == 2 then
    local a = 4 * p * (1 - p)
    return (2 * p - 1) * sqrt(2 / a)
  end
  local z = norm_inv(p)
  local z2 = z * z
  local g1 = (z2 + 1) * z / 4
  local g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
  local g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
  return z + g1 / dof + g2 / dof ^ 2 + g3 / dof ^ 3
end

-- errors(predict, samples) -> {mape (percent over the non-zero samples; nil when none), rmse, n}.
function M.errors(predict, samples)
  local se, ape, napes, n = 0, 0, 0, 0
  for i = 1, #samples do
    local t, v = samples[i][1], samples[i][2]
    local p = predict(t)
    if p then
      local e = v - p
      se, n = se + e * e, n + 1
      if v ~= 0 then ape, napes = ape + abs(e / v), napes + 1 end
    end
  end
  if n == 0 then return { n = 0 } end
  return { mape = napes > 0 and 100 * ape / napes or nil, rmse = sqrt(se / n), n = n }
end

-- first_crossing(f, limit, from, to, res) -> the first t in [from, to] with f(t) >= limit,
-- found by steps of res and then bisection inside the step (to a second); nil when none.
function M.first_crossing(f, limit, from, to, res)
  if f(from) >= limit then return from end
  local a = from
  local steps = floor((to - from) / res)
  for _ = 1, steps do
    local b = a + res
    if f(b) >= limit then
      while b - a > 1 do
        local mid = (a + b) / 2
        if f(mid) >= limit then b = mid else a = mid end
      end
      return b
    end
    a = b
  end
  if a < to and f(to) >= limit then return to end
  return nil
end

return M
