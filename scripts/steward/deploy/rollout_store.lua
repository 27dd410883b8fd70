-- steward.deploy.rollout_store: the rollouts' rows on both store backends. A rollout is one row
-- (its indexed columns plus the whole state as JSON) with a revision: every change is an UPDATE
-- conditional on the revision it read, committed in one batch with its history row, the events
-- it emits and the durable timers it arms, so a crash leaves either all of a transition or none
-- of it, and of two writers only one applies. History rows carry an `audited` mark: the audit
-- log (hash-chained, appended outside the batch) catches up with them on the next change.
local json = require "steward.json"
local store = require "steward.runtime.store"
local util = require "steward.runtime.store.util"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"
local audit = require "steward.runtime.store.audit"
local log = require "steward.log"

local type, ipairs, pairs, tostring, format, concat, unpack =
  type, ipairs, pairs, tostring, string.format, table.concat, unpack

local M = {}

store.register_migrations("rollouts", {
  { version = 1, sql = store.dialects [[
    CREATE TABLE rollouts (
      id {text} PRIMARY KEY,
      service {text} NOT NULL,
      revision TEXT NOT NULL,
      tenant TEXT,
      phase {text} NOT NULL,
      step INTEGER NOT NULL,
      state TEXT NOT NULL,
      created_at DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL,
      rev BIGINT NOT NULL);
    CREATE UNIQUE INDEX rollouts_active ON rollouts (service) WHERE phase IN ('Pending', 'Progressing', 'Paused', 'RollbackBlocked');
    CREATE INDEX rollouts_service ON rollouts (service, created_at);
    CREATE TABLE rollout_history (
      id {text} PRIMARY KEY,
      rollout_id {text} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      kind {text} NOT NULL,
      step INTEGER NOT NULL,
      actor TEXT,
      data TEXT NOT NULL,
      audited INTEGER NOT NULL);
    CREATE INDEX rollout_history_rollout ON rollout_history (rollout_id, at);
    CREATE INDEX rollout_history_unaudited ON rollout_history (audited);
  ]] },
})

M.ACTIVE = { Pending = true, Progressing = true, Paused = true, RollbackBlocked = true }

local migrated = setmetatable({}, { __mode = "k" })

-- The store may have been opened before this module registered its tables.
function M.ready(st)
  util.store_arg(st, "rollouts")
  if migrated[st] then return true end
  local ok, err = st:migrate()
  if not ok then return nil, "rollouts: store migration failed: " .. tostring(err) end
  migrated[st] = true
  return true
end

local COLS = "id, service, revision, tenant, phase, step, state, created_at, updated_at, rev"

local function row_rollout(row)
  local r = json.decode(row.state) or {}
  r.id, r.service, r.revision, r.phase, r.step = row.id, row.service, row.revision, row.phase, row.step
  r.tenant = row.tenant ~= json.null and row.tenant or nil
  r.created_at, r.updated_at, r.rev = row.created_at, row.updated_at, row.rev
  return r
end

-- get(st, id) -> rollout | false | nil, err
function M.get(st, id)
  local ok, err = M.ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM rollouts WHERE id = $1", id)
  if not rows then return nil, err end
  return rows[1] and row_rollout(rows[1]) or false
end

-- active(st, service) -> the service's rollout in progress | false | nil, err
function M.active(st, service)
  local ok, err = M.ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM rollouts WHERE service = $1 AND phase IN " ..
    "('Pending', 'Progressing', 'Paused', 'RollbackBlocked')", service)
  if not rows then return nil, err end
  return rows[1] and row_rollout(rows[1]) or false
end

-- last_completed(st, service) -> the newest Completed rollout of the service | false | nil, err
function M.last_completed(st, service)
  local rows, err = st.db:query("SELECT " .. COLS .. " FROM rollouts WHERE service = $1 AND phase = 'Completed' " ..
    "ORDER BY updated_at DESC, id DESC LIMIT 1", service)
  if not rows then return nil, err end
  return rows[1] and row_rollout(rows[1]) or false
end

