-- steward.time: clocks, sleep, after/every timers, durations.
local t = require "steward.tap"
local time = require "steward.time"
local task = require "steward.task"

local now = time.now()
t.ok(now > 1.7e9 and now < 4e9, "now is wall-clock seconds since the epoch")
local m1 = time.monotonic()
time.sleep("20ms")
local m2 = time.monotonic()
t.ok(m2 - m1 >= 0.019, "sleep waits at least its duration")
t.ok(m2 >= m1, "monotonic never goes back")

t.is(time.parse_duration("250ms"), 0.25, "250ms")
t.is(time.parse_duration("15m"), 900, "15m")
t.is(time.parse_duration("2h"), 7200, "2h")
t.is(time.parse_duration("1h30m"), 5400, "1h30m")
t.is(time.parse_duration("1.5s"), 1.5, "1.5s")
t.is(time.parse_duration(3), 3, "a number is seconds")
local bad, err = time.parse_duration("10 minutes")
t.ok(bad == nil and err:find("bad duration"), "a bad duration gives nil, err")
t.is(time.parse_duration("10"), nil, "a bare number in a string is refused (unit required)")
t.raises(function() time.sleep("soon") end, "bad duration", "sleep raises on a bad duration")
t.raises(function() time.sleep(-1) end, ">= 0", "sleep refuses negative durations")

-- after: fires once, with its arguments, as a new task.
local fired = {}
local done = task.spawn(function() time.sleep(0.2) end)
local ah = time.after("10ms", function(x, y) fired[#fired + 1] = x .. y end, "a", "b")
t.ok(ah:pending(), "an armed timer is pending")
time.sleep(0.03)
t.is_deeply(fired, { "ab" }, "after runs its function once with its arguments")
t.ok(not ah:pending(), "a fired one-shot timer is no longer pending")
t.is(ah:cancel(), false, "cancelling a fired timer returns false")

local never = false
local ch = time.after("10ms", function() never = true end)
t.is(ch:cancel(), true, "cancelling a pending timer returns true")
time.sleep(0.03)
t.is(never, false, "a cancelled timer never fires")

-- every: repeats until cancelled; overlapping runs are skipped.
local ticks = 0
local eh = time.every("5ms", function() ticks = ticks + 1 end)
while ticks < 3 do time.sleep(0.005) end
eh:cancel()
local at_cancel = ticks
time.sleep(0.03)
t.is(ticks, at_cancel, "every stops after cancel")
t.ok(at_cancel >= 3, "every repeats")

local runs, concurrent, max_concurrent = 0, 0, 0
local slow = time.every("2ms", function()
  runs = runs + 1; concurrent = concurrent + 1
  max_concurrent = math.max(max_concurrent, concurrent)
  time.sleep(0.02)
  concurrent = concurrent - 1
end)
while runs < 2 do time.sleep(0.005) end
slow:cancel()
t.is(max_concurrent, 1, "a tick whose previous run is still going is skipped")

-- A timer whose handle is dropped still fires (fire and forget).
local ff = false
time.after(0.005, function() ff = true end)
collectgarbage(); collectgarbage()
time.sleep(0.03)
t.ok(ff, "a timer fires even when its handle was garbage collected")

-- An error in a timer's task does not stop the runtime.
time.after(0, function() error("timer task fails on purpose") end)
time.sleep(0.01)
t.pass("the runtime survives a failing timer task")

t.raises(function() time.every(0, function() end) end, "interval must be > 0", "every needs a positive interval")
t.raises(function() time.after(1) end, "function expected", "after needs a function")
done:join()
t.done()
