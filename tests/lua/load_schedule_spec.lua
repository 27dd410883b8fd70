-- steward.load.schedule: given a shape, the send times are exactly the expected ones (the
-- k-th request where the shape has asked for k - 1/2, computed here independently), and the
-- --max-rate cap holds in every second, aligned or sliding.
local t = require "steward.tap"
local shape = require "steward.load.shape"
local schedule = require "steward.load.schedule"

local function times(spec, opts)
  local s = schedule.new(assert(shape.parse_text(spec)), opts)
  return schedule.collect(s), s
end

local function all_near(got, want, eps)
  if #got ~= #want then return false, ("%d times, %d expected"):format(#got, #want) end
  for i = 1, #want do
    if math.abs(got[i][1] - want[i]) > eps then return false, ("send %d at %.12f, expected %.12f"):format(i, got[i][1], want[i]) end
  end
  return true
end

-- Constant: k - 1/2 over the rate.
local got = times("hold:10/1s")
local want = {}
for k = 1, 10 do want[k] = (k - 0.5) / 10 end
t.ok(all_near(got, want, 1e-12), "hold:10/1s sends at 0.05, 0.15, ..., 0.95")

-- Ramp from 0: the count over [0, t] is b t^2 / 2, so t_k = sqrt(2 (k - 1/2) / b).
got = times("ramp:0-200/30s")
want = {}
local b = 200 / 30
for k = 1, 3000 do want[k] = math.sqrt(2 * (k - 0.5) / b) end
t.ok(all_near(got, want, 1e-9), "ramp:0-200/30s: 3000 sends at sqrt(2(k-1/2)/b)")

-- Ramp down from 100 to 0 over 10s: 500 requests; count(t) = 100 t - 5 t^2.
got = times("ramp:100-0/10s")
want = {}
for k = 1, 500 do want[k] = (100 - math.sqrt(10000 - 20 * (k - 0.5))) / 10 end
t.ok(all_near(got, want, 1e-9), "a falling ramp is inverted exactly too")

-- Pauses and phase boundaries.
got = times("hold:1/2s,pause:5s,hold:1/2s")
t.ok(all_near(got, { 0.5, 1.5, 7.5, 8.5 }, 1e-12), "a pause sends nothing and shifts what follows")
t.is_deeply({ got[1][2], got[2][2], got[3][2], got[4][2] }, { 1, 1, 3, 3 }, "each send knows its phase")
got = times("hold:0.5/1s,hold:0.5/1s")
t.ok(#got == 1 and math.abs(got[1][1] - 1) < 1e-12 and got[1][2] == 2,
  "fractions carry across phases: two half requests make one, at the boundary, in the second phase")

-- The composed example: per-phase totals are the integrals.
local s
got, s = times("ramp:0-200/30s,hold:200/20s,step:800/10s,sine:100-400/60s*3")
local per = { 0, 0, 0, 0 }
for _, x in ipairs(got) do per[x[2]] = per[x[2]] + 1 end
t.is_deeply(per, { 3000, 4000, 8000, 45000 }, "composed shape: 3000 + 4000 + 8000 + 45000 sends")
t.is(s.planned, 60000, "planned is the rounded integral of the whole shape")
local ok = true
for i = 2, #got do if got[i][1] < got[i - 1][1] then ok = false end end
t.ok(ok, "send times never go back")

-- Sine: the count over [0, t] of low + amp (1 - cos(w t)) / 2 is low t + amp/2 (t - sin(w t)/w).
got = times("sine:100-400/60s*3")
local w = 2 * math.pi / 60
local worst = 0
for k, x in ipairs(got) do
  local tt = x[1]
  local c = 100 * tt + 150 * (tt - math.sin(w * tt) / w)
  -- within one cycle the segment restarts, so the count is the same function (whole periods)
  worst = math.max(worst, math.abs(c - (k - 0.5)))
