-- One flush of an aggregation group, as Alertmanager 0.25's aggrGroup.flush and notification
-- pipeline do it: read the members' current alerts (an alert whose endsAt passed is resolved
-- at this instant), apply the mute stages, then per integration of the receiver decide with
-- the notification log (DedupStage) and send (RetryStage: resolved alerts only to
-- send_resolved integrations). Only when every integration succeeded are the resolved alerts
-- removed from the group, and only those unchanged since they were read.
local astore = require "steward.alerting.store"
local groups = require "steward.alerting.engine.groups"
local nlog = require "steward.alerting.engine.nlog"
local mute = require "steward.alerting.engine.mute"
local util = require "steward.alerting.engine.util"

local ipairs, pairs, tostring, format, floor, concat, sort =
  ipairs, pairs, tostring, string.format, math.floor, table.concat, table.sort

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
  local res, err = integ.channel:send(d.message, { key = d.key })
  if not res then return nil, err end
  return true
end

-- next_after(g, now): the flush after this one, at an exact multiple of group_interval after
-- the first flush (a late timer does not shift the schedule; missed ticks are skipped).
local function next_after(g, route, now)
  local gi = route.group_interval
  if not g.flushed then return now + gi end
  if g.next_flush + gi > now then return g.next_flush + gi end
  return g.next_flush + gi * (floor((now - g.next_flush) / gi) + 1)
end

-- The flush's reads, one round trip: the group's alerts (members, plus `extra`, an alert
-- joining in the same unit), the silences that may be active, the group's notification log,
-- and, when configured, the firing alerts (inhibition sources) and the held (flapping) ones.
local function read_all(eng, st, g, now, extra)
  local reads = {
    { "SELECT " .. astore.ALERT_COLS .. " FROM alerts WHERE fingerprint IN " ..
      "(SELECT fingerprint FROM alert_group_members WHERE group_id = $1) OR fingerprint = $2", g.id, extra or "" },
    { "SELECT " .. astore.SIL_COLS .. " FROM alert_silences WHERE starts_at <= $1 AND ends_at >= $1", now },
    nlog.read_statement(g.group_key, g.receiver),
  }
  local inh, fl
  if #eng.inhibitor.rules > 0 then
    reads[#reads + 1] = { "SELECT " .. astore.ALERT_COLS .. " FROM alerts WHERE ends_at > $1", now }
    inh = #reads
  end
  if eng.flap then
    reads[#reads + 1] = { "SELECT fingerprint, held_until FROM alert_flaps WHERE held_until > $1", now }
    fl = #reads
  end
  local res, err = st.db:batch(reads)
  if not res then return nil, err end
  local data = { silences = mute.silences(res[2].rows or {}), entries = nlog.entries(res[3].rows or {}) }
  if inh then
    data.firing = {}
    for i, r in ipairs(res[inh].rows or {}) do data.firing[i] = astore.row_alert(r) end
  end
  if fl then
    data.held = {}
    for _, r in ipairs(res[fl].rows or {}) do data.held[r.fingerprint] = r.held_until end
  end
  local alerts = {}
  for i, r in ipairs(res[1].rows or {}) do alerts[i] = astore.row_alert(r) end
  return alerts, data
end

-- run(eng, st, g, route, now [, extra]) -> {stmts, next_flush, notified, ok} | nil, err. The
-- caller arms the next timer and commits stmts (after its own, e.g. the group's creation).
function M.run(eng, st, g, route, now, extra)
  local alerts, data = read_all(eng, st, g, now, extra)
  if not alerts then return nil, data end
  -- members whose alert row is gone (retention) leave
  local stmts = { { "DELETE FROM alert_group_members WHERE group_id = $1 AND NOT EXISTS " ..
    "(SELECT 1 FROM alerts WHERE alerts.fingerprint = alert_group_members.fingerprint)", g.id } }
  for _, a in ipairs(alerts) do a.resolved = a.ends_at <= now end
  util.sort_alerts(alerts)
  local ok_all, notified, outbox = true, {}, {}
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
      for idx, integ in ipairs(eng.receivers[g.receiver] or {}) do
        local entry = data.entries[idx]
        local need, why = nlog.needs_update(entry, fset, rset, integ.send_resolved, nlog.repeat_for(entry, route), now)
        if need then
          local ok, derr = deliver(eng, st, g, integ, idx, unmuted, firing, now)
          if ok and derr then outbox[#outbox + 1] = derr end
          if ok then
            local repeats = (why == "repeat" and entry) and (entry.repeats + 1) or 0
            stmts[#stmts + 1] = nlog.log_statement(g.group_key, g.receiver, idx, firing, resolved, now, repeats)
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
      for _, a in ipairs(alerts) do
        if a.resolved then stmts[#stmts + 1] = groups.remove_statement(g.id, a.fingerprint, a.revision) end
      end
    end
  end
  local nf = next_after(g, route, now)
  stmts[#stmts + 1] = groups.advance_statement(g, nf)
  stmts[#stmts + 1] = groups.delete_if_empty_statement(g.id)
  return { stmts = stmts, next_flush = nf, notified = notified, ok = ok_all, outbox = outbox }
end

M.next_after = next_after
return M
