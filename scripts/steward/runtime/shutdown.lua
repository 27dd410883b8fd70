-- steward.runtime.shutdown: the daemon's "stopping" signal for waits that a restart would redo anyway.
-- Retry back-offs (dispatch's between handler runs, notify's between sends) sleep through
-- shutdown.sleep, which ends as soon as the daemon begins to stop: SIGTERM then does not wait
-- out a back-off of up to a minute, and the unfinished handling runs again after the restart.
local task = require "steward.task"
local time = require "steward.time"

local type, pairs, ipairs = type, pairs, ipairs

local M = {}

local stopping = false
local sleeps = {} -- entry -> true: each sleep in progress ({h = its task})

-- sleep(seconds) -> true after the whole time, false when the daemon began to stop (at once
-- if it already has). Only from inside a task.
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("shutdown.sleep: seconds: number expected, got " .. type(seconds), 2)
  end
  if stopping then return false end
  -- The sleep is a task of its own so that begin() can cancel it without cancelling the
  -- caller. It also deregisters itself: if the caller is cancelled (a handler timeout)
  -- while it waits, the sleep ends on its own or at begin(), never outlives the daemon.
  local entry = {}
  sleeps[entry] = true
  entry.h = task.spawn({ name = "shutdown.sleep" }, function()
    time.sleep(seconds)
    sleeps[entry] = nil
  end)
  local slept = entry.h:join()
  sleeps[entry] = nil
  return slept == true and not stopping
end

-- begin(): the daemon is stopping; every sleep in progress and every later one ends at once.
function M.begin()
  stopping = true
  local list = {}
  for entry in pairs(sleeps) do list[#list + 1] = entry end
  sleeps = {}
  for _, entry in ipairs(list) do
    if entry.h then entry.h:cancel("stopping") end
  end
end

-- stopping() -> true once begin() was called.
function M.stopping() return stopping end

return M
