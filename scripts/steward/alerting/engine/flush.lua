-- One flush of an aggregation group, as Alertmanager 0.25's aggrGroup.flush and notification
-- pipeline do it: read the members' current alerts (an alert whose endsAt passed is resolved
-- at this instant), apply the mute stages, then per integration of the receiver decide with
-- the notification log (DedupStage) and send (RetryStage: resolved alerts only to
-- send_resolved integrations). Only when every integration succeeded are the resolved alerts
-- removed from the group. The group and the log are the engine's memory
-- (steward.alerting.engine.journal); the flush journals what it changed.
local astore = require "steward.alerting.store"
local journal = require "steward.alerting.engine.journal"
local nlog = require "steward.alerting.engine.nlog"
local mute = require "steward.alerting.engine.mute"
local util = require "steward.alerting.engine.util"
local time = require "steward.time"

local ipairs, pairs, next, tostring, format, floor, concat, sort, max =
  ipairs, pairs, next, tostring, string.format, math.floor, table.concat, table.sort, math.max

local M = {}

-- The severities an incident takes (steward.alerting.incidents); other label values are ignored.
local SEVERITIES = { critical = true, error = true, warning = true, info = true }

local function common(alerts, field)
  local out = {}
  if #alerts == 0 then return out end
  for k, v in pairs(alerts[1][field]) do
    local all = true
    for i = 2, #alerts do if alerts[i][field][k] ~= v then all = false break end end
    if all then out[k] = v end
  end
  return out
end

