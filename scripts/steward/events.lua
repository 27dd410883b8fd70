-- steward.events: the event log as policies and scripts see it (docs/lua-api/events.md):
-- emit events into the daemon's log (they are dispatched like any other), read one, query
-- and replay. The store stays inside this module; a tenant's policy emits and reads only its
-- tenant's events, and a policy emits only the types its `events.emit` capability allows
-- (its own namespace by default: the sandbox checks, steward.runtime.policy.capabilities).
local store = require "steward.runtime.store"

local type, error, ipairs = type, error, ipairs

local M = {}

local function log_module() return require "steward.runtime.events" end -- late: `steward test` replaces it

local function default_store(fname)
  local st = store.default()
  if not st then error("events." .. fname .. ": no store: inside the daemon or a spec there is one", 3) end
  return st
end

-- is_type(s) -> whether s is a valid dotted event type
function M.is_type(s) return log_module().is_type(s) end

-- emit(event | {events} [, {depth}]) -> {accepted, duplicates, ids} or nil, err. Each event is
-- validated as POST /v1/events validates it; `id` (an idempotency key) is assigned when absent.
-- depth: the cause depth (a policy's is set by steward.runtime.policy.emit, never by itself).
function M.emit(evs, opts)
  if type(evs) ~= "table" then error("events.emit: event or list of events expected, got " .. type(evs), 2) end
  local list = evs[1] ~= nil and evs or { evs }
  for i, ev in ipairs(list) do
    if type(ev) ~= "table" then error("events.emit: event " .. i .. ": table expected", 2) end
  end
  local depth = type(opts) == "table" and opts.depth or nil
  local res, err = log_module().append(default_store("emit"), list, depth and { depth = depth } or nil)
  if not res then return nil, type(err) == "table" and ((err.field or "?") .. ": " .. (err.reason or "invalid")) or err end
  return { accepted = res.accepted, duplicates = res.duplicates, ids = res.ids }
end

-- get(id) -> event, or nil (not found), or nil, err
function M.get(id)
  if type(id) ~= "string" then error("events.get: id: string expected", 2) end
  return log_module().get(default_store("get"), id)
end

-- query{type, tenant, after_seq, before_seq, since, until, limit, cursor} -> {events, next_cursor}
function M.query(f) return log_module().query(default_store("query"), f) end

-- replay{...} -> iterator over every matching event in seq order
function M.replay(f) return log_module().replay(default_store("replay"), f) end

return M
