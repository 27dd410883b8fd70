-- What the supervisor does when an instance exits, as a pure function of the exit, the
-- instance's start history and the service's `restart` settings, after systemd's
-- Restart= / RestartSec= / StartLimitBurst= / StartLimitIntervalSec= (docs/deploy/services.md):
--   policy "no": never restarted; "always": restarted whatever the exit; "on-failure": restarted
--   after an unclean exit — a non-zero code, a signal other than the clean ones (HUP, INT,
--   TERM, PIPE), a failed liveness probe, or an exit we could not observe (an adopted process).
--   The delay doubles from `delay` to `delay_max` while the instance keeps failing, and starts
--   over once a run outlived `interval`. More than `burst` starts within `interval` and the
--   instance is `failed`: no more restarts until someone starts it again.
local ipairs = ipairs

local M = {}

local CLEAN_SIGNALS = { [1] = true, [2] = true, [15] = true, [13] = true } -- HUP INT TERM PIPE

function M.new() return { starts = {}, streak = 0 } end

local function prune(hist, now, interval)
  local kept = {}
  for _, t in ipairs(hist.starts) do
    if t > now - interval then kept[#kept + 1] = t end
  end
  hist.starts = kept
end

-- started(hist, now, restart): a start happened now (the first one or a restart).
function M.started(hist, now, restart)
  prune(hist, now, restart.interval)
  hist.starts[#hist.starts + 1] = now
end

-- clean(exit) -> whether systemd would call this exit clean
function M.clean(exit)
  if exit.liveness then return false end
  if exit.code == nil and exit.signal == nil then return false end -- not observed
  if exit.signal then return CLEAN_SIGNALS[exit.signal] == true end
  return exit.code == 0
end

-- decide(hist, exit, now, restart) -> {action = "restart", delay = s} | {action = "stop"} |
-- {action = "failed", reason = "..."}
-- exit: {code, signal, liveness = bool, stopped = bool (we stopped it), uptime = seconds}
function M.decide(hist, exit, now, restart)
  if exit.stopped then return { action = "stop", reason = "stopped" } end
  local clean = M.clean(exit)
  if restart.policy == "no" or (restart.policy == "on-failure" and clean) then
    return { action = "stop", reason = clean and "exited cleanly" or "restart policy no" }
  end
  if (exit.uptime or 0) >= restart.interval then hist.streak = 0 end
  local delay = restart.delay * 2 ^ hist.streak
  if delay > restart.delay_max then delay = restart.delay_max end
  -- The restart would be one more start inside the window: refused past the burst.
  prune(hist, now + delay, restart.interval)
  if #hist.starts >= restart.burst then
    return { action = "failed", reason = ("start limit hit: %d starts within %gs"):format(#hist.starts, restart.interval) }
  end
  hist.streak = hist.streak + 1
  return { action = "restart", delay = delay }
end

return M
