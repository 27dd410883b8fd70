-- Aggregation groups as the store holds them (the journal of the engine's memory,
-- steward.alerting.engine.journal): one row per (route, group labels) with its flush
-- schedule, plus the fingerprints it holds. Read here for the REPL and tests.
local json = require "steward.json"
local util = require "steward.alerting.engine.util"

local ipairs = ipairs

local M = {}

local COLS = "id, group_key, route_id, receiver, labels, created_at, epoch, next_flush, gen, flushed"

local function row(r)
  return { id = r.id, group_key = r.group_key, route_id = r.route_id, receiver = r.receiver,
    labels = json.decode(r.labels), created_at = r.created_at, epoch = r.epoch,
    next_flush = r.next_flush, gen = r.gen, flushed = r.flushed ~= 0 }
end

-- id(route, group_key): routes with equal matcher paths (siblings under continue) must not
-- share a group, so the route's id (which has its position) is part of the identity.
function M.id(route_id, group_key) return util.hash(route_id .. "\0" .. group_key) end

function M.list(st)
  local rows, err = st.db:query("SELECT " .. COLS .. " FROM alert_groups ORDER BY group_key")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

function M.members(st, id)
  local rows, err = st.db:query("SELECT fingerprint FROM alert_group_members WHERE group_id = $1 ORDER BY fingerprint", id)
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.fingerprint end
  return out
end

return M
