-- Token buckets for per-tenant ingest limits, as pure arithmetic: the caller passes the
-- clock, so the specs run on a fake one and the daemon on time.monotonic.
-- A request is admitted while its tenant's bucket holds at least one token and is then
-- charged its whole cost (the number of events), which may take the bucket below zero: a
-- batch larger than the burst is still admissible, and the debt is paid back before the next
-- request, so over any long window the admitted events stay within burst + rate * seconds.
local type, pairs, tostring = type, pairs, tostring
local ceil, min = math.ceil, math.min

local M = {}

local function check_params(rate, burst)
  if type(rate) ~= "number" or rate ~= rate or rate <= 0 or rate == math.huge then
    error("ratelimit: rate must be a number of tokens per second greater than 0, got " .. tostring(rate), 3)
  end
  if type(burst) ~= "number" or burst ~= burst or burst < 1 or burst == math.huge then
    error("ratelimit: burst must be a number of tokens of at least 1, got " .. tostring(burst), 3)
  end
end

-- new(rate, burst, now) -> bucket, full.
function M.new(rate, burst, now)
  check_params(rate, burst)
  if type(now) ~= "number" then error("ratelimit.new: now must be a number (seconds)", 2) end
  return { rate = rate, burst = burst, tokens = burst, t = now }
end

-- Refills b up to now; a clock that goes back (a fake one reset) refills nothing.
local function refill(b, now)
  local dt = now - b.t
  if dt > 0 then
    b.tokens = min(b.burst, b.tokens + dt * b.rate)
    b.t = now
  end
end

-- retry_after(b, now) -> whole seconds until the bucket holds one token again (RFC 9110's
-- Retry-After is an integer of seconds; rounding up never invites an early retry), 0 when it
-- holds one already.
function M.retry_after(b, now)
  refill(b, now)
  if b.tokens >= 1 then return 0 end
  return ceil((1 - b.tokens) / b.rate)
end

-- admits(b, now) -> whether a request would be admitted now (nothing is charged).
function M.admits(b, now)
  refill(b, now)
  return b.tokens >= 1
end

-- take(b, cost, now) -> true, or false, retry_after (seconds). cost >= 1.
function M.take(b, cost, now)
  if type(cost) ~= "number" or cost < 1 or cost ~= cost then
    error("ratelimit.take: cost must be a number of at least 1, got " .. tostring(cost), 2)
  end
  refill(b, now)
  if b.tokens < 1 then return false, M.retry_after(b, now) end
  b.tokens = b.tokens - cost
  return true
end

-- charge(b, cost, now): takes cost tokens whatever the bucket holds (the rest of a request
-- admitted with take(b, 1, now) once its size is known).
function M.charge(b, cost, now)
  refill(b, now)
  b.tokens = b.tokens - cost
end

-- set(b, rate, burst, now): new parameters for a live bucket (a plan change, a config
-- reload); what it holds is kept, capped at the new burst.
function M.set(b, rate, burst, now)
  check_params(rate, burst)
  refill(b, now)
  b.rate, b.burst = rate, burst
  if b.tokens > burst then b.tokens = burst end
end

-- share(rate, burst, workers) -> the rate and burst of one of `workers` processes: each
-- worker keeps its own buckets (a store round trip per request would cost more than the
-- ingest itself), so each admits 1/N of the tenant's rate and burst (the burst at least 1).
function M.share(rate, burst, workers)
  workers = (type(workers) == "number" and workers >= 1) and workers or 1
  local b = burst / workers
  return rate / workers, b < 1 and 1 or b
end

-- A set of buckets by key (the tenant): limiter() -> L with
--   L:take(key, cost, now, rate, burst) -> true, or false, retry_after
--   L:admits(key, now, rate, burst) -> boolean
--   L:charge(key, cost, now, rate, burst)
-- A bucket untouched for `idle` seconds (default 300) is full again by then anyway, so it is
-- dropped on a sweep: the table does not grow with every tenant ever seen.
local L = {}
L.__index = L

function M.limiter(idle)
  return setmetatable({ buckets = {}, count = 0, idle = idle or 300, swept = nil }, L)
end

local function bucket(l, key, now, rate, burst)
  local b = l.buckets[key]
  if not b then
    b = M.new(rate, burst, now)
    l.buckets[key] = b
    l.count = l.count + 1
  elseif b.rate ~= rate or b.burst ~= burst then
    M.set(b, rate, burst, now)
  end
  if not l.swept then l.swept = now end
  if now - l.swept > l.idle then
    l.swept = now
    for k, x in pairs(l.buckets) do
      if x ~= b and now - x.t > l.idle then l.buckets[k] = nil; l.count = l.count - 1 end
    end
  end
  return b
end

function L:take(key, cost, now, rate, burst)
  return M.take(bucket(self, key, now, rate, burst), cost, now)
end

function L:charge(key, cost, now, rate, burst)
  M.charge(bucket(self, key, now, rate, burst), cost, now)
end

function L:admits(key, now, rate, burst)
  local b = bucket(self, key, now, rate, burst)
  if M.admits(b, now) then return true end
  return false, M.retry_after(b, now)
end

return M
