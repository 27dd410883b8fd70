-- steward.load.histogram: latencies in log-spaced buckets (1 % wide, as HdrHistogram keeps a
-- fixed relative precision), so an hour at 2000 requests a second costs a few thousand
-- counters instead of millions of samples. A percentile is its bucket's upper bound (at most
-- 1 % above the true value), never above the exact maximum.
local log, ceil, pairs, ipairs, sort, setmetatable = math.log, math.ceil, pairs, ipairs, table.sort, setmetatable

local M = {}

local MIN = 1e-6 -- one microsecond: below it everything is one bucket
local STEP = log(1.01)

local H = {}
H.__index = H

function M.new()
  return setmetatable({ buckets = {}, n = 0, sum = 0, min = nil, max = nil }, H)
end

function H:add(v)
  if v < 0 then v = 0 end
  local i = v <= MIN and 0 or ceil(log(v / MIN) / STEP)
  local b = self.buckets
  b[i] = (b[i] or 0) + 1
  self.n, self.sum = self.n + 1, self.sum + v
  if not self.min or v < self.min then self.min = v end
  if not self.max or v > self.max then self.max = v end
end

-- percentiles({50, 90, 99}) -> { [50] = v, ... } (seconds); nil values when empty.
function H:percentiles(ps)
  local out = {}
  if self.n == 0 then return out end
  local keys = {}
  for k in pairs(self.buckets) do keys[#keys + 1] = k end
  sort(keys)
  for _, p in pairs(ps) do
    local rank = ceil(p / 100 * self.n)
    if rank < 1 then rank = 1 end
    local seen = 0
    for _, k in ipairs(keys) do
      seen = seen + self.buckets[k]
      if seen >= rank then
        local v = k == 0 and MIN or MIN * (1.01 ^ k)
        if v > self.max then v = self.max end
        if v < self.min then v = self.min end
        out[p] = v
        break
      end
    end
  end
  return out
end

function H:mean() return self.n > 0 and self.sum / self.n or nil end

return M
