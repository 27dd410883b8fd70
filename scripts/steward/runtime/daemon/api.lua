-- The daemon's HTTP API (docs/http-api.md): routes, authentication, JSON errors.
local json = require "steward.json"
local time = require "steward.time"
local events = require "steward.runtime.events"
local metrics = require "steward.metrics"
local auth = require "steward.runtime.auth"
local decisions = require "steward.runtime.store.decisions"
local policy_ctx = require "steward.runtime.policy_ctx"
local guard = require "steward.runtime.guard"
local effects = require "steward.runtime.effects"
local store_health = require "steward.runtime.store_health"
local audit_trail = require "steward.runtime.daemon.audit_trail"
local store_util = require "steward.runtime.store.util"

local type, pairs, ipairs, tostring, tonumber, xpcall = type, pairs, ipairs, tostring, tonumber, xpcall
local format = string.format

local M = {}

local JSON = { ["content-type"] = "application/json" }

local function reply(status, body, extra)
  local headers = JSON
  if extra then
    headers = { ["content-type"] = "application/json" }
    for k, v in pairs(extra) do headers[k] = v end
  end
  return status, headers, json.encode(body)
end
M.reply = reply

-- {"error": {"code", "message", "details"}}
local function fail(status, code, message, details, extra)
  return reply(status, { error = { code = code, message = message, details = details or json.null } }, extra)
end
M.fail = fail

-- invalid(field, reason [, code]) -> a 400 naming the field, with details {errors = [{field, reason}]}
function M.invalid(field, reason, code)
  return fail(400, code or "invalid_request", field .. ": " .. reason, { errors = { { field = field, reason = reason } } })
end

-- query(req, parsers) -> filter | nil, status, headers, body: each parameter of the query
-- string goes through its parser (value -> parsed | nil or false, reason); an unknown
-- parameter or a refused value is a 400 naming it.
function M.query(req, parsers)
  local f = {}
  for k, v in pairs(M.parse_query(req.query)) do
    local parse = parsers[k]
    if not parse then return nil, M.invalid(k, "unknown query parameter", "invalid_query") end
    local parsed, reason = parse(v)
    if not parsed then return nil, M.invalid(k, reason, "invalid_query") end
    f[k] = parsed
  end
  return f
end

-- Parsers for query: a string as it is, a page size, a time.
M.params = {
  text = function(v) return v end,
  limit = function(v)
    local n = tonumber(v)
    if n and n >= 1 and n <= 1000 and n == math.floor(n) then return n end
    return nil, "integer from 1 to 1000 expected"
  end,
  since = function(v)
    return tonumber(v) or store_util.parse_rfc3339(v) or nil,
      "Unix seconds or an RFC 3339 time expected"
  end,
}

-- stamped(row, keys) -> a copy of row with the times named by keys (Unix seconds) in RFC 3339
function M.stamped(row, keys)
  local out = {}
  for k, v in pairs(row) do out[k] = v end
  for _, k in ipairs(keys) do
    if out[k] then out[k] = store_util.format_rfc3339(out[k]) end
  end
  return out
end

local m_requests = metrics.counter("steward_http_requests_total", "HTTP requests by route and status", { "route", "status" })
local m_accepted = metrics.counter("steward_events_accepted_total", "Events committed to the log", {})
local m_duplicate = metrics.counter("steward_events_duplicate_total", "Events whose id was already in the log", {})
local m_rejected = metrics.counter("steward_events_rejected_total", "Events refused by validation", {})
local m_ingest_path = metrics.counter("steward_ingest_requests_total",
  "POST /v1/events requests by path: c (taken whole by the C parser) or reference (the rest)", { "path" })

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function M.parse_query(q)
  local out = {}
  if not q or q == "" then return out end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k and k ~= "" then out[unescape(k)] = unescape(v) end
  end
  return out
end

