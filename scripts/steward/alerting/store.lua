-- steward.alerting.store: alert and silence state for the Alertmanager-compatible API
-- (steward.alerting.api). Applies Alertmanager 0.25's merge of a re-sent alert and turns every
-- firing/resolved transition into an event appended in the same store unit as the new alert
-- row, so the log and the state never disagree and a transition is logged exactly once.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local events = require "steward.runtime.events"
local time = require "steward.time"
require "steward.alerting.schema"

local ipairs, pairs, concat, unpack = ipairs, pairs, table.concat, unpack

local M = {}

-- A conflicting writer (another instance read the same revision) makes our unit fail; we
-- wait a little (random, so that racers part), read again and redo the merge, this many times.
local ATTEMPTS = 10

local ALERT_COLS = "fingerprint, revision, labels, annotations, starts_at, ends_at, updated_at, generator_url, timeout, announced"

local function row_alert(r)
  return {
    fingerprint = r.fingerprint, revision = r.revision, labels = json.decode(r.labels),
    annotations = json.decode(r.annotations), starts_at = r.starts_at, ends_at = r.ends_at,
    updated_at = r.updated_at, generator_url = r.generator_url, timeout = r.timeout ~= 0,
    announced = r.announced,
  }
end

M.ALERT_COLS, M.row_alert = ALERT_COLS, row_alert

