-- The notification engine's working state (aggregation groups with their members, the
-- notification log) lives in memory; the store's tables are its journal. A handler run (one
-- event, or a batch of queued events from steward.runtime.dispatch's handle_batch) reads
-- nothing of that state from the store: it changes memory and collects the statements that
-- say the same thing, and commits them in ONE store unit with the outbox events the run's
-- flushes produced and the flush timers they armed. Dispatch records the events handled only
-- after that commit, so a crash before it re-runs them on the state recovered from the
-- journal, and a crash after it finds their changes there.
--
-- The journal has one writer (the engine's dispatch key). Another writer (the periodic
-- cleanup, another instance that held the key meanwhile) changes the journal's token; a run
-- that finds a token other than the one it last wrote reloads memory from the journal first.
local crypto = require "steward.crypto"
local json = require "steward.json"
local util = require "steward.alerting.engine.util"
local events = require "steward.runtime.events"
local astore = require "steward.alerting.store"

local ipairs = ipairs

local M = {}

local GROUP_COLS = "id, group_key, route_id, receiver, labels, created_at, epoch, next_flush, gen, flushed"

local function token() return crypto.hex(crypto.random(8)) end

function M.nlog_key(group_key, receiver) return group_key .. "\0" .. receiver end

-- load(st) -> state | nil, err: the whole journal, read in one unit.
function M.load(st)
  local res, err = st.db:batch({
    { "SELECT token FROM alert_engine_journal WHERE id = 1" },
    { "SELECT " .. GROUP_COLS .. " FROM alert_groups" },
    { "SELECT group_id, fingerprint FROM alert_group_members" },
    { "SELECT group_key, receiver, integration, firing, resolved, sent_at, repeats FROM alert_nlog" },
  })
  if not res then return nil, err end
  local s = { token = res[1].rows and res[1].rows[1] and res[1].rows[1].token or "", groups = {}, nlog = {} }
  for _, r in ipairs(res[2].rows or {}) do
    s.groups[r.id] = { id = r.id, group_key = r.group_key, route_id = r.route_id, receiver = r.receiver,
      labels = json.decode(r.labels), created_at = r.created_at, epoch = r.epoch, next_flush = r.next_flush,
      gen = r.gen, flushed = r.flushed ~= 0, members = {} }
  end
  for _, r in ipairs(res[3].rows or {}) do
    local g = s.groups[r.group_id]
    -- (a member without its group is left to the cleanup; nothing reads it)
    if g then g.members[r.fingerprint] = true end
  end
  for _, r in ipairs(res[4].rows or {}) do
    local k = M.nlog_key(r.group_key, r.receiver)
    local e = s.nlog[k] or {}
    s.nlog[k] = e
    e[r.integration] = { firing = util.set(json.decode(r.firing)), resolved = util.set(json.decode(r.resolved)),
      sent_at = r.sent_at, repeats = r.repeats }
  end
  return s
end

-- begin(eng, st, now) -> tx | nil, err: the state (reloaded when the journal changed under
-- it) and a read every flush of this run shares: the silences that may be active.
function M.begin(eng, st, now)
  local reads = {
    { "SELECT token FROM alert_engine_journal WHERE id = 1" },
    { "SELECT " .. astore.SIL_COLS .. " FROM alert_silences WHERE starts_at <= $1 AND ends_at >= $1", now },
  }
  local res, err = st.db:batch(reads)
  if not res then return nil, err end
  local tok = res[1].rows and res[1].rows[1] and res[1].rows[1].token or ""
  local s = eng.state
  if not s or s.token ~= tok then
    s, err = M.load(st)
    if not s then return nil, err end
    eng.state = s
  end
  return { st = st, now = now, state = s, stmts = {}, adds = {}, outbox = {}, silence_rows = res[2].rows or {} }
end

