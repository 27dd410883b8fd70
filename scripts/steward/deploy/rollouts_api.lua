-- steward.deploy.rollouts_api: the rollout routes of the daemon's HTTP API (docs/http-api.md,
-- docs/deploy/rollouts.md). Reads answer from the rollouts' rows; every change is an event
-- (deploy.admitted, rollout.command) that the service's rollout policy handles in order with
-- the rest of its events — the API never moves a rollout itself. A start first asks the loaded
-- deploy.freeze policy, through the same path as POST /v1/decide (decision log included).
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local events = require "steward.runtime.events"
local audit_trail = require "steward.runtime.daemon.audit_trail"
local rollout = require "steward.deploy.rollout"
local rstore = require "steward.deploy.rollout_store"

local type, ipairs, pairs, tostring, tonumber, format = type, ipairs, pairs, tostring, tonumber, string.format

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function bad(field, reason, code) return api.invalid(field, reason, code) end

local HIDDEN = { done = true, pending = true, wakes = true, nwake = true, cmds = true, ss = true, rev = true }

local function view(r)
  local out = {}
  for k, v in pairs(r) do if not HIDDEN[k] then out[k] = v end end
  out.created_at = r.created_at and util.format_rfc3339(r.created_at) or nil
  out.updated_at = r.updated_at and util.format_rfc3339(r.updated_at) or nil
  out.revision_of_row = r.rev
  local ss = r.ss or {}
  out.current = { step = r.step, approval = ss.approval, paused_until = ss.until_ and util.format_rfc3339(ss.until_) or nil,
                  analysis = ss.run }
  if out.plan then out.plan = json.array(out.plan) end
  return out
end

-- A tenant's token sees and acts on its tenant's rollouts only; to it the others do not exist.
local function visible(r, principal)
  return r and not (principal and principal.tenant and r.tenant ~= principal.tenant)
end

local function get_list(ctx, req, principal)
  local q = api.parse_query(req.query)
  local f = {}
  for k, v in pairs(q) do
    if k == "service" then
      f.service = v
    elseif k == "phase" then
      if not (rstore.ACTIVE[v] or rollout.TERMINAL[v]) then
        return bad("phase", "Pending, Progressing, Paused, RollbackBlocked, Completed or Aborted expected", "invalid_query")
      end
      f.phase = v
    elseif k == "limit" then
      local n = tonumber(v)
      if not n or n < 1 or n > 1000 or n ~= math.floor(n) then return bad("limit", "integer from 1 to 1000 expected", "invalid_query") end
      f.limit = n
    else
      return bad(k, "unknown query parameter", "invalid_query")
    end
  end
  if principal and principal.tenant then f.tenant = principal.tenant end
  local list, err = rstore.list(ctx.store, f)
  if not list then return api.unavailable(tostring(err)) end
  for i, r in ipairs(list) do list[i] = view(r) end
  return api.reply(200, { rollouts = json.array(list) })
end

local function get_one(ctx, req, principal)
  local r, err = rstore.get(ctx.store, req.params.id)
  if r == nil then return api.unavailable(tostring(err)) end
  if not visible(r, principal) then return api.fail(404, "not_found", "no rollout " .. req.params.id) end
  local hist
  hist, err = rstore.history(ctx.store, r.id)
  if not hist then return api.unavailable(tostring(err)) end
  for _, h in ipairs(hist) do h.at = util.format_rfc3339(h.at) end
  local out = view(r)
  out.history = json.array(hist)
  return api.reply(200, out)
end

local START = { service = true, revision = true, environment = true, migrations = true, override = true,
                stable = true, replicas = true }

-- The freeze policy's answer: nil when it allows (or none is loaded), else a 409 answer.
local function ask_freeze(ctx, principal, body)
  local p = ctx.policies and ctx.policies["deploy.freeze"]
  if not p or not p.decide then return nil end
  local input = { service = body.service, revision = body.revision, environment = body.environment,
                  override = body.override }
  local status, headers, text = api.decide(ctx, { params = { policy = "deploy.freeze" }, headers = {},
    body = json.encode(input) }, principal)
  if status ~= 200 then return status, headers, text end
  local doc = json.decode(text) or {}
  local res = type(doc.result) == "table" and doc.result or {}
  if res.allow == false then
    local window = res.window ~= json.null and res.window or nil
    return api.fail(409, "frozen", format("deploys of %s are frozen%s%s", body.service,
      window and (" by window " .. tostring(window)) or "", res.reason and res.reason ~= json.null and (": " .. tostring(res.reason)) or ""),
      { window = window or json.null, reason = res.reason or json.null, decision_id = doc.decision_id })
  end
  return nil
end

