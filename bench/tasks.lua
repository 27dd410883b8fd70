-- Measures the task machinery: spawn + run to completion, suspend/resume through
-- time.sleep(0), and through a real timer. Prints key=value lines for bench/run.
local task = require "steward.task"
local time = require "steward.time"

local seconds = tonumber(arg[1]) or 2

local function rate(name, fn)
  local n, t0 = 0, time.monotonic()
  local deadline = t0 + seconds
  while time.monotonic() < deadline do n = n + fn() end
  local r = n / (time.monotonic() - t0)
  io.write(string.format("%s=%.0f\n", name, r))
  io.stdout:flush()
end

local noop = function() end
-- spawn a task that runs to its end at once: the cost of one coroutine task.
rate("task_spawn_per_s", function()
  for _ = 1, 1000 do task.spawn(noop) end
  return 1000
end)

-- spawn a task that suspends once and is resumed by the loop, then joined.
rate("task_spawn_resume_per_s", function()
  local hs = {}
  for i = 1, 1000 do hs[i] = task.spawn(function() time.sleep(0) end) end
  for i = 1, 1000 do hs[i]:join() end
  return 1000
end)

-- one task yielding to the loop and being resumed.
rate("sleep0_round_trips_per_s", function()
  for _ = 1, 1000 do time.sleep(0) end
  return 1000
end)

-- 64 tasks interleaving through the loop.
rate("sleep0_64_tasks_per_s", function()
  local hs = {}
  for i = 1, 64 do hs[i] = task.spawn(function() for _ = 1, 100 do time.sleep(0) end end) end
  for i = 1, 64 do hs[i]:join() end
  return 6400
end)