-- firing(eng, tx) -> the firing alerts (inhibition's sources), read once per run and only
-- by a run that flushes (a storm's runs mostly add members), or nil without inhibition rules.
function M.firing(eng, tx)
  if #eng.inhibitor.rules == 0 then return nil end
  if not tx.firing then
    local rows, err = astore.firing(tx.st, tx.now)
    if not rows then return nil, err end
    tx.firing = rows
  end
  return tx.firing
end

-- New members wait in tx.adds and go out as multi-row INSERTs (one statement for up to
-- ADD_ROWS of them, not one each); any other statement first writes those waiting, so the
-- journal keeps the order of the changes (an alert added, dropped, added again).
local ADD_ROWS = 400

local function write_adds(tx)
  local adds = tx.adds
  if #adds == 0 then return end
  for first = 1, #adds, ADD_ROWS do
    local last = math.min(first + ADD_ROWS - 1, #adds)
    local values, stmt, n = {}, { false }, 1
    for i = first, last do
      values[#values + 1] = "($" .. n .. ",$" .. (n + 1) .. ")"
      stmt[n + 1], stmt[n + 2] = adds[i][1], adds[i][2]
      n = n + 2
    end
    stmt[1] = "INSERT INTO alert_group_members (group_id, fingerprint) VALUES " .. table.concat(values, ",") ..
      " ON CONFLICT DO NOTHING"
    tx.stmts[#tx.stmts + 1] = stmt
  end
  tx.adds = {}
end

function M.add(tx, stmt)
  if not stmt then return end
  write_adds(tx)
  tx.stmts[#tx.stmts + 1] = stmt
end

-- add_member(tx, group id, fingerprint): the journal entry of a new member.
function M.add_member(tx, id, fp)
  local adds = tx.adds
  adds[#adds + 1] = { id, fp }
end

-- ---- the statements that mirror each change of memory ----

function M.group_statement(g)
  return { "INSERT INTO alert_groups (" .. GROUP_COLS .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) " ..
    "ON CONFLICT (id) DO UPDATE SET group_key = excluded.group_key, route_id = excluded.route_id, " ..
    "receiver = excluded.receiver, labels = excluded.labels, created_at = excluded.created_at, " ..
    "epoch = excluded.epoch, next_flush = excluded.next_flush, gen = excluded.gen, flushed = excluded.flushed",
    g.id, g.group_key, g.route_id, g.receiver, json.encode(g.labels), g.created_at, g.epoch,
    g.next_flush, g.gen, g.flushed and 1 or 0 }
end

function M.drop_member_statement(id, fp)
  return { "DELETE FROM alert_group_members WHERE group_id = $1 AND fingerprint = $2", id, fp }
end

function M.delete_group_statements(id)
  return {
    { "DELETE FROM alert_group_members WHERE group_id = $1", id },
    { "DELETE FROM alert_groups WHERE id = $1", id },
  }
end

-- commit(tx) -> true | nil, err: the run's journal entries, outbox events and the new token,
-- one unit; then the outbox events go to dispatch.
function M.commit(tx)
  write_adds(tx)
  local stmts = tx.stmts
  if #stmts == 0 and #tx.outbox == 0 then return true end
  local s, mine = tx.state, token()
  stmts[#stmts + 1] = { "UPDATE alert_engine_journal SET token = $1 WHERE id = 1 AND token = $2", mine, s.token }
  local mark = #stmts
  local first = #stmts + 1
  if #tx.outbox > 0 then
    local texts = {}
    for i, ev in ipairs(tx.outbox) do texts[i] = json.encode(ev.data) end
    for _, st in ipairs(events.insert_statements(tx.outbox, texts, tx.now)) do stmts[#stmts + 1] = st end
  end
  local res, err = tx.st.db:batch(stmts)
  if not res then return nil, err end
  -- Someone else wrote the journal since we read it: what we wrote is there, but memory may
  -- miss their changes; the next run reloads.
  s.token = (res[mark].changes or 0) > 0 and mine or nil
  if #tx.outbox > 0 then
    local seqs = {}
    for i = first, #res do
      for _, row in ipairs(res[i].rows or {}) do seqs[row.id] = row.seq end
    end
    local fresh = {}
    for _, ev in ipairs(tx.outbox) do
      if seqs[ev.id] then ev.seq = seqs[ev.id]; fresh[#fresh + 1] = ev end
    end
    events.published(tx.st, fresh)
  end
  return true
end

-- touch_statement(): for other writers of the journal's tables (cleanup): the engine reloads.
function M.touch_statement()
  return { "UPDATE alert_engine_journal SET token = $1 WHERE id = 1", token() }
end

-- members(g) -> sorted list of g's member fingerprints.
function M.members(g)
  return util.sorted_keys(g.members)
end

return M
