-- steward.capacity.forecast_hw: additive Holt-Winters for steward.capacity.forecast — the series
-- put on a regular grid, the classic initialisation from the first two seasons, the recursion
-- (a missing grid point advances level and trend and updates nothing), and the fit of alpha,
-- beta and gamma on the one-step-ahead squared error.
local type, ipairs, error, format, floor, sqrt, abs, huge, max =
  type, ipairs, error, string.format, math.floor, math.sqrt, math.abs, math.huge, math.max

local M = {}

-- grid(series, step, m) -> {y = {...}, has = {...}, n, g0, m, step}, or nil, reason. Samples in
-- the same step are averaged; the grid index of t is floor(t / step), so seasons line up with
-- the clock (days start at midnight UTC for a daily season).
function M.grid(s, step, m)
  if #s == 0 then return nil, "too little history: no samples" end
  local g0 = floor(s[1][1] / step)
  local n = floor(s[#s][1] / step) - g0 + 1
  if n < 2 * m then
    return nil, format("too little history: %.3g seasons, two needed for Holt-Winters", n / m)
  end
  local sum, cnt = {}, {}
  for i = 1, n do sum[i], cnt[i] = 0, 0 end
  for k = 1, #s do
    local i = floor(s[k][1] / step) - g0 + 1
    sum[i], cnt[i] = sum[i] + s[k][2], cnt[i] + 1
  end
  local y, has = {}, {}
  local in1, in2 = 0, 0
  for i = 1, n do
    has[i] = cnt[i] > 0
    y[i] = has[i] and sum[i] / cnt[i] or 0
    if has[i] and i <= m then in1 = in1 + 1 elseif has[i] and i <= 2 * m then in2 = in2 + 1 end
  end
  if in1 == 0 or in2 == 0 then
    return nil, "too little history: the first two seasons need a sample each"
  end
  return { y = y, has = has, n = n, g0 = g0, m = m, step = step }
end

local function slot(g, i) return (g.g0 + i - 1) % g.m + 1 end

-- Initial level (before the first point), trend and seasonal indices.
local function initial(g)
  local y, has, m = g.y, g.has, g.m
  local s1, c1, s2, c2 = 0, 0, 0, 0
  for i = 1, m do if has[i] then s1, c1 = s1 + y[i], c1 + 1 end end
  for i = m + 1, 2 * m do if has[i] then s2, c2 = s2 + y[i], c2 + 1 end end
  local mean1, mean2 = s1 / c1, s2 / c2
  local b = (mean2 - mean1) / m
  local acc, cnt = {}, {}
  for j = 1, m do acc[j], cnt[j] = 0, 0 end
  for i = 1, 2 * m do
    if has[i] then
      local j = slot(g, i)
      acc[j] = acc[j] + y[i] - (mean1 + b * (i - (m + 1) / 2))
      cnt[j] = cnt[j] + 1
    end
  end
  local season, total = {}, 0
  for j = 1, m do season[j] = cnt[j] > 0 and acc[j] / cnt[j] or false end
  -- A slot missing from both seasons takes the line between its observed neighbours (around
  -- the clock): an index of 0 would forecast the daily mean there, far off at a ramp.
  for j = 1, m do
    if not season[j] then
      local a, b = j, j
      repeat a = (a - 2) % m + 1 until cnt[a] > 0
      repeat b = b % m + 1 until cnt[b] > 0
      local da, db = (j - a) % m, (b - j) % m
      season[j] = (acc[a] / cnt[a] * db + acc[b] / cnt[b] * da) / (da + db)
    end
  end
  for j = 1, m do total = total + season[j] end
  for j = 1, m do season[j] = season[j] - total / m end
  return mean1 - b * (m + 1) / 2, b, season
end

-- run(g, a, b_, c [, keep]) -> sse after the first season, count, level, trend, seasons; with
-- keep, also the one-step-ahead forecast of every grid point and the level/trend after each.
local function run(g, alpha, beta, gamma, init, keep)
  local l, b, s0 = init[1], init[2], init[3]
  local s = {}
  for j = 1, g.m do s[j] = s0[j] end
  local y, has, m, n = g.y, g.has, g.m, g.n
  local sse, count = 0, 0
  local fitted, L, B
  if keep then fitted, L, B = {}, {}, {} end
  for i = 1, n do
    local j = slot(g, i)
    local f = l + b + s[j]
    if keep then fitted[i] = f end
    if has[i] then
      local e = y[i] - f
      if i > m then sse, count = sse + e * e, count + 1 end
      local nl = alpha * (y[i] - s[j]) + (1 - alpha) * (l + b)
      b = beta * (nl - l) + (1 - beta) * b
      s[j] = gamma * (y[i] - nl) + (1 - gamma) * s[j]
      l = nl
    else
      l = l + b
    end
    if keep then L[i], B[i] = l, b end
  end
  return sse, count, l, b, s, fitted, L, B
end

local NAMES = { "alpha", "beta", "gamma" }
local GRID = { alpha = { 0.05, 0.2, 0.5, 0.8 }, beta = { 0, 0.01, 0.1 }, gamma = { 0.05, 0.2, 0.5 } }

local function clamp01(v) return v < 0 and 0 or v > 1 and 1 or v end

-- Nelder-Mead on the free parameters, each kept inside [0, 1] (a point outside costs its
-- clamped value plus a penalty, so the simplex walks back in).
local function nelder_mead(f, x0, scale, iterations)
  local k = #x0
  local simplex, values = {}, {}
  simplex[1] = x0
  for i = 1, k do
    local x = {}
    for d = 1, k do x[d] = x0[d] end
    x[i] = x[i] + (x[i] + scale <= 1 and scale or -scale)
    simplex[i + 1] = x
  end
  for i = 1, k + 1 do values[i] = f(simplex[i]) end
  for _ = 1, iterations do
    -- order
    for i = 2, k + 1 do
      local x, v, p = simplex[i], values[i], i - 1
      while p >= 1 and values[p] > v do simplex[p + 1], values[p + 1] = simplex[p], values[p]; p = p - 1 end
      simplex[p + 1], values[p + 1] = x, v
    end
    local c = {}
    for d = 1, k do
      local sum = 0
      for i = 1, k do sum = sum + simplex[i][d] end
      c[d] = sum / k
    end
    local worst = simplex[k + 1]
    local function toward(t)
      local x = {}
      for d = 1, k do x[d] = c[d] + t * (worst[d] - c[d]) end
      return x
    end
    local xr = toward(-1)
    local fr = f(xr)
    if fr < values[1] then
      local xe = toward(-2)
      local fe = f(xe)
      if fe < fr then simplex[k + 1], values[k + 1] = xe, fe else simplex[k + 1], values[k + 1] = xr, fr end
    elseif fr < values[k] then
      simplex[k + 1], values[k + 1] = xr, fr
    else
      local xc = toward(0.5)
      local fc = f(xc)
      if fc < values[k + 1] then
        simplex[k + 1], values[k + 1] = xc, fc
      else
        for i = 2, k + 1 do
          for d = 1, k do simplex[i][d] = simplex[1][d] + 0.5 * (simplex[i][d] - simplex[1][d]) end
          values[i] = f(simplex[i])
        end
      end
    end
  end
  local best, bv = simplex[1], values[1]
  for i = 2, k + 1 do if values[i] < bv then best, bv = simplex[i], values[i] end end
  return best
end

-- fit(g, fixed, lead_steps) -> the model fields: alpha, beta, gamma (fixed ones kept), the final
-- level, trend and seasons, sigma of the one-step errors, the fitted values.
function M.fit(g, fixed, lead_steps)
  local init = { initial(g) }
  local free = {}
  for _, name in ipairs(NAMES) do if fixed[name] == nil then free[#free + 1] = name end end
  local params = { alpha = fixed.alpha, beta = fixed.beta, gamma = fixed.gamma }
  if #free > 0 then
    local function cost(x)
      local p, penalty = {}, 0
      for i, name in ipairs(free) do
        local v = clamp01(x[i])
        penalty = penalty + (v - x[i]) ^ 2
        p[name] = v
      end
      local sse = run(g, p.alpha or params.alpha, p.beta or params.beta, p.gamma or params.gamma, init)
      return sse * (1 + 100 * penalty)
    end
    -- A coarse grid picks the basin, Nelder-Mead refines inside it.
    local best, bestv = nil, huge
    local x = {}
    local function walk(d)
      if d > #free then
        local v = cost(x)
        if v < bestv then
          best, bestv = {}, v
          for i = 1, #free do best[i] = x[i] end
        end
        return
      end
      for _, v in ipairs(GRID[free[d]]) do x[d] = v; walk(d + 1) end
    end
    walk(1)
    best = nelder_mead(cost, best, 0.05, 40 * #free)
    for i, name in ipairs(free) do params[name] = clamp01(best[i]) end
  end
  local sse, count, l, b, s, fitted, L, B = run(g, params.alpha, params.beta, params.gamma, init, true)
  local model = {
    kind = "holt_winters", alpha = params.alpha, beta = params.beta, gamma = params.gamma,
    sse = sse, n = count, sigma = count > 0 and sqrt(sse / count) or 0,
    l = l, b = b, s = s, fitted = fitted, g0 = g.g0, m = g.m, grid_n = g.n,
    trend = b / g.step, slope = b / g.step,
  }
  if lead_steps and lead_steps >= 1 then
    local se, ape, napes, k = 0, 0, 0, 0
    for i = max(g.n - g.m + 1, lead_steps + 1), g.n do
      if g.has[i] then
        -- The forecast made lead_steps earlier: level and trend then, the season as it stood.
        local p = L[i - lead_steps] + lead_steps * B[i - lead_steps] + (fitted[i] - (L[i - 1] + B[i - 1]))
        local e = g.y[i] - p
        se, k = se + e * e, k + 1
        if g.y[i] ~= 0 then ape, napes = ape + abs(e / g.y[i]), napes + 1 end
      end
    end
    model.lead_error = k > 0 and { mape = napes > 0 and 100 * ape / napes or nil, rmse = sqrt(se / k), n = k,
                                   lead = lead_steps * g.step } or nil
  end
  return model
end

M.Model = {}
M.Model.__index = M.Model

-- predict(t) -> value, low, high. Inside the history: the one-step-ahead forecast made there.
-- After it: level + h * trend + the season of t, with Hyndman's h-step variance for additive
-- Holt-Winters: sigma^2 * (1 + sum_{j<h} (alpha * (1 + j * beta) + gamma * [j mod m = 0])^2).
function M.Model:predict(t)
  if type(t) ~= "number" then error("forecast model:predict: t: number expected, got " .. type(t), 2) end
  local i = floor(t / self.step) - self.g0 + 1
  if i < 1 then return nil end
  local half = self.z * self.sigma
  if i <= self.grid_n then
    local v = self.fitted[i]
    return v, v - half, v + half
  end
  local h = i - self.grid_n
  local v = self.l + h * self.b + self.s[(self.g0 + i - 1) % self.m + 1]
  local a, be, ga, k = self.alpha, self.beta, self.gamma, h - 1
  local sum = k * a * a + a * a * be * k * (k + 1) + a * a * be * be * k * (k + 1) * (2 * k + 1) / 6
  local q = floor(k / self.m)
  sum = sum + q * ga * ga + 2 * a * ga * (q + be * self.m * q * (q + 1) / 2)
  half = half * sqrt(1 + sum)
  return v, v - half, v + half
end


return M
