-- The five-minute tour: what the runtime does, in one script.
--   build/steward script docs/examples/tour.lua
local task = require "steward.task"
local time = require "steward.time"
local json = require "steward.json"
local log = require "steward.log"
local pretty = require "steward.pretty"

print("steward tour: tasks, timers, JSON, logs\n")

-- Tasks: straight-line code that waits without blocking anything else.
local t0 = time.monotonic()
local workers = {}
for i = 1, 3 do
  workers[i] = task.spawn(function()
    time.sleep(0.1 * i)
    return ("worker %d done"):format(i)
  end)
end
for i = 1, 3 do print(select(2, workers[i]:join())) end
print(("three sleeps of 0.1-0.3 s took %.2f s together\n"):format(time.monotonic() - t0))

-- Timers.
local n = 0
local tick = time.every("50ms", function() n = n + 1 end)
time.sleep("275ms")
tick:cancel()
print(("every(50ms) ticked %d times in 275ms\n"):format(n))

-- A runaway task is cancelled by its timeout; the runtime carries on.
local slow = task.spawn({ timeout = "100ms" }, function() time.sleep("10s") end)
print("slow task:", slow:join())

-- JSON with arrays that round-trip and a real null.
local ev = json.decode('{"type":"deploy.requested","tags":[],"owner":null}')
print("decoded:", pretty.format(ev))
print("encoded:", json.encode(ev), "\n")

log.info("tour finished", { tasks = 5, ticks = n })
