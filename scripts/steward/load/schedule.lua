-- steward.load.schedule: when each request of a load run is sent, as seconds from the start.
-- Pure (no clock, no I/O): given a shape, the send times are fixed in advance, which is what
-- makes the generator open-loop and its specs exact.
--
-- For a shape, the k-th request (k = 1, 2, ...) goes at the time t where the requests the
-- shape asks for over [0, t] (the integral of its rate) reach k - 1/2: a constant 10/s sends
-- at 0.05, 0.15, ..., and a shape asking for N requests in all sends round(N) of them. The
-- rate is clamped to max_rate first, and every schedule (recorded traffic too) then passes a
-- sliding-window bound: a request is delayed until it is the max_rate-th in the second that
-- ends with it, so no window of one second ever holds more than max_rate sends.
local shape_mod = require "steward.load.shape"

local floor, sqrt, abs, ipairs, error, type, setmetatable =
  math.floor, math.sqrt, math.abs, ipairs, error, type, setmetatable

local M = {}

local segment_count, segment_rate = shape_mod.segment_count, shape_mod.segment_rate

-- The offset in a segment at which it has asked for c requests (0 < c < its total).
local function invert(seg, c)
  if seg.kind == "linear" then
    local a, b = seg.a, seg.b
    local disc = a * a + 2 * b * c
    if disc < 0 then disc = 0 end
    -- 2c / (a + sqrt(a^2 + 2bc)) is the root of b/2 t^2 + a t = c without cancellation.
    local t = 2 * c / (a + sqrt(disc))
    if t > seg.d then t = seg.d end
    return t
  end
  -- A cosine cycle: Newton's method kept inside a bisection bracket (the count is monotone).
  local lo, hi = 0, seg.d
  local total = segment_count(seg, seg.d)
  local t = seg.d * c / total
  for _ = 1, 200 do
    local f = segment_count(seg, t) - c
    if abs(f) < 1e-10 then break end
    if f > 0 then hi = t else lo = t end
    if hi - lo < 1e-13 then break end
    local r = segment_rate(seg, t)
    local nt = r > 0 and t - f / r or nil
    if not nt or nt <= lo or nt >= hi then nt = (lo + hi) / 2 end
    t = nt
  end
  return t
end
M.invert = invert

local function check_opts(opts, fname)
  opts = opts or {}
  local m = opts.max_rate
  if m ~= nil and (type(m) ~= "number" or m ~= floor(m) or m < 1) then
    error(fname .. ": max_rate: integer >= 1 expected", 3)
  end
  if opts.limit ~= nil and (type(opts.limit) ~= "number" or opts.limit < 0) then
    error(fname .. ": limit: seconds >= 0 expected", 3)
  end
  return opts
end

-- The sliding-window bound: ring holds the last max_rate send times.
local function windowed(max_rate)
  if not max_rate then return function(t) return t, false end end
  local ring, n = {}, 0
  return function(t)
    local slot = n % max_rate + 1
    local prev = ring[slot] -- the send max_rate requests back
    local delayed = false
    -- A shortfall of rounding size (a clamped rate sends exactly max_rate a second) is
    -- aligned without counting as a delay.
    if prev and t < prev + 1 then t, delayed = prev + 1, t < prev + 1 - 1e-6 end
    ring[slot] = t
    n = n + 1
    return t, delayed
  end
end

-- Iterator object over a list of segments {seg, start, base, total, phase}.
local Sched = {}
Sched.__index = Sched

-- next() -> t, phase, delayed | nil when the schedule is over.
function Sched:next()
  if self.over then return nil end
  local k = self.k + 1
  local c = k - 0.5
  local segs, j = self.segs, self.j
  while segs[j] and c >= segs[j].base + segs[j].total do j = j + 1 end
  self.j = j
  local s = segs[j]
  if not s then self.over = true; return nil end
  local t = s.start + invert(s.seg, c - s.base)
  local delayed
  t, delayed = self.window(t)
  if self.limit and t >= self.limit then self.over = true; return nil end
  self.k = k
  if delayed then self.delayed = self.delayed + 1 end
  return t, s.phase, delayed
end

-- new(shape, {max_rate =, limit =}) -> schedule; limit (seconds) ends it early.
function M.new(shape, opts)
  opts = check_opts(opts, "schedule.new")
  local segs, start, base = {}, 0, 0
  for _, ph in ipairs(shape.phases) do
    for _, seg in ipairs(ph.segments) do
      for _, piece in ipairs(shape_mod.cap(seg, opts.max_rate)) do
        local total = segment_count(piece, piece.d)
        if total > 0 then
          segs[#segs + 1] = { seg = piece, start = start, base = base, total = total, phase = ph.index }
        end
        start, base = start + piece.d, base + total
      end
    end
  end
  return setmetatable({ segs = segs, j = 1, k = 0, delayed = 0, limit = opts.limit,
    window = windowed(opts.max_rate), planned = floor(base + 0.5), duration = start }, Sched)
end

local Times = {}
Times.__index = Times

function Times:next()
  if self.over then return nil end
  local k = self.k + 1
  local rec = self.list[k]
  if not rec then self.over = true; return nil end
  local t, delayed = self.window(rec.t)
  if self.limit and t >= self.limit then self.over = true; return nil end
  self.k = k
  if delayed then self.delayed = self.delayed + 1 end
  return t, 1, delayed, rec
end

-- replay(records, {max_rate =, limit =}) -> schedule over records sorted by their
-- relative time `t` (seconds, already divided by the speed); next() also returns the record.
function M.replay(records, opts)
  opts = check_opts(opts, "schedule.replay")
  local last = records[#records]
  return setmetatable({ list = records, k = 0, delayed = 0, limit = opts.limit,
    window = windowed(opts.max_rate), planned = #records, duration = last and last.t or 0 }, Times)
end

-- collect(schedule) -> { {t, phase}, ... } (specs, and counting what an interrupted run left).
function M.collect(s)
  local out = {}
  while true do
    local t, phase = s:next()
    if not t then return out end
    out[#out + 1] = { t, phase }
  end
end

return M