-- The answer while the store cannot be reached: clients retry after Retry-After seconds
-- (the health probe's period; the store reconnects in the background).
local RETRY_AFTER = { ["retry-after"] = "1" }
local function unavailable(message)
  return fail(503, "store_unavailable", message, nil, RETRY_AFTER)
end
M.unavailable = unavailable

-- A body is read as JSON when the client says it is JSON, says nothing, or sent curl -d's
-- default type (application/x-www-form-urlencoded): people type `curl -d '{...}'` without
-- -H, and refusing that helps nobody. Anything else is answered 415.
local function json_content_type(ctype)
  if ctype == nil then return true end
  local mt = ctype:lower():match("^%s*([^;%s]+)")
  return mt == nil or mt == "application/json" or mt == "application/x-www-form-urlencoded"
    or mt:match("^application/[%w.%-]+%+json$") ~= nil
end
M.json_content_type = json_content_type

-- decode_json(ctx, text) -> value | nil, status, code, message, details. Duplicate keys are
-- refused (which one counts is not defined; an id must not be ambiguous), and depth and size
-- are bounded (limits.max_json_depth, limits.max_json_values) before the decode runs on the
-- loop thread.
function M.decode_json(ctx, text)
  local opts = ctx.json_limits -- one table for every request
  if not opts then
    local lim = ctx.cfg and ctx.cfg.limits or {}
    opts = { max_depth = lim.max_json_depth, max_values = lim.max_json_values }
    ctx.json_limits = opts
  end
  local v, err, info = json.decode(text, opts)
  if v ~= nil then return v end
  if info and info.reason == "duplicate_key" then
    return nil, 400, "invalid_json", err, { key = info.key, offset = info.offset }
  elseif info and info.reason == "limit" then
    local key = info.limit == "max_depth" and "limits.max_json_depth" or "limits.max_json_values"
    return nil, info.limit == "max_depth" and 400 or 413, info.limit == "max_depth" and "invalid_json" or "json_too_large",
      err .. " (" .. key .. ")", { limit = key, max = info.max, offset = info.offset }
  end
  return nil, 400, "invalid_json", err
end

local function traceback(e) return { err = e, tb = debug.traceback(tostring(e), 2) } end

-- Runs a handler; a request that met an unreachable store (its own store call failed with
-- code "unavailable") and did not succeed answers 503 store_unavailable, whatever the route
-- made of the failure (a 404, a 409, a 500 or a Lua error).
local function run_handler(health, fn, req, principal)
  health:take_failure() -- a task's earlier use (it may be reused) does not count
  local ok, status, headers, body = xpcall(fn, traceback, req, principal)
  local failed = health:take_failure()
  if failed and (not ok or type(status) ~= "number" or (status >= 300 and status ~= 503)) then
    return unavailable("the store cannot be reached: " .. tostring(failed))
  end
  if not ok then error(status.tb, 0) end
  return status, headers, body
end

-- Wraps a handler with authentication, the permission it needs (nil: public) and its tenant
-- scope: "tenant" routes confine a tenant's token to its tenant's data (the handler filters
-- by principal.tenant); every other route is global and refuses tenant tokens, so a route
-- added later is closed to tenants until it says how it confines them. A route that changes
-- something names its audit action: every authenticated attempt is recorded.
local function guarded(ctx, route, permission, fn, scope, action, raw_body)
  local health = ctx.store_health
  return function(req)
    local status, headers, body
    local principal
    if permission then
      local reason
      principal, reason = ctx.auth:authenticate(req.headers.authorization)
      if not principal then
        status, headers, body = fail(401, "unauthorized",
          reason == "missing" and "an Authorization: Bearer <token> header is required"
            or "the token is not valid", nil, { ["www-authenticate"] = 'Bearer realm="steward"' })
      elseif auth.suspended(principal) then
        status, headers, body = fail(403, "tenant_suspended", auth.suspended(principal), { tenant = principal.tenant })
      elseif not auth.allows(principal, permission) then
        status, headers, body = fail(403, "forbidden",
          format("role %s may not %s", principal.role, permission))
      elseif principal.tenant and scope ~= "tenant" then
        status, headers, body = fail(403, "forbidden",
          format("%s is not tenant-scoped: a token of tenant %s may not use it; use a token without a tenant",
            route, principal.tenant))
      end
    end
    -- raw_body: the route reads a body of its own type (a mail) and checks it itself
    if not status and not raw_body and req.body ~= "" and not json_content_type(req.headers["content-type"]) then
      status, headers, body = fail(415, "unsupported_media_type",
        "the body must be JSON (Content-Type application/json, or none)",
        { content_type = req.headers["content-type"] })
    end
    if not status then
      local ok
      if health then
        ok, status, headers, body = pcall(run_handler, health, fn, req, principal)
      else
        ok, status, headers, body = xpcall(fn, function(e) return debug.traceback(tostring(e), 2) end, req, principal)
      end
      if not ok then -- the server answers 500; the attempt is on record first
        if action then
          audit_trail.record(ctx, { action = action, actor = audit_trail.actor(principal), role = principal and principal.role,
            target = req.params and (req.params.name or req.params.id), outcome = "failed",
            detail = tostring(status):match("^[^\n]*") })
        end
        error(status, 0)
      end
    end
    m_requests:inc(1, route, status)
    if principal and status < 400 and ctx.on_request then ctx.on_request(principal, route) end -- usage (steward.success.usage)
    if action and principal then audit_trail.http(ctx, action, req, principal, status, body) end
    return status, headers, body
  end
end

-- ---- events ----

local function event_list(body)
  if type(body) ~= "table" then return nil end
  if body[1] ~= nil then return body end
  if json.is_array(body) then return nil end
  if next(body) == nil then return nil end
  return { body }, true
end

-- The fast path (bindings/ingest.c): the body parsed, validated and bound to the INSERT in C,
-- no Lua table per event. It only ever accepts; whatever it declines (bad JSON, an invalid
-- event, too many) takes the reference path below, which names each bad item.
local ingest = require "steward.runtime.ingest.native"
local crypto = require "steward.crypto"
local uuidv7, parse_rfc3339 = crypto.uuidv7, store_util.parse_rfc3339

-- One options table for every request: prepare reads it and never yields.
local prep = { uuid = uuidv7, rfc3339 = parse_rfc3339 }

local function post_events_fast(ctx, req, principal, now)
  local lim = ctx.cfg.limits
  prep.max_depth, prep.max_values, prep.max_batch = lim.max_json_depth, lim.max_json_values, lim.max_batch
  prep.tenant, prep.now = principal.tenant, now
  local batch = ingest.prepare(req.body, prep)
  if not batch then return nil end
  m_ingest_path:inc(1, "c")
  local health = ctx.store_health -- it wraps st.db; the commit goes to the native handle
  local accepted, duplicates, code = ingest.commit(health and health.native or ctx.store.db, batch)
  if health then health:observe(accepted, duplicates, code) end
  if not accepted then
    -- Not committed, or a COMMIT whose outcome is unknown: either way no 202. A retry with
    -- the same ids is deduplicated by the log's unique id, so nothing is lost or doubled.
    return unavailable("the events were not committed: " .. tostring(duplicates))
  end
  m_accepted:inc(accepted)
  if duplicates > 0 then m_duplicate:inc(duplicates) end
  local d = ctx.dispatch
  if d and accepted > 0 then
    for _, t in ipairs(batch:types()) do
      if d:wants(t) then d:notify(batch:fresh(json.decode)); break end
    end
  end
  return 202, JSON, batch:response(), accepted + duplicates -- (its size, for the tenant's rate limit)
end

-- A tenant's token is held to its tenant's ingest rate (steward.tenants.limits; docs/tenants.md
-- "Isolation and limits"): refused before its body is parsed, so a flood costs little.
local tenant_limits = require "steward.tenants.limits"
local m_limited = metrics.counter("steward_tenant_ingest_limited_total",
  "POST /v1/events requests refused (429) by a tenant's ingest rate limit", { "tenant" })

local function rate_limited(tenant, retry, lim)
  m_limited:inc(1, tenant)
  return fail(429, "rate_limited",
    format("tenant %s is over its ingest rate limit of %g events/s (burst %g); retry after %d s",
      tenant, lim.ingest, lim.burst, retry),
    { tenant = tenant, limit = lim, retry_after = retry }, { ["retry-after"] = tostring(retry) })
end

-- Events of a suspended tenant are refused, whoever posts them (a tenant's own token is
-- refused earlier, by guarded). The C path does not say which tenants a batch names, so a body
-- that may name a suspended tenant (or hides names behind \u escapes) takes the reference path.
local suspension = require "steward.tenants.suspension"
local function may_name_suspended(body)
  if body:find("\\u", 1, true) then return true end
  for t in pairs(suspension.list()) do
    if body:find('"' .. t .. '"', 1, true) then return true end
  end
  return false
end

local function post_events(ctx, req, principal)
  local tenant = principal.tenant
  if tenant then
    local admitted, retry, lim = tenant_limits.admit(tenant)
    if not admitted then return rate_limited(tenant, retry, lim) end
  end
  local now = time.now()
  local careful = not principal.tenant and suspension.any() and may_name_suspended(req.body)
  if not careful then
    local status, headers, text, size = post_events_fast(ctx, req, principal, now)
    if status then
      if tenant and size then tenant_limits.charge(tenant, size - 1) end
      return status, headers, text
    end
  end
  m_ingest_path:inc(1, "reference")
  local body, st, code, err, details = M.decode_json(ctx, req.body)
  if body == nil then
    m_rejected:inc(1)
    return fail(st, code, err, details)
  end
  local list = event_list(body)
  if not list then
    m_rejected:inc(1)
    return fail(400, "invalid_body", "expected an event object or a non-empty array of events")
  end
  if #list > ctx.cfg.limits.max_batch then
    m_rejected:inc(#list)
    return fail(413, "batch_too_large", format("%d events in one request; the limit is %d", #list, ctx.cfg.limits.max_batch),
      { count = #list, limit = ctx.cfg.limits.max_batch })
  end
  if tenant then tenant_limits.charge(tenant, #list - 1) end
  local errors = {}
  local valid, texts = {}, {}
  for i, raw in ipairs(list) do
    local ev, verr, text = events.validate(raw, i - 1, now)
    texts[i] = text
    if not ev then
      errors[#errors + 1] = { index = i - 1, field = verr.field, reason = verr.reason }
    elseif principal.tenant then
      if ev.tenant == nil then
        ev.tenant = principal.tenant
      elseif ev.tenant ~= principal.tenant then
        errors[#errors + 1] = { index = i - 1, field = "tenant",
          reason = "this token may only write events of tenant " .. principal.tenant }
      end
    end
    valid[i] = ev
  end
  local held = {}
  for i = 1, #list do
    local ev = valid[i]
    local s = ev and ev.tenant and suspension.get(ev.tenant)
    if s then held[#held + 1] = { index = i - 1, field = "tenant", reason = suspension.message(ev.tenant, s) } end
  end
  if #held > 0 and #errors == 0 then
    m_rejected:inc(#list)
    return fail(403, "tenant_suspended", format("%s; none of the %d events was accepted", held[1].reason, #list),
      { errors = held })
  end
  if #errors > 0 then
    m_rejected:inc(#list)
    local forbidden = true
    for _, e in ipairs(errors) do if e.field ~= "tenant" or not principal.tenant then forbidden = false end end
    return fail(forbidden and 403 or 400, forbidden and "forbidden" or "invalid_events",
      format("%d of %d events are invalid; none was accepted", #errors, #list), { errors = errors })
  end
  local res
  res, err = events.append(ctx.store, valid, { texts = texts, now = now, dispatch = false })
  if not res then
    -- Not committed, or a COMMIT whose outcome is unknown: either way no 202. A retry with
    -- the same ids is deduplicated by the log's unique id, so nothing is lost or doubled.
    return unavailable("the events were not committed: " .. tostring(err))
  end
  m_accepted:inc(res.accepted)
  if res.duplicates > 0 then m_duplicate:inc(res.duplicates) end
  if ctx.dispatch then
    local fresh = {}
    for i, ev in ipairs(valid) do
      if res.seqs[i] then ev.seq = res.seqs[i]; fresh[#fresh + 1] = ev end
    end
    ctx.dispatch:notify(fresh)
  end
  return reply(202, { accepted = res.accepted, duplicates = res.duplicates, ids = json.array(res.ids) })
end

local function number_param(q, name, errors)
  local v = q[name]
  if v == nil or v == "" then return nil end
  local n = tonumber(v)
  if not n then errors[#errors + 1] = { field = name, reason = "must be a number" } end
  return n
end

-- A query string as a filter: strings are taken as they are, numbers checked, any other
-- parameter refused; `rename` maps a parameter to another filter field. -> filter, or nil,
-- the errors list.
local function query_filter(req, strings, numbers, rename)
  local q = M.parse_query(req.query)
  local errors, filter, known = {}, {}, {}
  for _, k in ipairs(strings) do known[k] = true; filter[(rename or {})[k] or k] = q[k] end
  for _, k in ipairs(numbers) do known[k] = true; filter[k] = number_param(q, k, errors) end
  for k in pairs(q) do
    if not known[k] then errors[#errors + 1] = { field = k, reason = "unknown query parameter" } end
  end
  if filter.limit and (filter.limit < 1 or filter.limit > 1000) then
    errors[#errors + 1] = { field = "limit", reason = "must be from 1 to 1000" }
  end
  if #errors > 0 then return nil, errors end
  return filter
end

-- A tenant's token reads its tenant's rows only: its filter is pinned to the tenant, and a
-- filter naming another tenant is a 403. -> nil, or the 403 answer.
local function confine(filter, principal, what)
  if not principal.tenant then return nil end
  if filter.tenant and filter.tenant ~= principal.tenant then
    return fail(403, "forbidden", "this token may only read " .. what .. " of tenant " .. principal.tenant)
  end
  filter.tenant = principal.tenant
end

local function get_events(ctx, req, principal)
  local filter, errors = query_filter(req, { "type", "tenant", "cursor" },
    { "after_seq", "before_seq", "since", "until", "limit" })
  if not filter then return fail(400, "invalid_query", "bad query parameters", { errors = errors }) end
  local cs, ch, cb = confine(filter, principal, "events")
  if cs then return cs, ch, cb end
  local res, err = events.query(ctx.store, filter)
  if not res then
    if tostring(err):match("cursor") then return fail(400, "invalid_query", err) end
    return unavailable(tostring(err))
  end
  return reply(200, { events = json.array(res.events), next_cursor = res.next_cursor or json.null })
end

-- ---- dead letters ----

-- (the `tenant` parameter was once ignored: an admin asking for one tenant's dead letters got
-- every tenant's, and a tenant's token naming another tenant got its own instead of a 403)
local function get_dead_letters(ctx, req, principal)
  local q, errors = query_filter(req, { "policy", "cursor", "tenant" }, { "limit" })
  if not q then return fail(400, "invalid_query", "bad query parameters", { errors = errors }) end
  local cs, ch, cb = confine(q, principal, "dead letters")
  if cs then return cs, ch, cb end
  local res, err = ctx.dispatch:dead_letters({ policy = q.policy, limit = q.limit, cursor = q.cursor,
                                              tenant = q.tenant })
  if not res then return unavailable(tostring(err)) end
  return reply(200, { dead_letters = json.array(res.dead_letters), next_cursor = res.next_cursor or json.null })
end

local function requeue(ctx, req, principal)
  local id = tonumber(req.params.id)
  if not id then return fail(400, "invalid_id", "the dead letter id must be a number", { id = req.params.id }) end
  local ok, err = ctx.dispatch:requeue(id, principal.tenant)
  if not ok then
    if err == "not found" then return fail(404, "not_found", "no open dead letter with id " .. id) end
    return fail(409, "cannot_requeue", tostring(err))
  end
  return reply(202, { requeued = id })
end

-- ---- tokens ----

-- A role's rank: a token may create tokens of its own rank or below, never above.
local RANK = { ingest = 1, viewer = 1, operator = 2, admin = 3 }

local function post_token(ctx, req, principal)
  local spec, st, code, err, details = M.decode_json(ctx, req.body)
  if spec == nil then return fail(st, code, err, details) end
  if type(spec) ~= "table" then return fail(400, "invalid_json", "expected an object") end
  local errors = {}
  for k in pairs(spec) do
    if k ~= "role" and k ~= "tenant" and k ~= "name" then errors[#errors + 1] = { field = tostring(k), reason = "unknown field" } end
  end
  if not auth.ROLES[spec.role] then
    errors[#errors + 1] = { field = "role", reason = "must be admin, operator, viewer or ingest" }
  end
  if spec.tenant ~= nil and spec.tenant ~= json.null and (type(spec.tenant) ~= "string" or #spec.tenant == 0 or #spec.tenant > 200) then
    errors[#errors + 1] = { field = "tenant", reason = "must be a string of 1 to 200 bytes" }
  end
  if spec.name ~= nil and (type(spec.name) ~= "string" or #spec.name > 200) then
    errors[#errors + 1] = { field = "name", reason = "must be a string of at most 200 bytes" }
  end
  if #errors > 0 then return fail(400, "invalid_token_spec", "bad token specification", { errors = errors }) end
  local tenant = spec.tenant ~= json.null and spec.tenant or nil
  -- A tenant's token creates tokens of that tenant only (a missing tenant means its own).
  if principal.tenant then
    if tenant and tenant ~= principal.tenant then
      return fail(403, "forbidden", "this token may only create tokens of tenant " .. principal.tenant,
        { errors = { { field = "tenant", reason = "not this token's tenant" } } })
    end
    tenant = principal.tenant
  end
  if (RANK[spec.role] or 99) > (RANK[principal.role] or 0) then
    return fail(403, "forbidden", "a " .. principal.role .. " token may not create a " .. spec.role .. " token",
      { errors = { { field = "role", reason = "above the creating token's role" } } })
  end
  local tok
  tok, err = ctx.auth:create({ role = spec.role, tenant = tenant, name = spec.name })
  if not tok then return unavailable(tostring(err)) end
  req.audit = { target = tok.id, after = audit_trail.digest({ id = tok.id, role = tok.role, tenant = tok.tenant,
    name = tok.name }) }
  return reply(201, tok)
end

local function get_tokens(ctx, _, principal)
  return reply(200, { tokens = json.array(ctx.auth:list(principal.tenant)) })
end

local function delete_token(ctx, req, principal)
  local t = ctx.auth.by_id[req.params.id]
  if t and (not principal.tenant or t.tenant == principal.tenant) then
    req.audit = { before = audit_trail.digest({ id = t.id, role = t.role, tenant = t.tenant, name = t.name }) }
  end
  local ok = ctx.auth:revoke(req.params.id, principal.tenant)
  if not ok then return fail(404, "not_found", "no token with id " .. req.params.id) end
  return 204, {}, ""
end

-- ---- decisions ----

local m_decide = metrics.histogram("steward_decide_duration_seconds", "decide() run time", { "policy" })
local m_decisions = metrics.counter("steward_decisions_total", "Decisions by policy and outcome", { "policy", "outcome" })

local function decide(ctx, req, principal)
  local name = req.params.policy
  local p = ctx.policies[name]
  -- A tenant's policy decides for its tenant only; to another tenant's token it does not exist.
  if p and p.tenant and principal.tenant and principal.tenant ~= p.tenant then p = nil end
  if not p or not p.decide then
    return fail(404, "not_found", p and ("policy " .. name .. " has no decide function") or ("no policy " .. name))
  end
  local input, st, code, err, details = M.decode_json(ctx, req.body)
  if input == nil then return fail(st, code, err, details) end
  local t0 = time.monotonic()
  -- decide runs in the request's own task (no second task per request); the ctx is made
  -- once per policy version.
  -- A tenant's token decides as its tenant, whatever the body says (the tenant selects the
  -- tenant_config, secrets included); a tenant-less token may name one in the input.
  local tenant = type(input) == "table" and type(input.tenant) == "string" and input.tenant or nil
  if p.tenant then
    if tenant and tenant ~= p.tenant then
      return fail(403, "forbidden", "policy " .. name .. " decides for tenant " .. p.tenant .. " only",
        { errors = { { field = "tenant", reason = "not the policy's tenant" } } })
    end
    tenant = p.tenant
  end
  if principal.tenant then
    if tenant and tenant ~= principal.tenant then
      return fail(403, "forbidden", "this token may only decide for tenant " .. principal.tenant,
        { errors = { { field = "tenant", reason = "not this token's tenant" } } })
    end
    tenant = principal.tenant
  end
  p.decide_ctx = p.decide_ctx or {}
  local key = (tenant and p.tenant_configs and p.tenant_configs[tenant]) and tenant or ""
  local dctx = p.decide_ctx[key]
  if not dctx then
    dctx = policy_ctx.new(p, { tenant = tenant })
    p.decide_ctx[key] = dctx
  end
  local fx = effects.begin() -- what decide() does besides deciding (HTTP calls...), for the log
  local ok, result, kind = guard.run(p.budget or { name = name }, p.decide, input, dctx)
  effects.finish()
  local took = time.monotonic() - t0
  m_decide:observe(took, name)
  local outcome = ok and "ok" or (kind == "cpu" and "timeout" or "error")
  m_decisions:inc(1, name, outcome)
  -- The result is encoded once, for the answer and the log row; the input's text is the
  -- body itself (the log encodes a masked copy instead when a mask applies).
  local rtext, rerr
  if ok then
    if result == nil then result = json.null end
    rtext, rerr = json.encode(result)
    if not rtext then ok, result, outcome = false, "decide returned a value JSON cannot hold: " .. tostring(rerr), "error" end
  end
  local rec = { policy = name, version = p.version, tenant = tenant, input = input, input_json = req.body,
    outcome = outcome, result = ok and result or nil, result_json = rtext, error = not ok and result or nil,
    duration = took, side_effects = fx and #fx > 0 and fx or nil }
  local dlog = ctx.decision_log
  local ref, lerr, lref = dlog:record(rec, (p.decision_log or dlog.mode) == "durable")
  if not ref then
    return fail(503, "store_unavailable", "the decision was made but its log row was not committed (durable "
      .. "decision log): " .. tostring(lerr), { decision_id = lref }, RETRY_AFTER)
  end
  if not ok then
    return fail(500, "policy_error", tostring(result):match("^[^\n]*"),
      { decision_id = ref, policy = { name = name, version = p.version } })
  end
  -- {"result":..., "policy":{"name", "version"}, "decision_id"}: the policy part is the same
  -- for every answer of this version.
  local tail = p.decide_tail
  if not tail then
    tail = ',"policy":' .. json.encode({ name = name, version = p.version }) .. ',"decision_id":"'
    p.decide_tail = tail
  end
  return 200, JSON, '{"result":' .. rtext .. tail .. ref .. '"}'
end

M.decide = decide -- the rollout API asks deploy.freeze through it (steward.deploy.rollouts_api)

local function get_decisions(ctx, req, principal)
  local filter, errors = query_filter(req, { "policy", "outcome", "event_id", "id", "cursor", "tenant" },
    { "since", "until", "limit" }, { id = "ref" })
  if not filter then return fail(400, "invalid_query", "bad query parameters", { errors = errors }) end
  local cs, ch, cb = confine(filter, principal, "decisions")
  if cs then return cs, ch, cb end
  local ok, res, err = pcall(decisions.query, ctx.store, filter)
  if not ok then return fail(400, "invalid_query", tostring(res)) end
  if not res then
    if tostring(err):match("cursor") then return fail(400, "invalid_query", err) end
    return unavailable(tostring(err))
  end
  for _, d in ipairs(res.decisions) do d.decision_id = d.ref; d.ref = nil; d.id = nil end
  return reply(200, { decisions = json.array(res.decisions), next_cursor = res.next_cursor or json.null })
end

-- ---- policies ----

local function policy_view(ctx, p)
  local st = ctx.registry and ctx.registry:status(p.name) or {}
  local caps = require "steward.runtime.policy.capabilities"
  return { name = p.name, version = p.version, file = p.file, on = json.array(p.on),
           handles = p.handle ~= nil, decides = p.decide ~= nil, loaded_at = st.loaded_at or json.null,
           last_error = st.last_error or json.null, tenant = p.tenant or json.null,
           capabilities = { declared = caps.describe(p.declared) or {}, granted = caps.describe(p.granted) or {} } }
end

local function get_policies(ctx, _, principal)
  local list = {}
  for _, p in pairs(ctx.policies) do
    if not (p.tenant and principal.tenant and p.tenant ~= principal.tenant) then list[#list + 1] = policy_view(ctx, p) end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return reply(200, { policies = json.array(list), errors = json.array(ctx.registry and ctx.registry:error_list() or {}) })
end

local function get_policy(ctx, req, principal)
  local p = ctx.policies[req.params.name]
  -- Another tenant's policy does not exist for a tenant's token.
  if p and p.tenant and principal.tenant and p.tenant ~= principal.tenant then p = nil end
  if not p then return fail(404, "not_found", "no policy " .. req.params.name) end
  local view = policy_view(ctx, p)
  -- What the version covers: the source, the lib modules, the merged config (secrets redacted).
  local what = require("steward.runtime.policy_reload").describe(p)
  view.source_digest, view.libs = what.source_digest, json.array(what.libs)
  view.config, view.tenant_configs = what.config, what.tenant_configs
  if principal.tenant then
    -- A tenant's token sees its own tenant's configuration and nobody else's.
    view.tenant_configs = { [principal.tenant] = what.tenant_configs[principal.tenant] }
  end
  local versions = ctx.registry:versions(p.name)
  view.versions = json.array(versions or {})
  return reply(200, view)
end

local function post_simulate(ctx, req, principal)
  local p = ctx.policies[req.params.name]
  if not p then return fail(404, "not_found", "no policy " .. req.params.name) end
  if not p.handle then return fail(404, "not_found", "policy " .. p.name .. " has no handle function") end
  local raw, st, code, err, details = M.decode_json(ctx, req.body)
  if raw == nil then return fail(st, code, err, details) end
  if type(raw) ~= "table" then return fail(400, "invalid_json", "expected an event object") end
  local ev, verr = events.validate(raw, 0)
  if not ev then
    return fail(400, "invalid_event", verr.field .. ": " .. verr.reason, { errors = { verr } })
  end
  if principal.tenant and ev.tenant ~= nil and ev.tenant ~= principal.tenant then
    return fail(403, "forbidden", "this token may only simulate events of tenant " .. principal.tenant)
  end
  ev.tenant = ev.tenant or principal.tenant
  local res
  res, err = require("steward.runtime.simulate").run(p, ev, { lib_dir = ctx.cfg.policies .. "/lib" })
  if not res then return fail(409, "simulate_failed", tostring(err)) end
  return reply(200, { policy = { name = p.name, version = p.version }, result = res.result == nil and json.null or res.result,
    error = res.error and tostring(res.error):match("^[^\n]*") or json.null,
    side_effects = json.array(res.side_effects), duration = res.duration })
end

local function post_rollback(ctx, req)
  local name = req.params.name
  local version
  if req.body ~= "" then
    local spec, st, code, err, details = M.decode_json(ctx, req.body)
    if spec == nil then return fail(st, code, err, details) end
    if type(spec) ~= "table" then return fail(400, "invalid_json", "expected an object") end
    if spec.version ~= nil and type(spec.version) ~= "string" then
      return fail(400, "invalid_body", "version must be a string", { errors = { { field = "version", reason = "string expected" } } })
    end
    version = spec.version
  end
  if not ctx.policies[name] and not version then return fail(404, "not_found", "no policy " .. name) end
  req.audit = { before = ctx.policies[name] and ctx.policies[name].version } -- versions are content hashes
  local v, err = ctx.registry:rollback(name, version)
  if not v then
    if tostring(err):match("has no") then return fail(404, "not_found", err) end
    return fail(409, "rollback_failed", tostring(err))
  end
  req.audit.after = v
  return reply(200, { name = name, version = v })
end

-- name -> version of every loaded policy: the reload's before and after digests
local function versions(ctx)
  local v = {}
  for name, p in pairs(ctx.policies) do v[name] = p.version end
  return v
end

local function post_reload(ctx, req)
  local before = audit_trail.digest(versions(ctx))
  local summary, err = ctx.reload()
  req.audit = { target = "policies", before = before, after = audit_trail.digest(versions(ctx)) }
  if not summary then return fail(500, "reload_failed", tostring(err)) end
  if #summary.failed > 0 then req.audit.detail = "failed: " .. table.concat(summary.failed, ", ") end
  return reply(200, { loaded = summary.loaded, changed = json.array(summary.changed),
    removed = json.array(summary.removed), failed = json.array(summary.failed),
    config = json.array(summary.config or {}), restart_required = json.array(summary.restart_required or {}) })
end

-- ---- health and metrics ----

local function healthz() return reply(200, { status = "ok" }) end

local function readyz(ctx)
  local problems = {}
  local details = {}
  local health = ctx.store_health
  if not ctx.store_ok() then
    problems[#problems + 1] = "store"
  elseif health and not health.up then
    problems[#problems + 1] = "store"
    local st = health:status()
    details.store = { backend = st.backend, error = st.error or json.null, down_since = st.down_since }
  elseif health then
    -- Up as far as the last call knows, but a store can hang without failing: one bounded read.
    local ok, reason = health:ready(ctx.cfg.limits.ready_timeout)
    if not ok then
      problems[#problems + 1] = "store"
      details.store = { backend = health.backend, error = reason }
    end
  end
  if not ctx.policies_loaded then problems[#problems + 1] = "policies" end
  if #problems > 0 then
    details.waiting_for = json.array(problems)
    local msg = "not ready: " .. table.concat(problems, ", ")
    if details.store then msg = msg .. " (" .. tostring(details.store.error) .. ")" end
    return fail(503, "not_ready", msg, details, RETRY_AFTER)
  end
  return reply(200, { status = "ready" })
end

local function get_metrics(ctx)
  if ctx.refresh_metrics then ctx.refresh_metrics() end
  return 200, { ["content-type"] = "text/plain; version=0.0.4; charset=utf-8" }, metrics.render()
end

-- admit(router, ctx) -> the HTTP server's admit function (steward.httpd): it sees a
-- request's head when its body is announced, before a byte of the body is read, and
-- refuses a missing or bad token (401) or a role without the route's permission (403) then,
-- so an unauthenticated client cannot make the daemon buffer bodies. A path no route
-- matches needs a valid token too; only public routes read a body unauthenticated. The
-- handler checks the token again (the cache in steward.runtime.auth makes that cheap).
-- The permission a method and path need is remembered (a client repeats its requests), in
-- a bounded table dropped when full or when a route is added.
local PERM_CACHE_MAX = 1024

function M.admit(router, ctx)
  local cache, cached, nroutes = {}, 0, -1
  return function(req)
    local perms = ctx.route_permissions or {}
    local n = ctx.routes and #ctx.routes or 0
    if n ~= nroutes or cached >= PERM_CACHE_MAX then cache, cached, nroutes = {}, 0, n end
    local ckey = req.method .. " " .. req.path
    local perm = cache[ckey]
    if perm == nil then
      local h, _, pattern = router:match(req.method, req.path)
      perm = h and perms[req.method .. " " .. pattern]
      if perm == nil then perm = true end -- no route: a valid token is enough to be answered 404
      cache[ckey], cached = perm, cached + 1
    end
    if perm == false then return nil end -- a public route
    local principal, reason = ctx.auth:authenticate(req.headers.authorization)
    if not principal then
      return 401, "unauthorized", reason == "missing" and "an Authorization: Bearer <token> header is required"
        or "the token is not valid", { ["www-authenticate"] = 'Bearer realm="steward"' }
    end
    local suspended = auth.suspended(principal)
    if suspended then return 403, "tenant_suspended", suspended end
    if perm ~= true and not auth.allows(principal, perm) then
      return 403, "forbidden", format("role %s may not %s", principal.role, perm)
    end
    return nil
  end
end

-- install(router, ctx): ctx = {cfg, store, auth, dispatch, store_ok(), policies_loaded, bg}; sets
-- ctx.store_health (steward.runtime.store_health) unless the caller did.
function M.install(router, ctx)
  -- Store health: every store call's outcome, a probe while down (cancelled with ctx.bg at
  -- shutdown), /readyz and steward_store_up.
  if ctx.store and not ctx.store_health then
    ctx.store_health = store_health.attach(ctx.store)
    if ctx.bg then ctx.bg[#ctx.bg + 1] = ctx.store_health:start("1s") end
  end
  local health = ctx.store_health
  if health then
    metrics.gauge("steward_store_up", "1 while the store answers, 0 while it cannot be reached", {},
      function() return health.up and 1 or 0 end)
  end
  -- The route table, kept for tests (the role x tenant matrix walks it, so a new route is
  -- covered without editing the test) and GET /v1/routes; the permissions by route are what
  -- the admission check reads when a request's headers are complete.
  -- opts: {scope = "tenant", action = "<audit action>"}, or the audit action alone (a string)
  ctx.routes = {}
  local perms = ctx.route_permissions or {}
  ctx.route_permissions = perms
  local function add(method, pattern, permission, fn, opts)
    if type(opts) == "string" then opts = { action = opts } end
    opts = opts or {}
    perms[method .. " " .. pattern] = permission or false
    ctx.routes[#ctx.routes + 1] = { method = method, pattern = pattern, permission = permission or json.null,
                                    scope = permission and (opts.scope or "global") or "public",
                                    action = opts.action or json.null }
    router:add(method, pattern, guarded(ctx, pattern, permission, function(req, principal)
      return fn(ctx, req, principal)
    end, opts.scope, opts.action, opts.raw_body))
  end
  local T = "tenant"
  add("POST", "/v1/events", "ingest", post_events, { scope = T })
  add("GET", "/v1/events", "read", get_events, { scope = T })
  add("GET", "/v1/dead-letters", "read", get_dead_letters, { scope = T })
  add("POST", "/v1/dead-letters/{id}/requeue", "operate", requeue, { scope = T, action = "dead_letter.requeue" })
  add("POST", "/v1/tokens", "admin", post_token, { scope = T, action = "token.create" })
  add("GET", "/v1/tokens", "admin", get_tokens, { scope = T })
  add("DELETE", "/v1/tokens/{id}", "admin", delete_token, { scope = T, action = "token.revoke" })
  add("POST", "/v1/decide/{policy}", "decide", decide, { scope = T })
  add("GET", "/v1/decisions", "read", get_decisions, { scope = T })
  add("GET", "/v1/policies", "read", get_policies, { scope = T })
  add("GET", "/v1/policies/{name}", "read", get_policy, { scope = T })
  add("POST", "/v1/policies/reload", "operate", post_reload, "policy.reload")
  add("POST", "/v1/policies/{name}/rollback", "operate", post_rollback, "policy.rollback")
  add("POST", "/v1/policies/{name}/simulate", "read", post_simulate, { scope = T })
  require("steward.deploy.rollouts_api").install(add, ctx) -- rollouts (docs/deploy/rollouts.md)
  -- Cluster view (steward.runtime.cluster, docs/operations.md): instances, leader, heartbeats, load.
  add("GET", "/v1/cluster", "operate", function(c) return reply(require("steward.runtime.cluster").view(c)) end)
  require("steward.alerting.api").install(add, ctx) -- Alertmanager API v2 (docs/alerting.md)
  -- Incidents, signed links, notification history (docs/incidents.md)
  require("steward.alerting.incidents_api").install(add, ctx)
  require("steward.deploy.approvals_api").install(add, ctx) -- approvals and their signed links (docs/deploy/approvals.md)
  require("steward.scaling.api").install(add, ctx) -- autoscalers (docs/scaling/autoscaler.md)
  require("steward.capacity.api").install(add, ctx) -- capacity reports, history, cost, deferred jobs (docs/scaling/capacity.md)
  -- Supervised services (docs/deploy/services.md): each one's instances, states and restarts.
  add("GET", "/v1/services", "read", function()
    local list, supervising = require("steward.deploy.supervisor").status()
    local fmt = require("steward.runtime.store.util").format_rfc3339
    for _, svc in ipairs(list) do
      for _, inst in ipairs(svc.instances) do
        if inst.started_at then inst.started_at = fmt(inst.started_at) end
        if inst.last_exit and inst.last_exit.at then inst.last_exit.at = fmt(inst.last_exit.at) end
      end
      svc.instances = json.array(svc.instances)
    end
    return reply(200, { services = json.array(list), supervising = supervising })
  end)
  require("steward.scaling.quota_api").install(add, ctx) -- scale by hand, quotas (docs/scaling/quotas.md)
  require("steward.success.api").install(add, ctx) -- tickets, CSAT, health, onboarding, usage (docs/customer-success.md)
  require("steward.tenants.api").install(add, ctx) -- tenants and their provisioning (docs/tenants.md)
  require("steward.billing.api").install(add, ctx) -- plans, subscriptions, usage, coupons, wallets (docs/billing/subscriptions.md)
  require("steward.billing.invoices_api").install(add, ctx) -- invoices, credit notes (docs/billing/invoices.md)
  -- The route table itself: each route's permission and tenant scope (docs/http-api.md).
  add("GET", "/v1/routes", "read", function(c)
    return reply(200, { routes = json.array(c.routes) })
  end, { scope = T })
  add("GET", "/metrics", not ctx.cfg.metrics_public and "read" or nil, get_metrics)
  add("GET", "/healthz", nil, healthz)
  add("GET", "/readyz", nil, readyz)
end

return M