end
t.is(#got, 45000, "three sine cycles of mean 250/s over 60s: 45000 sends")
t.ok(worst < 1e-6, ("each sine send is where the count reaches k - 1/2 (worst %.2g)"):format(worst))

-- The cap, in every aligned second and in every sliding one.
local function per_second(list)
  local c, max = {}, 0
  for _, x in ipairs(list) do
    local sec = math.floor(x[1])
    c[sec] = (c[sec] or 0) + 1
    if c[sec] > max then max = c[sec] end
  end
  return max
end
local function sliding_ok(list, m)
  for i = m + 1, #list do
    if list[i][1] - list[i - m][1] < 1 - 1e-9 then return false, i end
  end
  return true
end

got, s = times("hold:3000/2s", { max_rate = 2000 })
t.is(#got, 4000, "hold:3000/2s with --max-rate 2000 sends 2000 a second")
t.is(per_second(got), 2000, "no aligned second holds more than max_rate")
t.ok(sliding_ok(got, 2000), "no sliding one-second window holds more than max_rate")
t.is(s.delayed, 0, "a clamped rate needs no delaying")

got = times("ramp:0-4000/4s", { max_rate = 1000 })
t.is(#got, 3500, "a ramp through the cap: 500 below it, then 1000/s for 3s")
t.ok(per_second(got) <= 1000 and sliding_ok(got, 1000), "the ramp keeps the cap in every second")

got = times("sine:0-3000/10s", { max_rate = 2000 })
-- The capped integral, by Simpson's rule on min(2000, 1500 (1 - cos)).
local n, h, acc = 200000, 10 / 200000, 0
for i = 0, n do
  local x = i * h
  local r = math.min(2000, 1500 * (1 - math.cos(2 * math.pi * x / 10)))
  acc = acc + r * ((i == 0 or i == n) and 1 or (i % 2 == 1 and 4 or 2))
end
acc = acc * h / 3
t.ok(math.abs(#got - acc) <= 1, ("a capped sine sends its capped integral (%d for %.3f)"):format(#got, acc))
t.ok(per_second(got) <= 2000 and sliding_ok(got, 2000), "the capped sine keeps the cap in every second")

for _, spec in ipairs({ "spike:100-5000/6s/2s", "ramp:0-2500/5s,sine:0-2600/4s*2,hold:2100/1.5s" }) do
  got = times(spec, { max_rate = 2000 })
  t.ok(per_second(got) <= 2000 and sliding_ok(got, 2000), spec .. ": the cap holds in every second")
end

-- The duration bound.
got = times("hold:10/10s", { limit = 2.5 })
t.is(#got, 25, "limit 2.5s stops a 10s shape after 25 sends")
t.ok(got[#got][1] < 2.5, "all before the limit")

-- Recorded times: the cap delays, never drops.
local recs = {}
for i = 1, 10 do recs[i] = { t = 0, path = "/" .. i } end
s = schedule.replay(recs, { max_rate = 4 })
got = {}
while true do
  local tt, phase, delayed, rec = s:next()
  if not tt then break end
  got[#got + 1] = { tt, rec.path, delayed }
end
t.is_deeply({ got[1][1], got[4][1], got[5][1], got[8][1], got[9][1], got[10][1] }, { 0, 0, 1, 1, 2, 2 },
  "10 requests at once with max_rate 4: 4 now, 4 a second later, 2 after that")
t.is(got[10][2], "/10", "in their recorded order")
t.is(s.delayed, 6, "the delayed ones are counted")
s = schedule.replay({ { t = 0 }, { t = 1 }, { t = 2 } }, { limit = 1.5 })
t.is(#schedule.collect(s), 2, "a replay stops at the limit")

t.raises(function() schedule.new(assert(shape.parse_text("hold:1/1s")), { max_rate = 0 }) end,
  "schedule.new: max_rate: integer >= 1 expected", "max_rate 0 is misuse")
t.raises(function() schedule.replay({}, { max_rate = 1.5 }) end, "max_rate: integer", "a fractional max_rate is misuse")

t.done()
