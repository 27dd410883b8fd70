-- steward.time: the clocks and timers of bindings/time.c, plus durable timers:
-- time.after(d, event) with an event table persists a timer in the store, which the daemon
-- turns into that event after d — also after a restart, exactly once.
local native = require "steward.time.native"

local M = {}
for k, v in pairs(native) do M[k] = v end

local native_after = native.after

-- after(d, fn, ...) -> in-memory timer; after(d, event [, {id = ...}]) -> durable timer id
function M.after(d, what, ...)
  if type(what) ~= "table" then return native_after(d, what, ...) end
  local store = require "steward.store"
  local st = store.default()
  if not st then
    error("time.after: a durable timer (an event table) needs the daemon's store " ..
          "(store.set_default), none is open", 2)
  end
  local timers = require "steward.store.timers"
  return timers.after(st, d, what, ...)
end

-- cancel_durable(id) -> true, or nil, err
function M.cancel_durable(id)
  local st = require("steward.store").default()
  if not st then error("time.cancel_durable: no store is open", 2) end
  return require("steward.store.timers").cancel(st, id)
end

return M
