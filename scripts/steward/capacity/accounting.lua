-- steward.capacity.accounting: instance-seconds from the supervisor's accounting. Each
-- instance's life is read back from the durable event log: service.instance.started opens an
-- interval, service.instance.exited closes it; one that is still open closes at its next start
-- (an exit the daemon did not see: it was down) or, while the supervisor still runs the
-- instance, now. Intervals are clipped to the period asked for.
local events = require "steward.runtime.events"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local M = {}

local SOURCE = "steward.deploy.supervisor"

-- intervals(st, from, to, opts) -> {{service, revision, index, from, to}, ...} | nil, err.
-- opts.running(service, revision, index) -> whether the supervisor runs it now;
-- opts.now: the current time (an open interval of a running instance ends there).
function M.intervals(st, from, to, opts)
  opts = opts or {}
  local now = opts.now or to
  local running = opts.running or function() return false end
  local open, out = {}, {}
  local function close(k, at)
    local o = open[k]
    open[k] = nil
    if not o then return end
    local a, b = o.from > from and o.from or from, at < to and at or to
    if b > a then out[#out + 1] = { service = o.service, revision = o.revision, index = o.index, from = a, to = b } end
  end
  local ok, err = pcall(function()
    -- Every event, also after `to`: an exit after the period closes an interval inside it.
    for ev in events.replay(st, { type = "service.instance.*" }) do
      local d = ev.data
      -- The supervisor's own events only: another source's service.instance.* is not accounting.
      if ev.source == SOURCE and type(d) == "table" and type(d.service) == "string" and
          (ev.type == "service.instance.started" or ev.type == "service.instance.exited") then
        local k = d.service .. "\0" .. tostring(d.revision) .. "\0" .. tostring(d.index)
        if ev.type == "service.instance.started" then
          close(k, ev.time)
          open[k] = { service = d.service, revision = tostring(d.revision), index = d.index, from = ev.time }
        else
          close(k, ev.time)
        end
      end
    end
  end)
  if not ok then return nil, tostring(err) end
  for k, o in pairs(open) do
    if running(o.service, o.revision, o.index) then close(k, now) end
  end
  table.sort(out, function(a, b)
    if a.service ~= b.service then return a.service < b.service end
    if a.from ~= b.from then return a.from < b.from end
    if a.revision ~= b.revision then return a.revision < b.revision end
    return tostring(a.index) < tostring(b.index)
  end)
  return out
end

-- running_from_supervisor() -> the running(service, revision, index) predicate over the
-- supervisor's instances now.
function M.running_from_supervisor()
  local ok, list = pcall(function() return (require("steward.deploy.supervisor").status()) end)
  local set = {}
  if ok and type(list) == "table" then
    for _, svc in ipairs(list) do
      for _, inst in ipairs(svc.instances or {}) do
        if inst.state == "running" then set[svc.name .. "\0" .. tostring(inst.revision) .. "\0" .. tostring(inst.index)] = true end
      end
    end
  end
  return function(service, revision, index) return set[service .. "\0" .. tostring(revision) .. "\0" .. tostring(index)] == true end
end

return M
