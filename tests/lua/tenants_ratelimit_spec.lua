-- steward.tenants.ratelimit: token-bucket arithmetic on a fake clock (plain numbers), the
-- per-worker share and the bucket set by tenant.
local t = require "steward.tap"
local rl = require "steward.tenants.ratelimit"

-- A full bucket admits a burst, then one request per 1/rate seconds.
local b = rl.new(10, 20, 1000)
local admitted = 0
for _ = 1, 25 do if rl.take(b, 1, 1000) then admitted = admitted + 1 end end
t.is(admitted, 20, "a full bucket admits its burst (20 of 25 at one instant)")
local ok, retry = rl.take(b, 1, 1000)
t.ok(not ok and retry == 1, "the next one is refused with Retry-After 1 (0.1 s rounded up to whole seconds)")
t.ok(not rl.take(b, 1, 1000.09), "still refused 0.09 s later")
t.ok(rl.take(b, 1, 1000.1), "admitted after 1/rate seconds")

-- Over a long window the admitted count is burst + rate * seconds, whatever the pattern.
b = rl.new(100, 200, 0)
admitted = 0
for i = 0, 9999 do -- 10 s, one attempt per millisecond: 10x the rate
  if rl.take(b, 1, i / 1000) then admitted = admitted + 1 end
end
t.ok(admitted >= 200 + 100 * 9.999 - 1 and admitted <= 200 + 100 * 10, "10 s of 1000/s against 100/s burst 200: " .. admitted .. " admitted (~1200)")

-- A batch is charged whole and may take the bucket below zero; the debt delays the next one.
b = rl.new(100, 200, 0)
t.ok(rl.take(b, 500, 0), "a batch of 500 on a bucket of 200 is admitted (it holds at least one token)")
ok, retry = rl.take(b, 1, 0)
t.ok(not ok and retry == 4, "and the debt (-300) is paid before the next: Retry-After 4 s (301 tokens at 100/s), got " .. tostring(retry))
t.ok(not rl.take(b, 1, 3), "refused at 3 s")
t.ok(rl.take(b, 1, 3.02), "admitted once one token is back (3.02 s)")

-- The refill stops at the burst; a clock going back refills nothing.
b = rl.new(1, 5, 0)
for _ = 1, 5 do rl.take(b, 1, 0) end
t.ok(rl.admits(b, 3600) and b.tokens == 5, "an hour idle refills to the burst, not beyond")
for _ = 1, 5 do rl.take(b, 1, 3600) end
t.ok(not rl.admits(b, 10), "a clock that goes back refills nothing")
t.is(rl.retry_after(b, 3600), 1, "retry_after rounds up")

-- Parameters change on a live bucket without refilling it.
b = rl.new(10, 100, 0)
rl.take(b, 50, 0)
rl.set(b, 10, 20, 0)
t.is(b.tokens, 20, "a smaller burst caps what the bucket holds")
rl.set(b, 5, 200, 0)
t.is(b.tokens, 20, "a larger burst does not fill it")

-- Misuse raises, naming the argument.
t.raises(function() rl.new(0, 10, 0) end, "rate must be", "rate 0 raises")
t.raises(function() rl.new(10, 0.5, 0) end, "burst must be", "burst below 1 raises")
t.raises(function() rl.new(10, 10) end, "now must be a number", "a missing clock raises")
t.raises(function() rl.take(rl.new(1, 1, 0), 0, 0) end, "cost must be", "cost 0 raises")

-- The per-worker share: 4 workers each admit a quarter; the burst never below 1.
local r, bu = rl.share(100, 200, 4)
t.ok(r == 25 and bu == 50, "100/s burst 200 over 4 workers: 25/s burst 50 each")
r, bu = rl.share(2, 2, 8)
t.ok(r == 0.25 and bu == 1, "a burst smaller than the workers is 1 per worker")
r, bu = rl.share(100, 200, nil)
t.ok(r == 100 and bu == 200, "one worker by default")

-- Buckets by tenant: one tenant's flood leaves another's bucket full.
local l = rl.limiter(60)
for _ = 1, 1000 do l:take("noisy", 1, 0, 10, 20) end
t.ok(not l:take("noisy", 1, 0, 10, 20), "the noisy tenant is refused")
t.ok(l:take("quiet", 1, 0, 10, 20), "the quiet tenant is admitted")
local adm, ra = l:admits("noisy", 0, 10, 20)
t.ok(adm == false and ra >= 1, "admits() says no with a retry time, charging nothing")
t.ok(l:take("noisy", 1, 0, 1000, 20) == false, "a rate change keeps the debt")
t.is(l.count, 2, "two buckets")
t.ok(l:take("noisy", 1, 1000, 10, 20), "the debt is paid in time")
t.ok(l.buckets.quiet == nil and l.count == 1, "a bucket idle longer than the sweep age is dropped")

-- charge: the rest of an admitted request, taken whatever the bucket holds.
b = rl.new(10, 10, 0)
t.ok(rl.take(b, 1, 0), "a request admitted at one token")
rl.charge(b, 49, 0)
t.is(b.tokens, -40, "and charged its 50 events once its size is known")
t.is(rl.retry_after(b, 0), 5, "Retry-After 5 s: 41 tokens at 10/s")

t.done()
