-- steward.deploy.supervisor_alerts: alerts about deployments fed into the alerting pipeline
-- as Alertmanager alerts (the way steward.alerting.slo_alerts feeds SLO breaches), so a failed
-- service or an aborted rollout is routed, grouped, silenced, escalated and paged like any
-- alert posted to /api/v2/alerts. Used by the shipped policy deploy.alerts; guarded by the
-- `alerting` capability.
local fingerprint = require "steward.alerting.fingerprint"
local astore = require "steward.alerting.store"
local time = require "steward.time"

local type, pairs, tostring, error = type, pairs, tostring, error

local M = {}

M.FIRING_FOR = 7 * 86400 -- a firing alert's endsAt: it is resolved by an event, not by a timeout

local function strings(t, where)
  if type(t) ~= "table" then error(where .. ": table of strings expected", 3) end
  local out = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" or not k:match("^[A-Za-z_][A-Za-z0-9_]*$") then error(where .. ": invalid label name " .. tostring(k), 3) end
    if v ~= nil then out[k] = tostring(v) end
  end
  return out
end

local function send(labels, annotations, firing, ends_for)
  local st = require("steward.runtime.store").default()
  if not st then return nil, "no store: inside the daemon or a spec there is one" end
  local now = time.now()
  local a = { fingerprint = fingerprint.of(labels), labels = labels, annotations = annotations or {},
    starts_at = now, ends_at = firing and now + (ends_for or M.FIRING_FOR) or now, timeout = false, generator_url = "" }
  local res, err = astore.apply(st, { a }, { now = now, format = require("steward.alerting.api").format_time })
  if not res then return nil, err end
  require("steward.runtime.events").published(st, res.events)
  return { fingerprint = a.fingerprint, events = #res.events }
end

-- fire{labels = {alertname=, ...}, annotations = {...}, ends_for = seconds} -> {fingerprint, events} | nil, err
-- need(ev, field) -> ev.data, or raises naming the event and the missing data field (a
-- handler's error: the event is retried, then parked as a dead letter).
function M.need(ev, field)
  local d = ev.data
  if type(d) ~= "table" or d[field] == nil then
    error(("%s event %s has no data.%s"):format(ev.type, tostring(ev.id), field), 0)
  end
  return d
end

function M.fire(a)
  if type(a) ~= "table" then error("supervisor_alerts.fire: alert table expected", 2) end
  local labels = strings(a.labels, "supervisor_alerts.fire: labels")
  if not labels.alertname then error("supervisor_alerts.fire: labels.alertname: required", 2) end
  return send(labels, strings(a.annotations or {}, "supervisor_alerts.fire: annotations"), true, a.ends_for)
end

-- resolve{labels = {...}} -> {fingerprint, events} | nil, err (events = 0 when it was not firing)
function M.resolve(a)
  if type(a) ~= "table" then error("supervisor_alerts.resolve: alert table expected", 2) end
  local labels = strings(a.labels, "supervisor_alerts.resolve: labels")
  if not labels.alertname then error("supervisor_alerts.resolve: labels.alertname: required", 2) end
  local st = require("steward.runtime.store").default()
  local fp = fingerprint.of(labels)
  local cur = st and astore.get(st, { fp })
  local stored = cur and cur[fp]
  if not stored or stored.announced ~= "firing" then return { fingerprint = fp, events = 0 } end
  return send(labels, stored.annotations, false)
end

return M
