-- steward.alerting.api: the part of Alertmanager 0.25's HTTP API v2 that Prometheus and amtool
-- use (alerts, silences, status), mounted on the daemon's router (docs/alerting.md). Errors
-- are JSON strings, as Alertmanager's handlers answer, so amtool shows the message.
local json = require "steward.json"
local time = require "steward.time"
local task = require "steward.task"
local util = require "steward.runtime.store.util"
local httpd = require "steward.httpd"
local fingerprint = require "steward.alerting.fingerprint"
local matchers = require "steward.alerting.matchers"
local silences = require "steward.alerting.silences"
local astore = require "steward.alerting.store"
local audit_digest = require("steward.runtime.store.audit").digest
require "steward.alerting.engine.schema" -- the engine's tables migrate with the API's

local type, ipairs, pairs, next, tostring, floor, format, sort, concat =
  type, ipairs, pairs, next, tostring, math.floor, string.format, table.sort, table.concat

local M = {}

M.RESOLVE_TIMEOUT = 300 -- Alertmanager's global.resolve_timeout default (5m)
M.SWEEP_INTERVAL = 1 -- seconds between looks for alerts whose endsAt passed
M.CLEANUP_INTERVAL = 300 -- seconds between deletions of state older than alerting.retention
M.RETENTION = 120 * 3600 -- Alertmanager's --data.retention default
local GO_ZERO = -62135596800 -- 0001-01-01T00:00:00Z, Go's zero time: "not set"
local RECEIVER = "steward"

local JSON = { ["content-type"] = "application/json" }
local function reply(status, body) return status, JSON, json.encode(body) end
local function message(status, text) return status, JSON, json.encode(text) end

-- strfmt.DateTime's layout, millisecond precision.
local function fmt(t)
  local s = floor(t)
  local ms = floor((t - s) * 1000 + 0.5)
  if ms >= 1000 then s, ms = s + 1, 0 end
  return util.format_rfc3339(s):sub(1, -2) .. format(".%03dZ", ms)
end
M.format_time = fmt

-- A time field: nil when absent, null or Go's zero time; else seconds, or nil, err.
local function time_field(v)
  if v == nil or v == json.null then return nil end
  if type(v) ~= "string" then return false, "RFC 3339 date-time string expected, got " .. type(v) end
  local t, err = util.parse_rfc3339(v)
  if not t then return false, err end
  if t <= GO_ZERO then return nil end
  return t
end

local NAME = "^[A-Za-z_][A-Za-z0-9_]*$"

-- A decoded JSON array (json.is_array only knows the empty ones).
local function is_list(t) return type(t) == "table" and (t[1] ~= nil or json.is_array(t)) end

