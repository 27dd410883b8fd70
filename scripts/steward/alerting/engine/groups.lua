-- Aggregation groups in the store: one row per (route, group labels) with its flush
-- schedule, plus the fingerprints it holds. Only the engine's single dispatch key writes here,
-- so reads and the writes that follow them do not race.
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

function M.get(st, id)
  local rows, err = st.db:query("SELECT " .. COLS .. " FROM alert_groups WHERE id = $1", id)
  if not rows then return nil, err end
  return rows[1] and row(rows[1]) or false
end

function M.list(st)
  local rows, err = st.db:query("SELECT " .. COLS .. " FROM alert_groups ORDER BY group_key")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- The statement creating g (a fresh group) and its first member.
function M.create_statements(g, fp)
  return {
    { "INSERT INTO alert_groups (" .. COLS .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO NOTHING",
      g.id, g.group_key, g.route_id, g.receiver, json.encode(g.labels), g.created_at, g.epoch,
      g.next_flush, g.gen, g.flushed and 1 or 0 },
    M.add_statement(g.id, fp),
  }
end

function M.add_statement(id, fp)
  return { "INSERT INTO alert_group_members (group_id, fingerprint) VALUES ($1, $2) ON CONFLICT DO NOTHING", id, fp }
end

-- Removes a member only if its alert row is still the revision the flush saw: a re-fired
-- alert stays (Alertmanager compares UpdatedAt for the same reason).
function M.remove_statement(id, fp, revision)
  return { "DELETE FROM alert_group_members WHERE group_id = $1 AND fingerprint = $2 AND NOT EXISTS " ..
    "(SELECT 1 FROM alerts WHERE fingerprint = $2 AND revision > $3)", id, fp, revision }
end

function M.members(st, id)
  local rows, err = st.db:query("SELECT fingerprint FROM alert_group_members WHERE group_id = $1 ORDER BY fingerprint", id)
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.fingerprint end
  return out
end

function M.drop_member_statement(id, fp)
  return { "DELETE FROM alert_group_members WHERE group_id = $1 AND fingerprint = $2", id, fp }
end

-- The group advances to gen + 1 only from gen: a flush that ran twice commits once.
function M.advance_statement(g, next_flush)
  return { "UPDATE alert_groups SET gen = gen + 1, flushed = 1, next_flush = $2 WHERE id = $1 AND gen = $3",
    g.id, next_flush, g.gen }
end

-- Deletes the group when it holds no member any more (after the removals of the same batch).
function M.delete_if_empty_statement(id)
  return { "DELETE FROM alert_groups WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM alert_group_members WHERE group_id = $1)", id }
end

function M.delete_statements(id)
  return {
    { "DELETE FROM alert_group_members WHERE group_id = $1", id },
    { "DELETE FROM alert_groups WHERE id = $1", id },
  }
end

return M
