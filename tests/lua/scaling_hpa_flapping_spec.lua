-- No flapping, the pure part: steward.scaling.hpa driven on the fake clock by an oscillating load,
-- the way the autoscaler drives it (one decide per tick, the desired count applied at once, the
-- returned state kept). The replica count must change no more often than the stabilization
-- windows and the rate policies allow:
--   * after a scale-up at t, no scale-down before t + the scale-down window (every recommendation
--     of the window is at least the count it raised to), and symmetrically for the scale-up window;
--   * every scale-down lands on the highest recommendation of its window, never below;
--   * within any policy period the replicas added / removed stay within the policy's allowance;
--   * a load that swings faster than the window leaves the count where the peaks put it.
-- Run by `steward test`; under prove (tests/run runs it with `steward script`) it hands itself
-- to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local hpa = require "steward.scaling.hpa"

local TICK = 15       -- the controller's sync period
local TARGET = 100    -- requests/s per instance

-- A deterministic pseudo-random sequence (Park-Miller), so a failure replays exactly.
local function lcg(seed)
  local s = seed
  return function()
    s = (s * 16807) % 2147483647
    return s / 2147483647
  end
end

-- run(spec, load(t) -> total requests/s, seconds) -> the history of ticks:
--   { t, current, desired, recommended }
local function run(spec, load, seconds, start)
  local current, state = start or 1, nil
  local t0 = clock.now()
  local history = {}
  while clock.now() - t0 < seconds do
    local now = clock.now()
    local obs = { current = current, instances = {}, metrics = { rps = { per_instance = {} } } }
    local per = load(now - t0) / current
    for i = 1, current do
      local id = "api/r1/" .. i
      obs.instances[i] = { id = id, ready = true, phase = "running", started_at = t0 }
      obs.metrics.rps.per_instance[id] = per
    end
    local d
    d, state = hpa.decide(spec, state, obs, now)
    history[#history + 1] = { t = now, current = current, desired = d.desired, recommended = d.recommended }
    current = d.desired
    clock.advance(TICK)
  end
  return history
end

local function changes(history)
  local out = {}
  for _, h in ipairs(history) do
    if h.desired ~= h.current then out[#out + 1] = { t = h.t, from = h.current, to = h.desired } end
  end
  return out
end

-- After a change in one direction, none in the other before `window` seconds.
local function assert_reversals(history, down_window, up_window)
  local last_up, last_down
  for _, c in ipairs(changes(history)) do
    if c.to < c.from then
      if last_up then
        assert.truthy(c.t - last_up >= down_window,
          ("scale-down at %d only %ds after a scale-up (window %ds)"):format(c.t, c.t - last_up, down_window))
      end
      last_down = c.t
    else
      if last_down then
        assert.truthy(c.t - last_down >= up_window,
          ("scale-up at %d only %ds after a scale-down (window %ds)"):format(c.t, c.t - last_down, up_window))
      end
      last_up = c.t
    end
  end
end

-- Every scale-down is to the highest recommendation of the window (strictly after now - window).
local function assert_down_to_window_max(history, window)
  for i, h in ipairs(history) do
    if h.desired < h.current and h.recommended then
      local highest = h.recommended
      for j = i, 1, -1 do
        local r = history[j]
        if r.t <= h.t - window then break end
        if r.recommended and r.recommended > highest then highest = r.recommended end
      end
      assert.truthy(h.desired >= highest, ("scale-down at %d to %d below the window's highest recommendation %d")
        :format(h.t, h.desired, highest))
    end
  end
end

-- Replicas moved in one direction within any period ending at a change.
local function assert_rate(history, direction, period, allowance)
  local list = changes(history)
  for i, c in ipairs(list) do
    local moved = 0
    for j = i, 1, -1 do
      local p = list[j]
      if p.t <= c.t - period then break end
      local delta = p.to - p.from
      if (direction == "up" and delta > 0) or (direction == "down" and delta < 0) then moved = moved + math.abs(delta) end
    end
    assert.truthy(moved <= allowance, ("%d replicas %s within %ds up to %d (allowed %d)")
      :format(moved, direction, period, c.t, allowance))
  end
end

local METRIC = { { name = "rps", type = "pods", target = { type = "average_value", value = TARGET } } }

describe("a square wave faster than the window", function()
  -- 250 <-> 850 requests/s, a period of 2 min: the recommendations swing between 3 and 9.
  local function wave(t) return (t % 120) < 60 and 850 or 250 end

  it("without behavior: one scale-up to the peak, no scale-down while it swings, one when it stops", function()
    local spec = { min_replicas = 1, max_replicas = 20, metrics = METRIC }
    local h = run(spec, function(t) return t < 1800 and wave(t) or 250 end, 2700, 5)
    local c = changes(h)
    assert.same({ c[1].from, c[1].to }, { 5, 9 })
    assert.equal(#c, 2, "one up, one down")
    assert.same({ c[2].from, c[2].to }, { 9, 3 })
    -- the last peak ended at 1800 - 60 + 60 = 1800 s; its recommendations keep 9 for 300 s more
    assert.truthy(c[2].t - h[1].t >= 1800 - 60 + 300, "the scale-down waits for the window")
    assert_reversals(h, 300, 0)
  end)

  it("with a 75 s scale-up window as well: a 60 s peak does not even scale up", function()
    local spec = { min_replicas = 1, max_replicas = 20, metrics = METRIC,
      behavior = { scale_up = { stabilization_window = "75s" }, scale_down = { stabilization_window = "5m" } } }
    local h = run(spec, wave, 1800, 3)
    assert.equal(#changes(h), 0, "the replica count never moves")
  end)
end)

describe("a noisy load on the fake clock", function()
  local function noisy(seed)
    local rnd = lcg(seed)
    local level, next_change = 500, 0
    return function(t)
      if t >= next_change then
        level = 100 + math.floor(rnd() * 1500)
        next_change = t + 15 * (1 + math.floor(rnd() * 8))
      end
      return level
    end
  end

  for _, seed in ipairs { 7, 42, 2026 } do
    it("without behavior (seed " .. seed .. "): the 300 s downscale window holds", function()
      local spec = { min_replicas = 1, max_replicas = 30, metrics = METRIC }
      local h = run(spec, noisy(seed), 4 * 3600, 5)
      assert.truthy(#changes(h) > 0, "the load moves the count at all")
      assert_reversals(h, 300, 0)
      assert_down_to_window_max(h, 300)
    end)

    it("with policies (seed " .. seed .. "): windows and rates hold", function()
      local spec = { min_replicas = 1, max_replicas = 30, metrics = METRIC, behavior = {
        scale_up = { stabilization_window = "60s", policies = { { type = "Pods", value = 2, period = "30s" } } },
        scale_down = { stabilization_window = "180s", policies = { { type = "Pods", value = 1, period = "60s" } } },
      } }
      local h = run(spec, noisy(seed), 4 * 3600, 5)
      assert.truthy(#changes(h) > 0, "the load moves the count at all")
      assert_reversals(h, 180, 60)
      assert_down_to_window_max(h, 180)
      assert_rate(h, "up", 30, 2)
      assert_rate(h, "down", 60, 1)
    end)
  end
end)
