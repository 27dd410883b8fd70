-- Generic webhooks in Alertmanager's webhook format, version 4
-- (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config): any receiver
-- written for Alertmanager takes steward's notifications unchanged.
local json = require "steward.json"
local crypto = require "steward.crypto"
local util = require "steward.notify.util"

local K = { options = { url = "string", receiver = "string", external_url = "string", headers = "table",
                        max_alerts = "number" } }

-- Alertmanager writes the zero time.Time for "no end" of a firing alert.
local ZERO_TIME = "0001-01-01T00:00:00Z"

function K.configure(opts, bad)
  if type(opts.url) ~= "string" then bad("url", "string expected, got " .. type(opts.url)) end
  if opts.max_alerts and (opts.max_alerts < 0 or opts.max_alerts ~= math.floor(opts.max_alerts)) then
    bad("max_alerts", "integer >= 0 expected")
  end
  return { url = opts.url, receiver = opts.receiver or opts.name or "steward",
           external_url = opts.external_url or "", headers = opts.headers, max_alerts = opts.max_alerts or 0 }
end

local function strmap(t)
  local out = {}
  for _, kv in ipairs(util.sorted_pairs(t)) do out[kv[1]] = kv[2] end
  return out
end

-- A stable 16-hex-digit identity of a label set (Alertmanager's is a 64-bit hash of the
-- sorted labels; receivers only compare it, so any stable hash of the same input does).
local function fingerprint(labels)
  local parts = {}
  for _, kv in ipairs(util.sorted_pairs(labels)) do parts[#parts + 1] = kv[1] .. "\255" .. kv[2] end
  return crypto.hex(crypto.sha256(table.concat(parts, "\255"))):sub(1, 16)
end

local function common(maps)
  if #maps == 0 then return {} end
  local out = {}
  for k, v in pairs(maps[1]) do
    local all = true
    for i = 2, #maps do if maps[i][k] ~= v then all = false break end end
    if all then out[k] = v end
  end
  return out
end

local function label_string(t)
  local parts = {}
  for _, kv in ipairs(util.sorted_pairs(t)) do parts[#parts + 1] = kv[1] .. "=" .. string.format("%q", kv[2]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- An alert of the payload, from an alert table of the message or from the message itself.
local function alert(a, msg, now)
  local labels = strmap(a.labels)
  local annotations = strmap(a.annotations)
  local status = a.status or msg.status or "firing"
  local ends = a.endsAt or a.ends_at
  if ends == nil then ends = status == "resolved" and now or ZERO_TIME end
  return { status = status, labels = labels, annotations = annotations,
           startsAt = util.time_string(a.startsAt or a.starts_at, msg.time or now),
           endsAt = util.time_string(ends),
           generatorURL = tostring(a.generatorURL or a.generator_url or msg.url or ""),
           fingerprint = a.fingerprint or fingerprint(labels) }
end

function K.template(msg, ctx)
  local cfg = ctx and ctx.cfg or { receiver = "steward", external_url = "", max_alerts = 0 }
  local now = ctx and ctx.now or os.time()
  local src = msg.alerts
  if type(src) ~= "table" or #src == 0 then
    local labels = {}
    for k, v in pairs(msg.labels or {}) do labels[k] = v end
    labels.alertname = labels.alertname or util.title(msg)
    local annotations = {}
    for k, v in pairs(msg.annotations or {}) do annotations[k] = v end
    annotations.summary = annotations.summary or msg.title
    annotations.description = annotations.description or msg.text
    if msg.severity then labels.severity = labels.severity or util.severity(msg.severity) end
    src = { { labels = labels, annotations = annotations } }
  end
  local alerts, firing = json.array(), false
  for i, a in ipairs(src) do
    alerts[i] = alert(a, msg, now)
    if alerts[i].status == "firing" then firing = true end
  end
  local truncated = 0
  if cfg.max_alerts > 0 and #alerts > cfg.max_alerts then
    truncated = #alerts - cfg.max_alerts
    for i = #alerts, cfg.max_alerts + 1, -1 do alerts[i] = nil end
  end
  local labelsets, annsets = {}, {}
  for i, a in ipairs(alerts) do labelsets[i], annsets[i] = a.labels, a.annotations end
  local group_labels = strmap(msg.group_labels)
  return {
    version = "4",
    groupKey = msg.group_key or ("{}:" .. label_string(group_labels)),
    truncatedAlerts = truncated,
    status = firing and "firing" or "resolved",
    receiver = cfg.receiver,
    groupLabels = group_labels,
    commonLabels = common(labelsets),
    commonAnnotations = common(annsets),
    externalURL = cfg.external_url,
    alerts = alerts,
  }
end

function K.request(cfg, payload)
  local headers = { ["Content-Type"] = "application/json" }
  for k, v in pairs(cfg.headers or {}) do headers[k] = v end
  return { http = { url = cfg.url, method = "POST", headers = headers, body = assert(json.encode(payload)) } }
end

return K
