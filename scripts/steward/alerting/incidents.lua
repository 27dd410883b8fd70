-- steward.alerting.incidents: incidents (triggered -> acknowledged -> resolved, or silenced)
-- with a timeline, stored in both backends. Every state change, its timeline row and its
-- incident.<state> event commit as one unit; the UPDATE is conditional on the revision it
-- read, and the timeline row and the event take ids derived from the new revision, so of two
-- concurrent actions only one applies and the loser adds nothing. MTTA/MTTR per service go
-- to /metrics (steward_incident_ack_seconds, steward_incident_resolve_seconds).
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local time = require "steward.time"
require "steward.alerting.incidents_schema"

local type, pairs, ipairs, tostring, error, format, concat, floor =
  type, pairs, ipairs, tostring, error, string.format, table.concat, math.floor

local M = {}

M.STATES = { triggered = true, acknowledged = true, resolved = true, silenced = true }
M.SEVERITIES = { critical = true, error = true, warning = true, info = true }
local OPEN = { triggered = true, acknowledged = true }
local ATTEMPTS = 8
local SOURCE = "steward.alerting.incidents"

local imetrics = require "steward.alerting.incidents_metrics"

local COLS = "id, key, service, title, summary, severity, state, escalation, assignee, labels, group_key, " ..
  "epoch, created_at, acked_at, acked_by, resolved_at, resolved_by, alert_at, updated_at, revision"

-- ---- store ----

local ready = domain.migrator("incidents")
M.ready = ready

local function row_incident(r) return domain.row(r, { "labels" }) end

-- get(st, id) -> incident | false | nil, err
function M.get(st, id)
  local ok, err = ready(st)
  if not ok then return nil, err end
  if type(id) ~= "string" then error("incidents.get: id: string expected, got " .. type(id), 2) end
  return domain.one(st, row_incident, "SELECT " .. COLS .. " FROM incidents WHERE id = $1", id)
end

local function open_by_key(st, key)
  return domain.one(st, row_incident, "SELECT " .. COLS ..
    " FROM incidents WHERE key = $1 AND state IN ('triggered', 'acknowledged')", key)
end

-- timeline(st, id) -> entries in time order: {at, kind, actor, data}
function M.timeline(st, id)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT id, at, kind, actor, data FROM incident_timeline WHERE incident_id = $1 ORDER BY at, id", id)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do
    rows[i] = { id = r.id, at = r.at, kind = r.kind, actor = r.actor ~= json.null and r.actor or nil,
                data = json.decode(r.data) or {} }
  end
  return rows
end

local function timeline_stmt(tid, incident, at, kind, actor, data)
  return { "INSERT INTO incident_timeline (id, incident_id, at, kind, actor, data) VALUES ($1,$2,$3,$4,$5,$6) " ..
    "ON CONFLICT (id) DO NOTHING", tid, incident, at, kind, util.nullable(actor), json.encode(data or {}) }
end

M.refresh_gauge = imetrics.refresh_gauge

local function event_data(inc, extra)
  local d = { incident = inc.id, key = inc.key, service = inc.service, state = inc.state,
              severity = inc.severity, title = inc.title, epoch = inc.epoch, revision = inc.revision,
              escalation = inc.escalation, assignee = inc.assignee }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

-- Runs stmts plus one event; -> results, fresh events | nil, err. The event's id is derived
-- from the incident's new revision: a writer that lost the race inserts nothing.
local commit = domain.commit

local function dispatch(st, fresh)
  events.published(st, fresh)
end

local function new_event(type_, inc, now, extra)
  return { id = format("incident:%s:r%d", inc.id, inc.revision), type = type_, source = SOURCE,
           time = now, data = event_data(inc, extra) }
end

-- ---- trigger ----

-- Title and summary are cut to their limit (they come from alert annotations); names raise.
local CUT = { title = true, summary = true }
local function str(v, field, max, default)
  if v == nil then return default end
  if type(v) ~= "string" then error(format("incidents.trigger: %s: string expected, got %s", field, type(v)), 4) end
  if #v > max then
    if CUT[field] then return v:sub(1, max - 3) .. "..." end
    error(format("incidents.trigger: %s: at most %d bytes", field, max), 4)
  end
  return v
end

