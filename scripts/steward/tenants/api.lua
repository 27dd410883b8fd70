-- steward.tenants.api: the tenants' HTTP routes (docs/http-api.md "Tenants"): create, list,
-- read, patch (optimistic, by version), suspend, resume, offboard, and a tenant's provisioning
-- saga. Admin tokens without a tenant manage tenants; a tenant's token may read its own record
-- and nothing else (another tenant's id is a 404, as if it did not exist).
local json = require "steward.json"
local tenants = require "steward.tenants"
local record = require "steward.tenants.record"
local audit = require "steward.runtime.store.audit"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function body_of(ctx, req)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "{}")
  if body == nil then return nil, api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if type(body) ~= "table" or (json.is_array(body) and next(body) ~= nil) then
    return nil, api.fail(400, "invalid_json", "expected an object")
  end
  return body
end

local function view(r)
  local v = record.view(r)
  v.failed_step = r.failed_step or json.null
  v.reason = r.reason or json.null
  return v
end

local function store_error(err)
  return api.fail(503, "unavailable", tostring(err))
end

local function post_tenant(ctx, req)
  local body, a, b, c = body_of(ctx, req)
  if not body then return a, b, c end
  local s, field, reason = record.check_new(body)
  if not s then return api.invalid(field, reason) end
  req.audit = { target = s.id }
  local r, err = tenants.create(s)
  if not r then
    if err == "exists" then return api.fail(409, "exists", "tenant " .. s.id .. " exists") end
    return store_error(err)
  end
  local token = r.admin_token
  r.admin_token = nil
  req.audit.after = audit.digest(r)
  local out = view(r)
  out.admin_token = token
  return api.reply(201, out, { location = "/v1/tenants/" .. r.id })
end

local function state_param(v)
  if tenants.STATES[v] then return v end
  return nil, "one of requested, provisioning, active, suspended, offboarding, removed, failed expected"
end

local function get_tenants(ctx, req)
  local f, a, b, c = api.query(req, { state = state_param, plan = api.params.text, limit = api.params.limit })
  if not f then return a, b, c end
  local list, err = tenants.list(f)
  if not list then return store_error(err) end
  for i, r in ipairs(list) do list[i] = view(r) end
  return api.reply(200, { tenants = json.array(list) })
end

-- A tenant's token sees its own tenant only; any other id is answered as unknown.
local function visible(principal, id)
  return not principal.tenant or principal.tenant == id
end

local function not_found(id) return api.fail(404, "not_found", "no tenant " .. tostring(id)) end

local function get_tenant(ctx, req, principal)
  local id = req.params.id
  if not visible(principal, id) then return not_found(id) end
  local r, err = tenants.get(id)
  if not r then
    if err == "not found" then return not_found(id) end
    return store_error(err)
  end
  return api.reply(200, view(r))
end

local function get_saga(ctx, req)
  local s, err = tenants.saga(req.params.id)
  if not s then
    if err == "not found" then return not_found(req.params.id) end
    return store_error(err)
  end
  local fmt = require("steward.runtime.store.util").format_rfc3339
  local list = {}
  for i, x in ipairs(s.steps) do
    list[i] = { step = x.step, status = x.status, runs = x.runs, result = x.result or json.null,
      error = x.error or json.null, started = fmt(x.started), finished = x.finished and fmt(x.finished) or json.null }
  end
  return api.reply(200, { id = s.id, tenant = s.subject, state = s.state, failed_step = s.failed_step or json.null,
    error = s.error or json.null, steps = json.array(list) })
end

local function refused(id, err, cur)
  if err == "not found" then return not_found(id) end
  if err == "conflict" then
    return api.fail(409, "conflict", "the tenant changed since version you sent; read it again",
      { version = cur and cur.version or json.null })
  end
  local s = tostring(err)
  if s:match("^invalid state") then return api.fail(409, "invalid_state", s) end
  if s:match("^config%.") then
    local field, reason = s:match("^(%S+): (.*)$")
    return api.invalid(field, reason)
  end
  return store_error(err)
end

local function patch_tenant(ctx, req)
  local id = req.params.id
  local body, a, b, c = body_of(ctx, req)
  if not body then return a, b, c end
  local p, field, reason = record.check_patch(body)
  if not p then return api.invalid(field, reason) end
  if p.version == nil then return api.invalid("version", "required: the version of the record you read") end
  local before = tenants.get(id)
  local r, err, cur = tenants.update(id, p)
  if not r then return refused(id, err, cur) end
  req.audit = { before = before and audit.digest(before), after = audit.digest(r) }
  return api.reply(200, view(r))
end

local function action(fn)
  return function(ctx, req)
    local id = req.params.id
    local body, a, b, c = body_of(ctx, req)
    if not body then return a, b, c end
    for k in pairs(body) do
      if not (fn == "suspend" and k == "reason") then
        return api.invalid(tostring(k), fn == "suspend" and "unknown field (reason)" or "unknown field (none are taken)")
      end
    end
    if body.reason ~= nil and (type(body.reason) ~= "string" or #body.reason > 2000) then
      return api.invalid("reason", "a string of at most 2000 bytes expected")
    end
    local r, err, cur
    if fn == "suspend" then r, err, cur = tenants.suspend(id, body.reason) else r, err, cur = tenants[fn](id) end
    if not r then return refused(id, err, cur) end
    req.audit = { after = audit.digest({ id = r.id, state = r.state, version = r.version }) }
    return api.reply(fn == "offboard" and 202 or 200, view(r))
  end
end

-- install(add): the routes, with the daemon API's add (permission, scope, audit action).
function M.install(add)
  api = require "steward.runtime.daemon.api"
  add("POST", "/v1/tenants", "admin", post_tenant, "tenant.create")
  add("GET", "/v1/tenants", "admin", get_tenants)
  add("GET", "/v1/tenants/{id}", "read", get_tenant, { scope = "tenant" })
  add("PATCH", "/v1/tenants/{id}", "admin", patch_tenant, "tenant.update")
  add("GET", "/v1/tenants/{id}/saga", "admin", get_saga)
  add("POST", "/v1/tenants/{id}/suspend", "admin", action("suspend"), "tenant.suspend")
  add("POST", "/v1/tenants/{id}/resume", "admin", action("resume"), "tenant.resume")
  add("POST", "/v1/tenants/{id}/offboard", "admin", action("offboard"), "tenant.offboard")
end

return M