-- model.LabelSet.Validate on a JSON object; empty values are dropped first for labels
-- (Alertmanager's removeEmptyLabels). -> set | nil, reason
local function label_set(v, drop_empty)
  if v == nil or v == json.null then return {} end
  if type(v) ~= "table" or is_list(v) then return nil, "object expected" end
  local out = {}
  for k, val in pairs(v) do
    if type(val) ~= "string" then return nil, format("value of %q: string expected, got %s", tostring(k), type(val)) end
    if not (drop_empty and val == "") then
      if type(k) ~= "string" or not k:match(NAME) then return nil, format("invalid name %q", tostring(k)) end
      if not matchers.valid_utf8(val) then return nil, format("invalid value %q", val) end
      out[k] = val
    end
  end
  return out
end

-- One postableAlert -> alert | nil, "field: reason" (the API handler's defaults applied).
local function postable(raw, now, resolve_timeout)
  if type(raw) ~= "table" or is_list(raw) then return nil, "object expected" end
  if raw.labels == nil or raw.labels == json.null then return nil, "labels: labels in body is required" end
  local labels, err = label_set(raw.labels, true)
  if not labels then return nil, "labels: invalid label set: " .. err end
  if next(labels) == nil then return nil, "labels: at least one label pair required" end
  local annotations
  annotations, err = label_set(raw.annotations, false)
  if not annotations then return nil, "annotations: invalid annotations: " .. err end
  local starts, serr = time_field(raw.startsAt)
  if starts == false then return nil, "startsAt: " .. serr end
  local ends, eerr = time_field(raw.endsAt)
  if ends == false then return nil, "endsAt: " .. eerr end
  local gen = raw.generatorURL
  if gen == json.null then gen = nil end
  if gen ~= nil and type(gen) ~= "string" then return nil, "generatorURL: string expected, got " .. type(gen) end
  if not starts then starts = ends or now end
  local timeout = false
  if not ends then ends, timeout = now + resolve_timeout, true end
  if ends < starts then return nil, "endsAt: start time must be before end time" end
  return { fingerprint = fingerprint.of(labels), labels = labels, annotations = annotations,
    starts_at = starts, ends_at = ends, timeout = timeout, generator_url = gen or "" }
end

-- Only tokens without a tenant: alert state is shared by every tenant.
local function untenanted(principal)
  if principal and principal.tenant then
    return message(403, "the Alertmanager API is not tenant-scoped: use a token without a tenant")
  end
end

-- Alert writes of this process run one after the other (each in a task that first joins the
-- previous one): concurrent re-sends of an alert would otherwise mostly lose the optimistic
-- race in steward.alerting.store and retry. Other instances still race; the revision check
-- keeps that correct.
local last_write
local function serialized(fn, handle_only, ...)
  local prev = last_write
  local h
  h = task.spawn({ name = "alerting.write" }, function(...)
    if prev then prev:join() end
    local a, b = fn(...)
    if last_write == h then last_write = nil end
    return a, b
  end, ...)
  last_write = h
  if handle_only then return h end
  local ok, a, b = h:join()
  if not ok then error(a, 0) end
  return a, b
end

-- Concurrent POSTs are written together: the alerts of every request that arrives while a
-- write is in progress go into the next write, one store unit for all of them (at most
-- COMBINE alerts), instead of one unit and one commit wait per request. A request that finds
-- no write in progress is written at once. Each request learns the outcome of its unit.
local COMBINE = 5000
local round
local function combined_apply(st, list)
  local r = round
  if r and not r.closed and r.n + #list <= COMBINE then
    r.lists[#r.lists + 1] = list
    r.n = r.n + #list
  else
    r = { lists = { list }, n = #list }
    round = r
    r.h = serialized(function()
      r.closed = true
      if round == r then round = nil end
      local all = r.lists[1]
      if #r.lists > 1 then
        all = {}
        for _, l in ipairs(r.lists) do for _, a in ipairs(l) do all[#all + 1] = a end end
      end
      return astore.apply(st, all, { now = time.now(), format = fmt })
    end, true)
  end
  local ok, res, err = r.h:join()
  if not ok then error(res, 0) end
  return res, err, r
end

local function notify(ctx, fresh)
  if ctx.dispatch and #fresh > 0 then ctx.dispatch:notify(fresh) end
end

-- ---- alerts ----

local function post_alerts(ctx, req)
  local body, st, _, err = require("steward.runtime.daemon.api").decode_json(ctx, req.body)
  if body == nil then return message(st, "body: " .. tostring(err)) end
  if not is_list(body) then
    return message(400, "body: array of alerts expected")
  end
  local max = ctx.cfg and ctx.cfg.limits and ctx.cfg.limits.max_batch
  if max and #body > max then
    return message(413, format("%d alerts in one request; the limit is %d (limits.max_batch)", #body, max))
  end
  local now = time.now()
  local valid, errors = {}, {}
  for i, raw in ipairs(body) do
    local a, aerr = postable(raw, now, ctx.alerting.resolve_timeout)
    if a then valid[#valid + 1] = a else errors[#errors + 1] = format("[%d].%s", i - 1, aerr) end
  end
  -- Like Alertmanager: the valid alerts are stored, the invalid ones reported with a 400.
  if #valid > 0 then
    local res
    local r
    res, err, r = combined_apply(ctx.store, valid)
    if not res then return message(500, "the alerts were not stored: " .. tostring(err)) end
    -- The unit's events go to dispatch once, from the request that started the unit.
    if r.lists[1] == valid then notify(ctx, res.events) end
  end
  if #errors > 0 then return message(400, concat(errors, "; ")) end
  return 200, {}, ""
end

local function bool_param(q, name, errors)
  local v = q[name]
  if v == nil then return true end
  if v == "true" then return true elseif v == "false" then return false end
  errors[#errors + 1] = format("%s: true or false expected, got %s", name, tostring(type(v) == "table" and v[1] or v))
  return true
end

-- The filter= parameters (each a matcher list) -> list | nil, err
local function filter_param(q)
  local f = q.filter
  if f == nil then return {} end
  if type(f) ~= "table" then f = { f } end
  local out = {}
  for _, s in ipairs(f) do
    if type(s) ~= "string" then return nil, "filter: matcher expected" end
    local l, err = matchers.parse_list(s)
    if not l then return nil, err end
    for _, m in ipairs(l) do out[#out + 1] = m end
  end
  return out
end

-- api/v2's matchFilterLabels: an empty value matches an absent label for = and =~, and a
-- present one is enough for != and !~.
local function filter_matches(list, set)
  for _, m in ipairs(list) do
    local v = set[m.name]
    if (m.type == "!=" or m.type == "!~") then
      if not (m.value == "" and v ~= nil) and not m:matches_value(v or "") then return false end
    else
      if not (m.value == "" and v == nil) and not m:matches_value(v or "") then return false end
    end
  end
  return true
end

-- The API's matcher objects -> silences.lua silence | nil, err
local function silence_of(s)
  local list = {}
  for i, m in ipairs(s.matchers) do
    local eq = m.isEqual ~= false
    local op = m.isRegex and (eq and "=~" or "!~") or (eq and "=" or "!=")
    local mm, err = matchers.new(op, m.name, m.value)
    if not mm then return nil, format("invalid label matcher %d: %s", i - 1, err) end
    list[i] = mm
  end
  return silences.new({ id = s.id, matchers = list, starts_at = s.starts_at, ends_at = s.ends_at,
    created_by = s.created_by, comment = s.comment, updated_at = s.updated_at })
end

local function active_silences(ctx, now)
  local rows, err = astore.current_silences(ctx.store, now)
  if not rows then return nil, err end
  local out = {}
  for _, s in ipairs(rows) do
    local obj = silence_of(s)
    if obj then out[#out + 1] = obj end
  end
  sort(out, function(a, b) return a.id < b.id end)
  return out
end

local function get_alerts(ctx, req)
  local q = httpd.parse_query(req.query)
  local errors = {}
  local want = {}
  for _, k in ipairs({ "active", "silenced", "inhibited", "unprocessed" }) do want[k] = bool_param(q, k, errors) end
  if #errors > 0 then return message(400, concat(errors, "; ")) end
  local filter, err = filter_param(q)
  if not filter then return message(400, err) end
  if q.receiver ~= nil then
    local re, rerr = matchers.regex(tostring(type(q.receiver) == "table" and q.receiver[1] or q.receiver))
    if not re then return message(400, "receiver: " .. tostring(rerr)) end
    if not re(RECEIVER) then return reply(200, json.array({})) end
  end
  local now = time.now()
  local rows
  rows, err = astore.list(ctx.store)
  if not rows then return message(500, tostring(err)) end
  local sils
  sils, err = active_silences(ctx, now)
  if not sils then return message(500, tostring(err)) end
  local out = {}
  for _, a in ipairs(rows) do
    -- Resolved alerts are never listed (Alertmanager's alertFilter).
    if a.ends_at > now and filter_matches(filter, a.labels) then
      local by = {}
      for i, s in ipairs(silences.muted_by(sils, a.labels, now)) do by[i] = s.id end
      local state = #by > 0 and "suppressed" or "active"
      if (state == "active" and want.active) or (#by > 0 and want.silenced) then
        out[#out + 1] = {
          labels = a.labels, annotations = a.annotations, startsAt = fmt(a.starts_at), endsAt = fmt(a.ends_at),
          updatedAt = fmt(a.updated_at), generatorURL = a.generator_url, fingerprint = a.fingerprint,
          receivers = json.array({ { name = RECEIVER } }),
          status = { state = state, silencedBy = json.array(by), inhibitedBy = json.array({}) },
        }
      end
    end
  end
  return reply(200, json.array(out))
end

-- ---- silences ----

local function gettable_silence(s, now)
  local st = now < s.starts_at and "pending" or now > s.ends_at and "expired" or "active"
  local ms = {}
  for i, m in ipairs(s.matchers) do
    ms[i] = { name = m.name, value = m.value, isRegex = m.isRegex, isEqual = m.isEqual ~= false }
  end
  return { id = s.id, matchers = json.array(ms), startsAt = fmt(s.starts_at), endsAt = fmt(s.ends_at),
    updatedAt = fmt(s.updated_at), createdBy = s.created_by, comment = s.comment, status = { state = st } }
end

local STATE_ORDER = { active = 1, pending = 2, expired = 3 }

local function get_silences(ctx, req)
  local q = httpd.parse_query(req.query)
  local filter, err = filter_param(q)
  if not filter then return message(400, err) end
  local rows
  rows, err = astore.silences(ctx.store)
  if not rows then return message(500, tostring(err)) end
  local now = time.now()
  local out = {}
  for _, s in ipairs(rows) do
    local set = {}
    for _, m in ipairs(s.matchers) do set[m.name] = m.value end
    if filter_matches(filter, set) then out[#out + 1] = gettable_silence(s, now) end
  end
  -- Alertmanager's SortSilences: active by end, pending by start, expired latest first.
  sort(out, function(a, b)
    local sa, sb = STATE_ORDER[a.status.state], STATE_ORDER[b.status.state]
    if sa ~= sb then return sa < sb end
    if a.status.state == "pending" then
      if a.startsAt ~= b.startsAt then return a.startsAt < b.startsAt end
    elseif a.status.state == "expired" then
      if a.endsAt ~= b.endsAt then return a.endsAt > b.endsAt end
    elseif a.endsAt ~= b.endsAt then
      return a.endsAt < b.endsAt
    end
    return a.id < b.id
  end)
  return reply(200, json.array(out))
end

local function get_silence(ctx, req)
  local s, err = astore.silence(ctx.store, req.params.id)
  if s == nil then return message(500, tostring(err)) end
  if not s then return message(404, "silence not found") end
  return reply(200, gettable_silence(s, time.now()))
end

-- postableSilence -> row | nil, "field: reason"
local function postable_silence(raw)
  if type(raw) ~= "table" or is_list(raw) then return nil, "body: silence object expected" end
  for _, k in ipairs({ "matchers", "startsAt", "endsAt", "createdBy", "comment" }) do
    if raw[k] == nil or raw[k] == json.null then return nil, k .. " in body is required" end
  end
  if type(raw.createdBy) ~= "string" then return nil, "createdBy: string expected" end
  if type(raw.comment) ~= "string" then return nil, "comment: string expected" end
  if raw.id ~= nil and raw.id ~= json.null and type(raw.id) ~= "string" then return nil, "id: string expected" end
  if not is_list(raw.matchers) then
    return nil, "matchers: array expected"
  end
  local ms = {}
  for i, m in ipairs(raw.matchers) do
    local where = format("matchers[%d]", i - 1)
    if type(m) ~= "table" then return nil, where .. ": object expected" end
    if type(m.name) ~= "string" then return nil, where .. ".name in body is required" end
    if type(m.value) ~= "string" then return nil, where .. ".value in body is required" end
    if type(m.isRegex) ~= "boolean" then return nil, where .. ".isRegex in body is required" end
    if m.isEqual ~= nil and m.isEqual ~= json.null and type(m.isEqual) ~= "boolean" then
      return nil, where .. ".isEqual: boolean expected"
    end
    ms[i] = { name = m.name, value = m.value, isRegex = m.isRegex, isEqual = m.isEqual ~= false }
  end
  local starts, serr = time_field(raw.startsAt)
  if not starts then return nil, "startsAt: " .. (serr or "invalid zero start timestamp") end
  local ends, eerr = time_field(raw.endsAt)
  if not ends then return nil, "endsAt: " .. (eerr or "invalid zero end timestamp") end
  local id = raw.id
  if id == json.null or id == "" then id = nil end
  return { id = id, matchers = ms, starts_at = starts, ends_at = ends, created_by = raw.createdBy,
    comment = raw.comment }
end

local function same_matchers(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    local x, y = a[i], b[i]
    if x.name ~= y.name or x.value ~= y.value or x.isRegex ~= y.isRegex or (x.isEqual ~= false) ~= (y.isEqual ~= false) then
      return false
    end
  end
  return true
end

-- silence.go's canUpdate: what may change in place, by the old silence's state.
local function can_update(old, new, now)
  if not same_matchers(old.matchers, new.matchers) then return false end
  local st = now < old.starts_at and "pending" or now > old.ends_at and "expired" or "active"
  -- The API shows milliseconds: a start read back and sent again is the same start.
  if st == "active" then return math.abs(new.starts_at - old.starts_at) < 0.0005 and new.ends_at >= now end
  if st == "pending" then return new.starts_at >= now end
  return false
end

local function expire(ctx, s, now)
  local obj, err = silence_of(s)
  if not obj then return nil, err end
  if not obj:expire(now) then return nil, format("silence %s already expired", s.id) end
  s.starts_at = obj.starts_at
  local changed
  changed, err = astore.expire_silence(ctx.store, s, now)
  if changed == nil then return nil, err end
  if not changed then return nil, "the silence changed meanwhile; try again" end
  return true
end

local function post_silence(ctx, req)
  local raw, st, _, err = require("steward.runtime.daemon.api").decode_json(ctx, req.body)
  if raw == nil then return message(st, "body: " .. tostring(err)) end
  local s
  s, err = postable_silence(raw)
  if not s then return message(400, err) end
  local now = time.now()
  if s.starts_at >= s.ends_at then
    return message(400, "Failed to create silence: start time must be before end time")
  end
  if s.ends_at < now then return message(400, "Failed to create silence: end time can't be in the past") end
  local ok, verr = silence_of(s)
  if not ok then return message(400, verr) end
  s.updated_at = now
  if s.id then
    local prev
    prev, err = astore.silence(ctx.store, s.id)
    if prev == nil then return message(500, tostring(err)) end
    if not prev then return message(404, "silence not found") end
    req.audit = { target = s.id, before = audit_digest(prev) }
    if can_update(prev, s, now) then
      if math.abs(s.starts_at - prev.starts_at) < 0.0005 then s.starts_at = prev.starts_at end
      ok, err = astore.put_silence(ctx.store, s)
      if not ok then return message(500, tostring(err)) end
      req.audit.after = audit_digest(s)
      return reply(200, { silenceID = s.id })
    end
    if now <= prev.ends_at then
      ok, err = expire(ctx, prev, now)
      if not ok then return message(400, "expire previous silence: " .. tostring(err)) end
    end
  end
  s.id = util.uuidv7(now)
  if s.starts_at < now then s.starts_at = now end
  ok, err = astore.put_silence(ctx.store, s)
  if not ok then return message(500, tostring(err)) end
  -- an update that could not be made in place expired the old silence: both ids are named
  req.audit = { target = s.id, before = req.audit and req.audit.before, after = audit_digest(s),
    detail = req.audit and ("replaces " .. tostring(req.audit.target)) or nil }
  return reply(200, { silenceID = s.id })
end

local function delete_silence(ctx, req)
  local s, err = astore.silence(ctx.store, req.params.id)
  if s == nil then return message(500, tostring(err)) end
  if not s then return message(404, "silence not found") end
  req.audit = { before = audit_digest(s) }
  local ok
  ok, err = expire(ctx, s, time.now())
  if not ok then return message(500, tostring(err)) end
  req.audit.after = audit_digest(s)
  return 200, {}, ""
end

-- ---- status ----

local function get_status(ctx)
  return reply(200, {
    cluster = { status = "ready", name = "steward", peers = json.array({}) },
    versionInfo = { version = "0.25.0", revision = "steward", branch = "steward", buildUser = "steward",
      buildDate = "", goVersion = "none (steward)" },
    config = { original = "" },
    uptime = fmt(ctx.started or ctx.alerting.started),
  })
end

local function get_receivers()
  return reply(200, json.array({ { name = RECEIVER } }))
end

-- The background look for alerts that timed out (endsAt passed without a re-send).
function M.sweep(ctx)
  -- In a cluster the leader sweeps (the others would only lose the revision race).
  if ctx.cluster and not ctx.cluster:is_leader() then return {} end
  local fresh = serialized(astore.sweep, false, ctx.store, { now = time.now(), format = fmt })
  if fresh then notify(ctx, fresh) end
  return fresh
end

-- The periodic cleanup: resolved alerts, expired silences, notification log entries and
-- groups older than alerting.retention (steward.alerting.engine.cleanup). Leader only.
function M.cleanup(ctx)
  if ctx.cluster and not ctx.cluster:is_leader() then return 0 end
  local n, err = require("steward.alerting.engine").cleanup(ctx.store,
    { now = time.now(), retention = ctx.alerting.retention })
  if not n then require("steward.log").warn("alerting: cleanup failed", { error = tostring(err) }) end
  return n
end

-- install(add, ctx): add(method, pattern, permission, fn(ctx, req, principal)) is the daemon
-- API's route helper (authentication, permission, metrics). Options: ctx.cfg.alerting =
-- {resolve_timeout = seconds or "5m", retention = seconds or "120h"}.
function M.install(daemon_add, ctx)
  local opts = ctx.cfg and type(ctx.cfg.alerting) == "table" and ctx.cfg.alerting or {}
  local rt = M.RESOLVE_TIMEOUT
  if opts.resolve_timeout ~= nil then
    rt = util.duration_arg(opts.resolve_timeout, "alerting.resolve_timeout")
  end
  local retention = M.RETENTION
  if opts.retention ~= nil then retention = util.duration_arg(opts.retention, "alerting.retention") end
  ctx.alerting = { resolve_timeout = rt, retention = retention, started = time.now() }
  if ctx.store then
    -- The daemon opened the store before this module registered its tables.
    local ok, err = ctx.store:migrate()
    if not ok then error("alerting: store migration failed: " .. tostring(err), 0) end
    if ctx.bg then
      ctx.bg[#ctx.bg + 1] = time.every(M.SWEEP_INTERVAL, M.sweep, ctx)
      ctx.bg[#ctx.bg + 1] = time.every(M.CLEANUP_INTERVAL, M.cleanup, ctx)
    end
  end
  local function add(method, pattern, permission, fn, action)
    daemon_add(method, pattern, permission, function(c, req, principal)
      local ds, dh, db = untenanted(principal)
      if ds then return ds, dh, db end
      return fn(c, req, principal)
    end, action)
  end
  add("POST", "/api/v2/alerts", "ingest", post_alerts)
  add("GET", "/api/v2/alerts", "read", get_alerts)
  add("POST", "/api/v2/silences", "operate", post_silence, "silence.put")
  add("GET", "/api/v2/silences", "read", get_silences)
  add("GET", "/api/v2/silence/{id}", "read", get_silence)
  add("DELETE", "/api/v2/silence/{id}", "operate", delete_silence, "silence.expire")
  add("GET", "/api/v2/status", "read", get_status)
  add("GET", "/api/v2/receivers", "read", get_receivers)
end

return M