local KNOWN = { key = true, service = true, title = true, summary = true, severity = true, escalation = true,
  assignee = true, labels = true, alerts = true, group_key = true, source = true, now = true }

local function check_spec(spec)
  if type(spec) ~= "table" then error("incidents.trigger: spec: table expected, got " .. type(spec), 3) end
  local s = {}
  s.key = str(spec.key, "key", 500)
  if not s.key or s.key == "" then error("incidents.trigger: key: non-empty string expected", 3) end
  s.service = str(spec.service, "service", 200, "default")
  s.title = str(spec.title, "title", 1000, s.key)
  s.summary = str(spec.summary, "summary", 10000, "")
  s.severity = str(spec.severity, "severity", 20, "critical")
  if not M.SEVERITIES[s.severity] then error("incidents.trigger: severity: critical, error, warning or info expected", 3) end
  s.escalation = str(spec.escalation, "escalation", 200)
  s.assignee = str(spec.assignee, "assignee", 200)
  s.group_key = str(spec.group_key, "group_key", 2000)
  s.source = str(spec.source, "source", 200, "steward")
  if spec.labels ~= nil and type(spec.labels) ~= "table" then error("incidents.trigger: labels: table expected", 3) end
  s.labels = spec.labels or {}
  if spec.alerts ~= nil and type(spec.alerts) ~= "table" then error("incidents.trigger: alerts: list expected", 3) end
  s.alerts = spec.alerts
  for k in pairs(spec) do
    if not KNOWN[k] then error("incidents.trigger: " .. tostring(k) .. ": unknown field", 3) end
  end
  return s
end

local function alerts_brief(alerts)
  if not alerts then return nil end
  local out = {}
  for i, a in ipairs(alerts) do
    if i > 50 then break end
    out[i] = { status = a.status, fingerprint = a.fingerprint, labels = a.labels }
  end
  return out
end

-- trigger(st, spec) -> incident, created | nil, err. An open incident with spec.key is reused
-- (a timeline entry records the alerts); otherwise a new one opens, state triggered.
function M.trigger(st, spec)
  local s = check_spec(spec)
  local ok, err = ready(st)
  if not ok then return nil, err end
  for attempt = 1, ATTEMPTS do
    if attempt > 1 then time.sleep(math.random() * 0.005 * attempt) end
    local now = util.now(spec.now)
    local cur
    cur, err = open_by_key(st, s.key)
    if cur == nil then return nil, err end
    if cur then
      local res
      res, err = st.db:batch({
        { "UPDATE incidents SET alert_at = $2 WHERE id = $1", cur.id, now },
        timeline_stmt(util.uuidv7(now), cur.id, now, "alerts", s.source,
          { message = "alerts updated", alerts = alerts_brief(s.alerts) }),
      })
      if not res then return nil, err end
      cur.alert_at = now
      return cur, false
    end
    local inc = { id = util.uuidv7(now), key = s.key, service = s.service, title = s.title, summary = s.summary,
      severity = s.severity, state = "triggered", escalation = s.escalation, assignee = s.assignee,
      labels = s.labels, group_key = s.group_key, epoch = 1, created_at = now, alert_at = now,
      updated_at = now, revision = 1 }
    local stmts = {
      { "INSERT INTO incidents (" .. COLS .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)",
        inc.id, inc.key, inc.service, inc.title, inc.summary, inc.severity, inc.state, util.nullable(inc.escalation),
        util.nullable(inc.assignee), json.encode(inc.labels), util.nullable(inc.group_key), inc.epoch, now,
        json.null, json.null, json.null, json.null, now, now, inc.revision },
      timeline_stmt(inc.id .. "/r1", inc.id, now, "triggered", s.source,
        { state = "triggered", alerts = alerts_brief(s.alerts) }),
    }
    local fresh
    local res
    res, fresh = commit(st, stmts, new_event("incident.triggered", inc, now, { actor = s.source }), now)
    if res then
      M.refresh_gauge(st)
      dispatch(st, fresh)
      return inc, true
    end
    err = fresh
    -- Most likely another writer opened an incident for this key first: read again.
  end
  return nil, err
end

-- ---- state changes ----