local function post_start(ctx, req, principal)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "null")
  if body == nil then return api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if type(body) ~= "table" or json.is_array(body) then return api.fail(400, "invalid_json", "expected an object") end
  for k in pairs(body) do
    if not START[k] then return bad(tostring(k), "unknown field") end
  end
  if type(body.service) ~= "string" or body.service == "" then return bad("service", "a service name expected") end
  if type(rollout.services[body.service]) ~= "table" then
    return bad("service", "not declared in the config's services")
  end
  if type(body.revision) ~= "string" or not body.revision:match("^[%w._-]+$") or #body.revision > 100 then
    return bad("revision", "a revision id of letters, digits, '.', '_' or '-' (at most 100) expected")
  end
  for _, f in ipairs({ "environment", "stable" }) do
    if body[f] ~= nil and type(body[f]) ~= "string" then return bad(f, "string expected") end
  end
  if body.replicas ~= nil and (type(body.replicas) ~= "number" or body.replicas < 1 or body.replicas ~= math.floor(body.replicas)) then
    return bad("replicas", "integer >= 1 expected")
  end
  if body.migrations ~= nil then
    if type(body.migrations) ~= "table" then return bad("migrations", "a list of {name, sql} expected") end
    for i, m in ipairs(body.migrations) do
      if type(m) ~= "table" or type(m.sql) ~= "string" or (m.name ~= nil and type(m.name) ~= "string") then
        return bad(format("migrations[%d]", i), "{name = string, sql = string} expected")
      end
    end
  end
  local active
  active, err = rstore.active(ctx.store, body.service)
  if active == nil then return api.unavailable(tostring(err)) end
  if active then
    return api.fail(409, "rollout_in_progress", format("rollout %s of %s is %s", active.id, body.service, active.phase),
      { rollout = active.id, phase = active.phase })
  end
  local fs, fh, fb = ask_freeze(ctx, principal, body)
  if fs then
    req.audit = { target = body.service, detail = "refused by deploy.freeze" }
    return fs, fh, fb
  end
  local data = {}
  for k, v in pairs(body) do data[k] = v end
  data.requested_by = audit_trail.actor(principal)
  local ev = { id = util.uuidv7(), type = "deploy.admitted", tenant = principal and principal.tenant or nil,
               source = "api", data = data }
  local res
  res, err = events.append(ctx.store, { ev })
  if not res then return api.unavailable(tostring(err)) end
  local id = rollout.rollout_id(body.service, body.revision, ev.id)
  req.audit = { target = id, detail = format("%s %s", body.service, body.revision) }
  return api.reply(202, { rollout = id, event_id = ev.id, service = body.service, revision = body.revision })
end

local function command(action)
  return function(ctx, req, principal)
    local r, err = rstore.get(ctx.store, req.params.id)
    if r == nil then return api.unavailable(tostring(err)) end
    if not visible(r, principal) then return api.fail(404, "not_found", "no rollout " .. req.params.id) end
    local body = {}
    if req.body ~= "" then
      local b, st, code, derr, details = api.decode_json(ctx, req.body)
      if b == nil then return api.fail(st, code, derr, details) end
      if type(b) ~= "table" or json.is_array(b) then return api.fail(400, "invalid_json", "expected an object") end
      body = b
    end
    local known = action == "promote" and { full = true } or action == "abort" and { force = true } or {}
    for k, v in pairs(body) do
      if not known[k] then return bad(tostring(k), "unknown field") end
      if type(v) ~= "boolean" then return bad(tostring(k), "true or false expected") end
    end
    if action == "retry" and r.phase ~= "Aborted" then
      return api.fail(409, "invalid_phase", format("rollout %s is %s: only an aborted rollout is retried", r.id, r.phase),
        { phase = r.phase })
    end
    if action ~= "retry" and rollout.TERMINAL[r.phase] then
      return api.fail(409, "invalid_phase", format("rollout %s is %s", r.id, r.phase), { phase = r.phase })
    end
    local ev = { type = "rollout.command", tenant = r.tenant, source = "api",
      data = { rollout = r.id, service = r.service, action = action, full = body.full, force = body.force,
               by = audit_trail.actor(principal) } }
    local res
    res, err = events.append(ctx.store, { ev })
    if not res then return api.unavailable(tostring(err)) end
    req.audit = { target = r.id, before = audit_trail.digest({ phase = r.phase, step = r.step }) }
    return api.reply(202, { rollout = r.id, action = action, event_id = res.ids[1], phase = r.phase, step = r.step })
  end
end

-- install(add, ctx): add is the daemon API's route helper (authentication, permission, tenant
-- scope, audit).
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  if ctx.store then
    local ok, err = rstore.ready(ctx.store)
    if not ok then error(err, 0) end
  end
  local T = "tenant"
  add("GET", "/v1/rollouts", "read", get_list, { scope = T })
  add("GET", "/v1/rollouts/{id}", "read", get_one, { scope = T })
  add("POST", "/v1/rollouts", "operate", post_start, { scope = T, action = "rollout.start" })
  add("POST", "/v1/rollouts/{id}/promote", "operate", command("promote"), { scope = T, action = "rollout.promote" })
  add("POST", "/v1/rollouts/{id}/abort", "operate", command("abort"), { scope = T, action = "rollout.abort" })
  add("POST", "/v1/rollouts/{id}/retry", "operate", command("retry"), { scope = T, action = "rollout.retry" })
end

return M
