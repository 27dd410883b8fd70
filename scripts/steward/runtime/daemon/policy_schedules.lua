-- Keeps the durable cron schedules of policies that declare `schedule` in step with the loaded
-- set: "policy:<name>" fires {type = "policy.schedule", data = {policy = name}} at each slot.
-- A policy that drops its schedule (or is removed) loses its row; an unchanged expression keeps
-- its next slot (steward.runtime.store.schedules), so reloads and restarts do not skip or repeat one.
local schedules = require "steward.runtime.store.schedules"
local task = require "steward.task"
local log = require "steward.log"

local M = {}

local PREFIX = "policy:"

local function sync(st, set)
  local rows, err = schedules.list(st)
  if not rows then return nil, err end
  local want = {}
  for name, p in pairs(set) do
    if p.schedule then want[PREFIX .. name] = p end
  end
  for _, r in ipairs(rows) do
    if r.name:sub(1, #PREFIX) == PREFIX and not want[r.name] then
      local ok, rerr = schedules.remove(st, r.name)
      if not ok and rerr then return nil, rerr end
    end
  end
  for sname, p in pairs(want) do
    local ok, next_at, derr = pcall(schedules.define, st, sname, p.schedule,
      { type = "policy.schedule", source = "steward", data = { policy = p.name } })
    if not ok then return nil, next_at end
    if not next_at then return nil, derr end
  end
  return true
end

-- apply(st, set): in a task of its own, after the previous sync finished (swaps can follow
-- each other faster than the store answers).
local last
function M.apply(st, set)
  local prev = last
  last = task.spawn({ name = "policy.schedules" }, function()
    if prev then prev:join() end
    local ok, err = sync(st, set)
    if not ok then log.warn("cannot update the policies' schedules", { error = tostring(err) }) end
  end)
  return last
end

M.sync = sync
return M