-- change(st, id, opts): opts = {from = {state = true}, to = state or nil, set = {column = value},
-- kind, event, actor, data, epoch (required epoch), now}. -> incident | nil, err, current
local function change(st, id, o)
  local ok, err = ready(st)
  if not ok then return nil, err end
  if type(id) ~= "string" then error("incidents: id: string expected, got " .. type(id), 3) end
  for attempt = 1, ATTEMPTS do
    if attempt > 1 then time.sleep(math.random() * 0.005 * attempt) end
    local now = util.now(o.now)
    local cur
    cur, err = M.get(st, id)
    if cur == nil then return nil, err end
    if not cur then return nil, "no incident " .. id end
    if not o.from[cur.state] then
      return nil, format("incident %s is %s", id, cur.state), cur
    end
    if o.epoch and cur.epoch ~= o.epoch then
      return nil, format("incident %s is in escalation epoch %d, not %d", id, cur.epoch, o.epoch), cur
    end
    local new = {}
    for k, v in pairs(cur) do new[k] = v end
    if o.to then new.state = o.to end
    local sets, params = { "state = $3", "updated_at = $4", "revision = $5" }, { id, cur.revision, new.state, now, cur.revision + 1 }
    for col, v in pairs(o.set or {}) do
      if v == "$now" then v = now end
      new[col] = v ~= json.null and v or nil
      params[#params + 1] = v
      sets[#sets + 1] = col .. " = $" .. #params
    end
    new.updated_at, new.revision = now, cur.revision + 1
    local stmts = {
      { "UPDATE incidents SET " .. concat(sets, ", ") .. " WHERE id = $1 AND revision = $2", unpack(params) },
      timeline_stmt(format("%s/r%d", id, new.revision), id, now, o.kind, o.actor, o.data or {}),
    }
    local res, fresh = commit(st, stmts, new_event(o.event, new, now, { actor = o.actor, previous = cur.state }), now)
    if not res then return nil, fresh end
    if res[1].changes == 1 then
      if o.to and o.to ~= cur.state then M.refresh_gauge(st) end
      dispatch(st, fresh)
      return new
    end
    -- Lost the race: the row moved on. Read it again and decide anew.
  end
  return nil, "incident " .. id .. ": too many concurrent changes"
end

local function actor_arg(actor, what)
  if actor ~= nil and type(actor) ~= "string" then error(what .. ": actor: string expected, got " .. type(actor), 3) end
  return actor or "steward"
end

-- ack(st, id, actor) -> incident | nil, err, current
function M.ack(st, id, actor, opts)
  actor = actor_arg(actor, "incidents.ack")
  local inc, err, cur = change(st, id, { from = { triggered = true }, to = "acknowledged", kind = "acknowledged",
    event = "incident.acknowledged", actor = actor, data = { state = "acknowledged" },
    set = { acked_at = "$now", acked_by = actor }, now = opts and opts.now })
  if inc then imetrics.ack:observe(inc.acked_at - inc.created_at, inc.service) end
  return inc, err, cur
end

-- resolve(st, id, actor [, {reason}]) -> incident | nil, err, current
function M.resolve(st, id, actor, opts)
  actor = actor_arg(actor, "incidents.resolve")
  opts = opts or {}
  local inc, err, cur = change(st, id, { from = { triggered = true, acknowledged = true, silenced = true },
    to = "resolved", kind = "resolved", event = "incident.resolved", actor = actor,
    data = { state = "resolved", reason = opts.reason }, set = { resolved_at = "$now", resolved_by = actor },
    now = opts.now })
  if inc then imetrics.resolve:observe(inc.resolved_at - inc.created_at, inc.service) end
  return inc, err, cur
end

-- silence(st, id, actor): an open incident stops escalating without being resolved.
function M.silence(st, id, actor, opts)
  actor = actor_arg(actor, "incidents.silence")
  return change(st, id, { from = OPEN, to = "silenced", kind = "silenced", event = "incident.silenced",
    actor = actor, data = { state = "silenced" }, now = opts and opts.now })
end

-- reassign(st, id, user, actor) -> incident | nil, err, current
function M.reassign(st, id, user, actor, opts)
  if type(user) ~= "string" or user == "" or #user > 200 then
    error("incidents.reassign: user: non-empty string expected", 2)
  end
  actor = actor_arg(actor, "incidents.reassign")
  return change(st, id, { from = { triggered = true, acknowledged = true, silenced = true }, kind = "reassigned",
    event = "incident.reassigned", actor = actor, data = { assignee = user }, set = { assignee = user },
    now = opts and opts.now })
end

-- retrigger(st, id, epoch, actor): an acknowledged incident whose ack timed out goes back to
-- triggered in a new escalation epoch (escalation starts again from its first rule).
function M.retrigger(st, id, epoch, actor, opts)
  actor = actor_arg(actor, "incidents.retrigger")
  if type(epoch) ~= "number" then error("incidents.retrigger: epoch: number expected", 2) end
  local next_epoch = epoch + 1
  return change(st, id, { from = { acknowledged = true }, to = "triggered", kind = "triggered",
    event = "incident.triggered", actor = actor, epoch = epoch,
    data = { state = "triggered", reason = opts and opts.reason or "acknowledgement timed out" },
    set = { epoch = next_epoch, acked_at = json.null, acked_by = json.null }, now = opts and opts.now })
end

-- resolve_key(st, key, {actor, reason}) -> incident | false (none open) | nil, err
function M.resolve_key(st, key, opts)
  local ok, err = ready(st)
  if not ok then return nil, err end
  opts = opts or {}
  local cur
  cur, err = open_by_key(st, key)
  if cur == nil then return nil, err end
  if not cur then return false end
  return M.resolve(st, cur.id, opts.actor, { reason = opts.reason, now = opts.now })
end

-- note(st, id, kind, data, actor [, {id = timeline id, now}]) -> true | nil, err. With an id the
-- entry is written once however often it is noted (a re-run handler notes nothing twice).
function M.note(st, id, kind, data, actor, opts)
  local ok, err = ready(st)
  if not ok then return nil, err end
  if type(id) ~= "string" then error("incidents.note: id: string expected", 2) end
  if type(kind) ~= "string" or kind == "" then error("incidents.note: kind: string expected", 2) end
  opts = opts or {}
  local now = util.now(opts.now)
  local res
  res, err = st.db:batch({ timeline_stmt(opts.id and (id .. "/" .. opts.id) or util.uuidv7(now), id, now, kind, actor, data) })
  if not res then return nil, err end
  return true
end

-- list(st, {state, service, since, limit, cursor}) -> {incidents, next_cursor} | nil, err;
-- newest first.
function M.list(st, f)
  local ok, err = ready(st)
  if not ok then return nil, err end
  f = util.opt_table(f, "incidents.list: filter")
  local w = domain.where()
  if f.state ~= nil then
    if f.state == "open" then
      w:add("state IN ('triggered', 'acknowledged')")
    elseif not M.STATES[f.state] then
      error("incidents.list: state: triggered, acknowledged, resolved, silenced or open expected", 2)
    else
      w:add("state = ?", f.state)
    end
  end
  if f.service ~= nil then
    if type(f.service) ~= "string" then error("incidents.list: service: string expected", 2) end
    w:add("service = ?", f.service)
  end
  if f.since ~= nil then w:add("created_at >= ?", util.time_arg(f.since, "incidents.list: since")) end
  if f.cursor ~= nil then
    if type(f.cursor) ~= "string" or not f.cursor:match("^[%x-]+$") then return nil, "incidents.list: cursor: not a cursor this function returned" end
    w:add("id < ?", f.cursor)
  end
  local limit = util.limit_arg(f.limit, "incidents.list: limit", 100, 1000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM incidents" .. w:clause() ..
    " ORDER BY id DESC LIMIT " .. w:param(limit + 1), unpack(w.params))
  if not rows then return nil, err end
  local out = {}
  for i = 1, math.min(#rows, limit) do out[i] = row_incident(rows[i]) end
  return { incidents = out, next_cursor = #rows > limit and out[#out].id or nil }
end

-- Seconds as "1h2m3s" (for messages).
function M.ago(s)
  s = floor(s)
  if s < 60 then return s .. "s" end
  if s < 3600 then return format("%dm%ds", floor(s / 60), s % 60) end
  return format("%dh%dm", floor(s / 3600), floor(s / 60) % 60)
end


-- Every function above takes the store first; a policy, which is never handed the store, calls
-- them without it (incidents.trigger{...}) and gets the daemon's.
domain.default_store(M, { "get", "timeline", "trigger", "ack", "resolve", "silence", "reassign", "retrigger",
                          "resolve_key", "note", "list" })

return M
