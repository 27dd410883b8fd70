-- steward.runtime.store.jobs: enqueue with dedupe keys, claim with leases (expired leases are claimed
-- again), retries with exponential backoff, dead letters and requeue. Store conformance suite.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local jobs = require "steward.runtime.store.jobs"
local task = require "steward.task"
local crypto = require "steward.crypto"

local st, tmp = require("tests.support.test_store").open()
local q = "q-" .. crypto.hex(crypto.random(6))
local now = 1e9

local id1 = assert(jobs.enqueue(st, q, { to = "ops" }, { now = now }))
local id2 = assert(jobs.enqueue(st, q, { to = "dev" }, { now = now, run_at = now + 1e5 }))
local id3, dup = jobs.enqueue(st, q, "keyed", { now = now, key = "k1" })
local id3b, dup2 = jobs.enqueue(st, q, "keyed again", { now = now, key = "k1" })
t.ok(type(id1) == "number" and id1 ~= id2, "enqueue returns ids")
t.ok(dup == nil and id3b == id3 and dup2 == true, "the same key returns the existing job, flagged")
local j = assert(jobs.get(st, id1))
t.ok(j.state == "pending" and j.attempts == 0 and j.max_attempts == 5 and j.payload.to == "ops", "get shows a pending job")

local c = assert(jobs.claim(st, q, 10, "30s", { now = now }))
t.is(#c, 2, "claim takes only due jobs")
t.ok(c[1].id == id1 and c[2].id == id3, "in run_at, id order")
t.ok(c[1].state == "running" and c[1].attempts == 1 and c[1].lease_until == now + 30, "claimed jobs are running with a lease")
t.is(#assert(jobs.claim(st, q, 10, "30s", { now = now + 10 })), 0, "a leased job is not claimed again")
local again = assert(jobs.claim(st, q, 1, "30s", { now = now + 31 }))
t.ok(#again == 1 and again[1].id == id1 and again[1].attempts == 2, "an expired lease is claimable again")

t.is(jobs.complete(st, id3), true, "complete")
t.is(jobs.get(st, id3), nil, "a completed job is gone")
t.is(select(2, jobs.complete(st, id3)), "not found", "completing twice is not found")

-- retries and dead letters: job id1 has max 5 attempts, 2 used
local verdict, run_at = jobs.fail(st, id1, "smtp down", { backoff = 10, jitter = false, now = now + 40 })
t.is(verdict, "retry", "a failure with attempts left retries")
t.is(run_at, now + 40 + 20, "after base * 2^(attempts-1) (attempt 2: 20s)")
j = jobs.get(st, id1)
t.ok(j.state == "pending" and j.last_error == "smtp down" and j.run_at == run_at, "the job is pending again with its error")
t.is(#assert(jobs.claim(st, q, 1, 30, { now = now + 59 })), 0, "not claimable before its backoff ends")
local t3 = now + 60
local expected = { [3] = 40, [4] = 60 } -- 40 then capped at 60
for attempt = 3, 4 do
  local cl = assert(jobs.claim(st, q, 1, 30, { now = t3 }))
  local v, ra = jobs.fail(st, cl[1].id, "still down", { backoff = 10, max_backoff = 60, jitter = false, now = t3 })
  t.ok(v == "retry" and ra == t3 + expected[attempt], "attempt " .. attempt .. " backs off " .. expected[attempt] .. "s")
  t3 = ra
end
local cl = assert(jobs.claim(st, q, 1, 30, { now = t3 }))
t.is(cl[1] and cl[1].attempts, 5, "fifth attempt")
t.is(jobs.fail(st, id1, "gave up", { now = t3 }), "dead", "the last failure dead-letters the job")
j = jobs.get(st, id1)
t.ok(j.state == "dead" and j.last_error == "gave up", "a dead job keeps its last error")
t.is(#assert(jobs.claim(st, q, 10, 30, { now = t3 + 1e6 })) , 1, "dead jobs are not claimed (only the delayed one is)")

-- jitter stays within [d/2, d]
local within = true
for _ = 1, 200 do
  local d = jobs.backoff(3, 10, 3600)
  if d < 20 or d > 40 then within = false end
end
t.ok(within, "jittered backoff stays between half and the full delay")

local dl = assert(jobs.dead_letters(st, { queue = q }))
t.ok(#dl.jobs == 1 and dl.jobs[1].id == id1 and dl.next_cursor == nil, "dead_letters lists it")
t.is(jobs.requeue(st, id1, { now = t3 + 5 }), true, "requeue a dead job")
j = jobs.get(st, id1)
t.ok(j.state == "pending" and j.attempts == 0 and j.run_at == t3 + 5, "requeued: pending, attempts reset")
t.is(select(2, jobs.requeue(st, id1)), "not found", "requeue of a job that is not dead is not found")
t.is(select(2, jobs.fail(st, id1, "x")), "not found", "fail of a job that is not running is not found")

-- dead letter paging
for i = 1, 5 do
  local id = assert(jobs.enqueue(st, q .. "-dl", i, { now = now, max_attempts = 1 }))
  assert(jobs.claim(st, q .. "-dl", 1, 30, { now = now }))
  assert(jobs.fail(st, id, "e" .. i, { now = now }) == "dead")
end
local page1 = assert(jobs.dead_letters(st, { queue = q .. "-dl", limit = 3 }))
local page2 = assert(jobs.dead_letters(st, { queue = q .. "-dl", limit = 3, cursor = page1.next_cursor }))
t.ok(#page1.jobs == 3 and page1.next_cursor and #page2.jobs == 2 and page2.next_cursor == nil, "dead letters page with a cursor")
t.is(page2.jobs[2].last_error, "e5", "in id order")

local stats = assert(jobs.stats(st))
t.is_deeply(stats[q], { pending = 1, running = 1, dead = 0 }, "stats counts by state for a queue")
t.is(stats[q .. "-dl"].dead, 5, "and per queue")

-- concurrent claims never hand out the same job
local cq = q .. "-c"
for i = 1, 30 do jobs.enqueue(st, cq, i, { now = now }) end
local got = {}
local hs = {}
for w = 1, 3 do
  hs[w] = task.spawn(function()
    local mine = {}
    for _ = 1, 10 do
      for _, jb in ipairs(assert(jobs.claim(st, cq, 2, 60, { now = now }))) do mine[#mine + 1] = jb.id end
    end
    got[w] = mine
  end)
end
for w = 1, 3 do hs[w]:join() end
local seen, dupes, n = {}, 0, 0
for w = 1, 3 do for _, id in ipairs(got[w]) do n = n + 1; if seen[id] then dupes = dupes + 1 end; seen[id] = true end end
t.is(n, 30, "three concurrent workers claim all 30 jobs")
t.is(dupes, 0, "no job is claimed twice")

t.raises(function() jobs.enqueue(st, "", 1) end, "queue", "an empty queue name raises")
t.raises(function() jobs.claim(st, q, 0, 30) end, "jobs.claim: n", "claim n < 1 raises")
t.raises(function() jobs.enqueue(st, q, 1, { max_attempts = 0 }) end, "max_attempts", "max_attempts < 1 raises")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