-- The title Alertmanager's default templates show: [FIRING:n] group label values.
local function title(status, nfiring, group_labels)
  local vals = {}
  for _, k in ipairs(util.sorted_keys(group_labels)) do vals[#vals + 1] = group_labels[k] end
  local head = status == "firing" and format("[FIRING:%d]", nfiring) or "[RESOLVED]"
  return head .. (#vals > 0 and (" " .. concat(vals, " ")) or "")
end

-- The message every notify kind understands; the webhook kind turns it into the v4 payload.
local function message(g, list, nfiring)
  local status = nfiring > 0 and "firing" or "resolved"
  local alerts = {}
  for i, a in ipairs(list) do
    alerts[i] = { status = a.resolved and "resolved" or "firing", labels = a.labels, annotations = a.annotations,
      starts_at = a.starts_at, ends_at = a.resolved and a.ends_at or nil, generatorURL = a.generator_url,
      fingerprint = a.fingerprint }
  end
  local labels = common(list, "labels")
  local annotations = common(list, "annotations")
  return { status = status, group_key = g.group_key, group_labels = g.labels, alerts = alerts,
    labels = labels, annotations = annotations, severity = labels.severity,
    title = title(status, nfiring, g.labels), dedup_key = util.hash(g.group_key .. "\0" .. g.receiver),
    source = "steward alerting", group = g.receiver }
end

-- deliver(...) -> true [, outbox event] | nil, err
local function deliver(eng, st, g, integ, idx, list, firing, now)
  local nfiring = #firing
  if integ.kind == "incident" then
    local incidents = eng:incidents_module()
    local key = "alerting:" .. util.hash(g.group_key .. "\0" .. g.receiver .. "\0" .. idx)
    if nfiring > 0 then
      local msg = message(g, list, nfiring)
      local alerts = {}
      for _, a in ipairs(msg.alerts) do
        if a.status == "firing" then alerts[#alerts + 1] = { fingerprint = a.fingerprint, labels = a.labels,
          annotations = a.annotations, status = a.status } end
      end
      local first = alerts[1] and alerts[1].annotations or {}
      local ok, err = incidents.trigger(st, { key = key, service = integ.service, escalation = integ.escalation,
        severity = integ.severity or (SEVERITIES[msg.severity] and msg.severity) or "critical", title = msg.title,
        summary = first.summary or first.description or msg.title, labels = g.labels, alerts = alerts,
        group_key = g.group_key, source = "alerting" })
      if not ok then return nil, tostring(err) end
      return true
    end
    local ok, err = incidents.resolve_key(st, key, { actor = "alerting", reason = "all alerts resolved" })
    if ok == nil and err then return nil, tostring(err) end
    return true
  end
  local send = list
  if not integ.send_resolved then
    -- Only resolved alerts and the integration does not want them: counted as notified, so
    -- that the log forgets the firing ones (RetryStage).
    if nfiring == 0 then return true end
    send = {}
    for _, a in ipairs(list) do if not a.resolved then send[#send + 1] = a end end
  end
  local key = format("%s/%s/%d/%d", util.hash(g.id .. "\0" .. g.epoch), g.receiver, idx, g.gen)
  if #key > 255 then key = format("%s/%s/%d/%d", util.hash(g.id .. "\0" .. g.epoch), util.hash(g.receiver), idx, g.gen) end
  local msg = message(g, send, nfiring)
  if eng.outbox then
    -- Sent later, by the handling of this event (committed with the flush): a slow or dead
    -- receiver then holds up only its own group's notifications, not the alerting key.
    return true, { id = "alerting.notify:" .. key, type = M.NOTIFY_EVENT, source = "steward.alerting", time = now,
      data = { group = g.id, receiver = g.receiver, integration = idx, key = key, message = msg } }
  end
  local res, err = integ.channel:send(msg, { key = key })
  if not res then return nil, err end
  return true
end

M.NOTIFY_EVENT = "alerting.notify"
-- The longest a send waits for a dead run's claim (the engine's channels lease 1m by default;
-- the shipped policy's handler timeout is 2m).
local MAX_LEASE_WAIT = 90

-- send(eng, ev) -> true | nil, err: the send an outbox event stands for, with its key (a
-- re-run after a crash or an error sends nothing twice). A receiver removed from the
-- configuration since the flush is skipped, with a warning.
function M.send(eng, ev)
  local d = ev.data or {}
  local integ = (eng.receivers[d.receiver] or {})[d.integration]
  if not integ or integ.kind == "incident" or not integ.channel then
    eng:log("warn", "alerting: notification for a receiver no longer configured is dropped",
      { receiver = tostring(d.receiver), integration = tostring(d.integration) })
    return true
  end
  for _ = 1, 2 do
    local res, err, info = integ.channel:send(d.message, { key = d.key })
    if res then return true end
    -- "Being sent by another sender": only this event's dispatch key sends this notification,
    -- so the claim is a run that died mid-send (kill -9; its lease outlives it). Whether that
    -- send reached the receiver is unknown: once the lease has run out, send again (at least
    -- once; the channel's lease bounds the wait).
    if not (type(info) == "table" and info.status == "sending" and type(info.lease_until) == "number") then
      return nil, err
    end
    local wait = info.lease_until - time.now()
    if wait > MAX_LEASE_WAIT then return nil, err end
    eng:log("info", "alerting: a notification claimed by a run that died is sent again when its lease ends",
      { key = d.key, wait = wait })
    time.sleep(max(0, wait) + 0.05)
  end
  return nil, "notification " .. tostring(d.key) .. " still claimed after its lease"
end

-- next_after(g, now): the flush after this one, at an exact multiple of group_interval after
-- the first flush (a late timer does not shift the schedule; missed ticks are skipped).
local function next_after(g, route, now)
  local gi = route.group_interval
  if not g.flushed then return now + gi end
  if g.next_flush + gi > now then return g.next_flush + gi end
  return g.next_flush + gi * (floor((now - g.next_flush) / gi) + 1)
end

-- The flush's reads: the group's alerts (its members in memory, plus `extra`, an alert
-- joining in the same run) from the API's rows, and, when flap detection is on, the held
-- alerts. The silences and inhibition sources are read once per run (journal.begin,
-- journal.firing); the notification log is in memory.
local function read_all(eng, tx, g, now, extra)
  local fps = {}
  for fp in pairs(g.members) do fps[fp] = true end
  if extra then fps[extra] = true end
  local rows, err = astore.get(tx.st, fps)
  if not rows then return nil, err end
  if not tx.silences then tx.silences = mute.silences(tx.silence_rows) end
  local firing, ferr = journal.firing(eng, tx)
  if ferr then return nil, ferr end
  local data = { silences = tx.silences, firing = firing,
    entries = tx.state.nlog[journal.nlog_key(g.group_key, g.receiver)] or {} }
  if eng.flap then
    local held
    held, err = tx.st.db:query("SELECT fingerprint, held_until FROM alert_flaps WHERE held_until > $1", now)
    if not held then return nil, err end
    data.held = {}
    for _, r in ipairs(held) do data.held[r.fingerprint] = r.held_until end
  end
  local alerts = {}
  for fp in pairs(fps) do
    if rows[fp] then alerts[#alerts + 1] = rows[fp] end
  end
  return alerts, data, rows
end

-- run(eng, tx, g, route, now [, extra]) -> {next_flush, notified, ok} | nil, err. Changes
-- the group and the notification log in memory and adds the statements that journal it
-- to tx, with the notifications to send (tx.outbox); the caller arms the next timer.
function M.run(eng, tx, g, route, now, extra)
  local alerts, data, rows = read_all(eng, tx, g, now, extra)
  if not alerts then return nil, data end
  -- members whose alert row is gone (retention) leave
  for fp in pairs(g.members) do
    if not rows[fp] then
      g.members[fp] = nil
      journal.add(tx, journal.drop_member_statement(g.id, fp))
    end
  end
  for _, a in ipairs(alerts) do a.resolved = a.ends_at <= now end
  util.sort_alerts(alerts)
  local ok_all, notified = true, {}
  if #alerts > 0 then
    local unmuted, muted = mute.filter(eng, route, alerts, now, data)
    if not unmuted then return nil, muted end
    if #unmuted > 0 then
      local firing, resolved = {}, {}
      for _, a in ipairs(unmuted) do
        if a.resolved then resolved[#resolved + 1] = a.fingerprint else firing[#firing + 1] = a.fingerprint end
      end
      sort(firing); sort(resolved)
      local fset, rset = util.set(firing), util.set(resolved)
      local nk = journal.nlog_key(g.group_key, g.receiver)
      for idx, integ in ipairs(eng.receivers[g.receiver] or {}) do
        local entry = data.entries[idx]
        local need, why = nlog.needs_update(entry, fset, rset, integ.send_resolved, nlog.repeat_for(entry, route), now)
        if need then
          local ok, derr = deliver(eng, tx.st, g, integ, idx, unmuted, firing, now)
          if ok and derr then tx.outbox[#tx.outbox + 1] = derr end
          if ok then
            local repeats = (why == "repeat" and entry) and (entry.repeats + 1) or 0
            journal.add(tx, nlog.log_statement(g.group_key, g.receiver, idx, firing, resolved, now, repeats))
            local entries = tx.state.nlog[nk] or {}
            tx.state.nlog[nk] = entries
            entries[idx] = { firing = fset, resolved = rset, sent_at = now, repeats = repeats }
            data.entries = entries
            notified[#notified + 1] = { receiver = g.receiver, integration = idx, firing = firing, resolved = resolved, why = why }
          else
            ok_all = false
            eng:log("warn", "alerting: notification failed", { group = g.group_key, receiver = g.receiver,
              integration = idx, error = tostring(derr) })
          end
        end
      end
    end
    if ok_all then
      -- A resolved alert that fires again is announced by a new alert.firing event, which
      -- puts it back in its group.
      for _, a in ipairs(alerts) do
        if a.resolved and g.members[a.fingerprint] then
          g.members[a.fingerprint] = nil
          journal.add(tx, journal.drop_member_statement(g.id, a.fingerprint))
        end
      end
    end
  end
  local nf = next_after(g, route, now)
  g.gen, g.flushed, g.next_flush = g.gen + 1, true, nf
  if next(g.members) == nil then
    tx.state.groups[g.id] = nil
    for _, st in ipairs(journal.delete_group_statements(g.id)) do journal.add(tx, st) end
  else
    journal.add(tx, journal.group_statement(g))
  end
  return { next_flush = nf, notified = notified, ok = ok_all, outbox = tx.outbox }
end

M.next_after = next_after
return M
