-- A bucket lease that lapses while its events are being skipped (steward.runtime.cluster): the
-- mark must stay below every event the instance stops handling, or the next owner's rescan —
-- which starts from the lowest mark — passes it and nobody ever runs it. Seen in the billing
-- bench on PostgreSQL: a loop saturated past its lease margin dropped queued events, then lost
-- the lease with a cap above them (23,340 of 1,000,000 acknowledged usage events recorded).
local t = require "steward.tap"
local time = require "steward.time"
local cluster = require "steward.runtime.cluster"

-- A dispatcher that reports what it holds in flight, and a store that answers the scan.
local function fake(rows)
  local d = { inflight = {} }
  function d:low_mark(high)
    local low = high
    for seq in pairs(self.inflight) do if seq - 1 < low then low = seq - 1 end end
    return low
  end
  local st = { backend = function() return "sqlite" end }
  function st:query(sql)
    if sql:find("FROM events WHERE seq >", 1, true) then local r = rows; rows = {}; return r end
    return {}
  end
  return d, st
end

local function bucket_with_key(c, policy)
  for k = 1, 1000 do
    local key = "k" .. k
    if c.bucket_of(policy, key) == 7 then return key end
  end
end

-- 1. A queued event dropped by the runner after the lease's local deadline passed.
do
  local d, st = fake({})
  local c = cluster.new({ store = st, dispatch = d, pid = 1 })
  c.high = 100
  c.owned[7] = time.monotonic() - 1 -- the local deadline passed; the loop has not noticed yet
  d.inflight[50] = true             -- event 50 of bucket 7 is queued
  local runs = c:may_run(7)         -- the runner asks before running it ...
  d.inflight[50] = nil              -- ... and drops it: its lease is gone
  c:lose(7)                         -- what the loop's next step does for a lapsed lease
  t.is(runs, false, "a lapsed lease may not run")
  t.ok(c.releasing[7] and c.releasing[7] <= 49,
    "the lost bucket's cap stays below the dropped event 50 (cap " .. tostring(c.releasing[7]) .. ")")
end

-- 2. An event scanned after the lease's local deadline passed is not queued, and the cap is
-- below it although the scan position moved past it.
do
  local rows = {}
  local d, st = fake(rows)
  local c = cluster.new({ store = st, dispatch = d, pid = 1 })
  local key = assert(bucket_with_key(c, "p"), "a key in bucket 7")
  rows[1] = { seq = 11, id = "e11", type = "x", tenant = "", time = 0, source = "t", data = '{"k":"' .. key .. '"}',
              received = 0, depth = 0 }
  c.high = 10
  c.owned[7] = time.monotonic() - 1
  local offered
  function d:offer(ev, takes)
    offered = ev.seq
    local b = c.bucket_of("p", ev.data.k)
    if takes(b) then self.inflight[ev.seq] = true end
  end
  c:scan()
  for b, dl in pairs(c.owned) do if dl <= time.monotonic() then c:lose(b) end end
  t.is(offered, 11, "the scan offered event 11")
  t.is(c.high, 11, "... and moved past it")
  t.ok(c.releasing[7] and c.releasing[7] <= 10,
    "the lost bucket's cap stays below the skipped event 11 (cap " .. tostring(c.releasing[7]) .. ")")
end

t.done()