-- The rows of the given fingerprints: {fingerprint = alert}.
local function read(st, fps)
  local out, list = {}, {}
  for fp in pairs(fps) do list[#list + 1] = fp end
  for first = 1, #list, 200 do
    local marks, params = {}, {}
    for i = first, math.min(first + 199, #list) do
      params[#params + 1] = list[i]
      marks[#marks + 1] = "$" .. #params
    end
    local rows, err = st.db:query("SELECT " .. ALERT_COLS .. " FROM alerts WHERE fingerprint IN (" ..
      concat(marks, ",") .. ")", unpack(params))
    if not rows then return nil, err end
    for _, r in ipairs(rows) do out[r.fingerprint] = row_alert(r) end
  end
  return out
end

-- get(st, fingerprints) -> {fingerprint = alert} for those that exist | nil, err.
-- fingerprints: an array or a set {fp = true}. The notification engine reads members here.
function M.get(st, fps)
  if fps[1] ~= nil then
    local set = {}
    for _, fp in ipairs(fps) do set[fp] = true end
    fps = set
  end
  return read(st, fps)
end

-- firing(st, now) -> the alerts whose endsAt is after now (inhibition's source alerts).
function M.firing(st, now)
  local rows, err = st.db:query("SELECT " .. ALERT_COLS .. " FROM alerts WHERE ends_at > $1", now)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row_alert(r) end
  return rows
end

-- cleanup(st, before) -> number of rows deleted | nil, err: resolved alerts already announced
-- resolved and silences that expired, both before `before` (now - alerting.retention).
function M.cleanup(st, before)
  local res, err = st.db:batch({
    { "DELETE FROM alerts WHERE announced = 'resolved' AND ends_at < $1", before },
    { "DELETE FROM alert_silences WHERE ends_at < $1", before },
  })
  if not res then return nil, err end
  return (res[1].changes or 0) + (res[2].changes or 0)
end

-- list(st) -> every stored alert (resolved ones included), by fingerprint.
function M.list(st)
  local rows, err = st.db:query("SELECT " .. ALERT_COLS .. " FROM alerts ORDER BY fingerprint")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row_alert(r) end
  return rows
end

-- The event data: the alert as Alertmanager's webhook shows it, with its fingerprint.
function M.event_data(a, status, fmt)
  return { status = status, fingerprint = a.fingerprint, labels = a.labels,
    annotations = a.annotations, startsAt = fmt(a.starts_at), endsAt = fmt(a.ends_at),
    generatorURL = a.generator_url }
end

-- types.Alert.Merge: o is the stored alert, a the younger one.
local function merge(o, a)
  local res = {}
  for k, v in pairs(a) do res[k] = v end
  if o.starts_at < a.starts_at then res.starts_at = o.starts_at end
  local a_resolved = a.ends_at <= a.updated_at
  if a_resolved then
    if o.ends_at <= a.updated_at and o.ends_at > a.ends_at then res.ends_at = o.ends_at end
  elseif o.ends_at > a.ends_at and not o.timeout then
    res.ends_at = o.ends_at
  end
  return res
end

-- Alertmanager's provider.Put: merge only when the activity ranges overlap.
local function put(o, a)
  if o and ((a.ends_at > o.starts_at and a.ends_at < o.ends_at) or
            (a.starts_at > o.starts_at and a.starts_at < o.ends_at)) then
    return merge(o, a)
  end
  return a
end

local function write_statements(stmts, base, new)
  if base then
    stmts[#stmts + 1] = { "DELETE FROM alerts WHERE fingerprint = $1 AND revision = $2", base.fingerprint, base.revision }
  end
  stmts[#stmts + 1] = { "INSERT INTO alerts (" .. ALERT_COLS .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
    new.fingerprint, (base and base.revision or 0) + 1, json.encode(new.labels), json.encode(new.annotations),
    new.starts_at, new.ends_at, new.updated_at, new.generator_url, new.timeout and 1 or 0, new.announced }
end

-- Runs statements plus the transition events as one unit. -> fresh events (with seq) | nil, err
local function commit(st, stmts, evs, now)
  local texts = {}
  for i, ev in ipairs(evs) do texts[i] = json.encode(ev.data) end
  local first_event = #stmts + 1
  if #evs > 0 then
    for _, s in ipairs(events.insert_statements(evs, texts, now)) do stmts[#stmts + 1] = s end
  end
  local res, err = st.db:batch(stmts)
  if not res then return nil, err end
  local seqs = {}
  for i = first_event, #res do
    for _, row in ipairs(res[i].rows or {}) do seqs[row.id] = row.seq end
  end
  local fresh = {}
  for _, ev in ipairs(evs) do
    if seqs[ev.id] then ev.seq = seqs[ev.id]; fresh[#fresh + 1] = ev end
  end
  return fresh
end

local function event(type_, a, status, opts)
  return { id = util.uuidv7(opts.now), type = type_, tenant = opts.tenant, source = "steward.alerting",
    time = opts.now, data = M.event_data(a, status, opts.format) }
end

-- apply(st, alerts, opts) -> {alerts = stored, events = fresh events} | nil, err.
-- alerts: validated {fingerprint, labels, annotations, starts_at, ends_at, timeout,
-- generator_url}; opts = {now, tenant, format = time -> string}.
function M.apply(st, list, opts)
  local now = opts.now
  local fps = {}
  for _, a in ipairs(list) do fps[a.fingerprint] = true end
  local err
  for attempt = 1, ATTEMPTS do
    if attempt > 1 then time.sleep(math.random() * 0.005 * attempt) end
    local stored
    stored, err = read(st, fps)
    if not stored then return nil, err end
    local base, cur, order, evs = {}, {}, {}, {}
    for _, a in ipairs(list) do
      local fp = a.fingerprint
      if base[fp] == nil then
        base[fp] = stored[fp] or false
        cur[fp] = stored[fp]
        order[#order + 1] = fp
      end
      local o = cur[fp]
      a.updated_at = now
      local new = put(o, a)
      local was_firing = o ~= nil and o.announced == "firing"
      if was_firing and o.ends_at <= now then
        -- It timed out before the sweep saw it: its resolution is still owed.
        evs[#evs + 1] = event("alert.resolved", o, "resolved", opts)
        was_firing = false
      end
      local active = new.ends_at > now
      if active and not was_firing then
        evs[#evs + 1] = event("alert.firing", new, "firing", opts)
      elseif not active and was_firing then
        evs[#evs + 1] = event("alert.resolved", new, "resolved", opts)
      end
      new.announced = active and "firing" or "resolved"
      cur[fp] = new
    end
    local stmts = {}
    for _, fp in ipairs(order) do write_statements(stmts, base[fp] or nil, cur[fp]) end
    local fresh
    fresh, err = commit(st, stmts, evs, now)
    if fresh then
      local out = {}
      for i, fp in ipairs(order) do out[i] = cur[fp] end
      return { alerts = out, events = fresh }
    end
  end
  return nil, err
end

-- sweep(st, opts) -> fresh events | nil, err: announces the resolution of every alert whose
-- endsAt passed (resolve_timeout ran out) since it was announced firing.
function M.sweep(st, opts)
  local rows, err = st.db:query("SELECT " .. ALERT_COLS ..
    " FROM alerts WHERE announced = 'firing' AND ends_at <= $1 ORDER BY fingerprint LIMIT 500", opts.now)
  if not rows then return nil, err end
  local all = {}
  for _, r in ipairs(rows) do
    local o = row_alert(r)
    local new = {}
    for k, v in pairs(o) do new[k] = v end
    new.announced = "resolved"
    local stmts = {}
    write_statements(stmts, o, new)
    -- A lost race means another writer handled this alert; the next sweep looks again.
    local fresh = commit(st, stmts, { event("alert.resolved", o, "resolved", opts) }, opts.now)
    for _, ev in ipairs(fresh or {}) do all[#all + 1] = ev end
  end
  return all
end

-- ---- silences ----

local SIL_COLS = "id, matchers, starts_at, ends_at, updated_at, created_by, comment"

local function row_silence(r)
  return { id = r.id, matchers = json.decode(r.matchers), starts_at = r.starts_at, ends_at = r.ends_at,
    updated_at = r.updated_at, created_by = r.created_by, comment = r.comment }
end

M.SIL_COLS, M.row_silence = SIL_COLS, row_silence

function M.silences(st)
  local rows, err = st.db:query("SELECT " .. SIL_COLS .. " FROM alert_silences")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row_silence(r) end
  return rows
end

-- Silences that may be active at now (the rest cannot mute anything).
function M.current_silences(st, now)
  local rows, err = st.db:query("SELECT " .. SIL_COLS .. " FROM alert_silences WHERE starts_at <= $1 AND ends_at >= $1", now)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row_silence(r) end
  return rows
end

function M.silence(st, id)
  local rows, err = st.db:query("SELECT " .. SIL_COLS .. " FROM alert_silences WHERE id = $1", id)
  if not rows then return nil, err end
  return rows[1] and row_silence(rows[1]) or false
end

-- put_silence(st, s): insert or replace; s.matchers is the API's matcher array.
function M.put_silence(st, s)
  local res, err = st.db:exec([[INSERT INTO alert_silences (]] .. SIL_COLS .. [[)
    VALUES ($1,$2,$3,$4,$5,$6,$7)
    ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, starts_at = excluded.starts_at,
      ends_at = excluded.ends_at, updated_at = excluded.updated_at, created_by = excluded.created_by,
      comment = excluded.comment]],
    s.id, json.encode(s.matchers), s.starts_at, s.ends_at, s.updated_at, s.created_by, s.comment)
  if not res then return nil, err end
  return true
end

-- expire_silence(st, id, starts_at, ends_at, now): only if the row is unchanged since read.
function M.expire_silence(st, s, now)
  local res, err = st.db:exec("UPDATE alert_silences SET starts_at = $2, ends_at = $3, updated_at = $3 WHERE id = $1 AND updated_at = $4",
    s.id, s.starts_at, now, s.updated_at)
  if not res then return nil, err end
  return res.changes > 0
end

return M