-- list{service, phase, tenant, limit} -> rollouts, newest first | nil, err
function M.list(st, f)
  local ok, err = M.ready(st)
  if not ok then return nil, err end
  f = f or {}
  local conds, params = {}, {}
  for _, col in ipairs({ "service", "phase", "tenant" }) do
    if f[col] ~= nil then
      params[#params + 1] = f[col]
      conds[#conds + 1] = col .. " = $" .. #params
    end
  end
  params[#params + 1] = f.limit or 100
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM rollouts" .. (#conds > 0 and (" WHERE " .. concat(conds, " AND ")) or "")
    .. " ORDER BY created_at DESC, id DESC LIMIT $" .. #params, unpack(params))
  if not rows then return nil, err end
  for i, row in ipairs(rows) do rows[i] = row_rollout(row) end
  return rows
end

-- history(st, id) -> {at, kind, step, actor, data} in order | nil, err
function M.history(st, id)
  local rows, err = st.db:query("SELECT id, at, kind, step, actor, data FROM rollout_history WHERE rollout_id = $1 " ..
    "ORDER BY at, id", id)
  if not rows then return nil, err end
  for i, row in ipairs(rows) do
    rows[i] = { at = row.at, kind = row.kind, step = row.step, actor = row.actor ~= json.null and row.actor or nil,
                data = json.decode(row.data) or {} }
  end
  return rows
end

-- The state column: everything but the indexed columns.
local INDEXED = { id = true, service = true, revision = true, tenant = true, phase = true, step = true,
                  created_at = true, updated_at = true, rev = true }
local function state_text(r)
  local s = {}
  for k, v in pairs(r) do if not INDEXED[k] then s[k] = v end end
  return json.encode(s)
end

local function timer_stmt(t, now)
  local text = timers.check_event(t.event, "rollout timer")
  return { "INSERT INTO timers (id, due_at, event, created) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
           "k:" .. t.key, t.due_at, text, now }
end

-- commit(st, r, expected_rev, unit, now) -> true | false (another writer moved the row on) |
-- nil, err. unit = {history = {{kind, actor, data}}, events = {...}, timers = {{key, due_at,
-- event}}, insert = true for a new row}. On success r.rev and r.updated_at are the new ones.
function M.commit(st, r, expected, unit, now)
  local ok, err = M.ready(st)
  if not ok then return nil, err end
  local new_rev = (expected or 0) + 1
  local stmts = {}
  if unit.insert then
    stmts[1] = { "INSERT INTO rollouts (" .. COLS .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO NOTHING",
      r.id, r.service, r.revision, util.nullable(r.tenant), r.phase, r.step, state_text(r), now, now, new_rev }
  else
    stmts[1] = { "UPDATE rollouts SET phase = $3, step = $4, state = $5, updated_at = $6, rev = $7 WHERE id = $1 AND rev = $2",
      r.id, expected, r.phase, r.step, state_text(r), now, new_rev }
  end
  for i, h in ipairs(unit.history or {}) do
    stmts[#stmts + 1] = { "INSERT INTO rollout_history (id, rollout_id, at, kind, step, actor, data, audited) " ..
      "VALUES ($1,$2,$3,$4,$5,$6,$7,0) ON CONFLICT (id) DO NOTHING",
      format("%s/r%d/%d", r.id, new_rev, i), r.id, now, h.kind, r.step, util.nullable(h.actor), json.encode(h.data or {}) }
  end
  for _, t in ipairs(unit.timers or {}) do stmts[#stmts + 1] = timer_stmt(t, now) end
  local evs, texts = {}, {}
  for i, e in ipairs(unit.events or {}) do
    -- Ids derived from the row's new revision: a writer that lost the race adds nothing.
    local ev, verr, text = events.validate({ id = format("rollout:%s:r%d:%d", r.id, new_rev, i), type = e.type,
      tenant = r.tenant, source = "steward.deploy.rollout", time = now, data = e.data }, i, now)
    if not ev then error("rollout event " .. e.type .. ": " .. verr.field .. ": " .. verr.reason) end
    evs[#evs + 1], texts[#texts + 1] = ev, text
  end
  local first_ev = #stmts + 1
  for _, s in ipairs(events.insert_statements(evs, texts, now)) do stmts[#stmts + 1] = s end
  local res
  res, err = st.db:batch(stmts)
  if not res then return nil, err end
  if res[1].changes ~= 1 then return false end
  local seqs = {}
  for i = first_ev, #res do
    for _, row in ipairs(res[i].rows or {}) do seqs[row.id] = row.seq end
  end
  local fresh = {}
  for _, ev in ipairs(evs) do
    if seqs[ev.id] then ev.seq = seqs[ev.id]; fresh[#fresh + 1] = ev end
  end
  r.rev, r.updated_at = new_rev, now
  if unit.insert then r.created_at = now end
  events.published(st, fresh)
  return true
end

-- flush_audit(st, actor, service) -> entries written: the history rows of the service's
-- rollouts the audit log has not seen yet (written after their commit; a crash in between leaves
-- them for the next change). One service's handlers run one at a time: no row goes twice.
function M.flush_audit(st, actor, service)
  -- ids are <service>~...: the range from "<service>~" to "<service>\127" (bytewise on both backends)
  local rows, err = st.db:query("SELECT id, rollout_id, at, kind, step, actor, data FROM rollout_history " ..
    "WHERE audited = 0 AND rollout_id >= $1 AND rollout_id < $2 ORDER BY at, id LIMIT 200", service .. "~", service .. "\127")
  if not rows then return nil, err end
  for _, row in ipairs(rows) do
    local id
    id, err = audit.append(st, { source = "policy", actor = row.actor ~= json.null and row.actor or actor,
      command = "rollout." .. row.kind, target = row.rollout_id, after = audit.digest(row.data),
      outcome = "ok", detail = format("step %d: %s", row.step, row.data), time = row.at })
    if not id then
      log.error("rollouts: cannot write the audit entry of a transition", { rollout = row.rollout_id, error = err })
      return nil, err
    end
    st.db:exec("UPDATE rollout_history SET audited = 1 WHERE id = $1", row.id)
  end
  return #rows
end

return M
