-- What the daemon's background tick does with time: durable timers and cron schedules that
-- fell due become events in the log (exactly once: their ids are deterministic), returned
-- with their seq so the caller can dispatch them.
local log = require "steward.log"
local timers = require "steward.runtime.store.timers"
local schedules = require "steward.runtime.store.schedules"

local M = {}

local SOURCES = { { name = "timers", mod = timers }, { name = "schedules", mod = schedules } }

-- fire(st, now) -> list of events (each with seq). A store error is logged and that source
-- is tried again on the next tick; nothing due is lost.
function M.fire(st, now)
  local fired = {}
  for _, src in ipairs(SOURCES) do
    local list, err = src.mod.fire_due(st, now)
    if not list then
      log.warn("cannot fire due " .. src.name .. "; next tick retries", { error = tostring(err) })
    else
      for _, ev in ipairs(list) do fired[#fired + 1] = ev end
    end
  end
  return fired
end

return M
