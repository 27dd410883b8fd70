-- steward.scaling.quota_api: the operators' door to scale a supervised service by hand and
-- the quotas' usage (docs/http-api.md, docs/scaling/quotas.md). A scale goes through the
-- supervisor (on the leader, forwarded from any worker), which reserves quota before it starts
-- anything: beyond a quota the answer is 409 quota_exceeded naming it, and nothing started.
local json = require "steward.json"

local type, pairs, ipairs, tostring, tonumber, floor = type, pairs, ipairs, tostring, tonumber, math.floor

local M = {}

local api -- steward.runtime.daemon.api; set by install

local SCALE = { revision = true, instances = true }

-- The details of a refusal, from the message steward.scaling.quota wrote.
local function refusal(err)
  local q, limit, rest = tostring(err):match("quota exceeded: (%S+) = (%S+)(.*)$")
  if not q then return nil end
  local in_use, requested = rest:match(": (%S+) in use, (%S+) requested")
  return { quota = q, limit = tonumber(limit) or limit, in_use = tonumber(in_use) or in_use,
    requested = tonumber(requested) or requested }
end

local function post_scale(ctx, req)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "null")
  if body == nil then return api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if type(body) ~= "table" or json.is_array(body) then return api.fail(400, "invalid_json", "expected an object") end
  for k in pairs(body) do
    if not SCALE[k] then return api.invalid(tostring(k), "unknown field (revision, instances)") end
  end
  local service = req.params.name -- {name}: the audit trail's target
  if type(body.revision) ~= "string" or not body.revision:match("^[%w._-]+$") or #body.revision > 100 then
    return api.invalid("revision", "a revision id of letters, digits, '.', '_' or '-' (at most 100) expected")
  end
  local n = body.instances
  if type(n) ~= "number" or n ~= floor(n) or n < 0 or n > 1000 then
    return api.invalid("instances", "an integer from 0 to 1000 expected")
  end
  local supervisor = require "steward.deploy.supervisor"
  local list
  list, err = supervisor.scale(service, body.revision, n)
  if not list then
    local r = refusal(err)
    if r then return api.fail(409, "quota_exceeded", tostring(err), r) end
    if tostring(err):find("no service '", 1, true) then return api.fail(404, "not_found", tostring(err)) end
    if tostring(err):find("has no run section", 1, true) then return api.invalid("service", tostring(err)) end
    if tostring(err):find("did not answer", 1, true) or tostring(err):find("not running in this process", 1, true) then
      return api.fail(503, "unavailable", tostring(err))
    end
    return api.fail(500, "scale_failed", tostring(err))
  end
  local fmt = require("steward.runtime.store.util").format_rfc3339
  for _, inst in ipairs(list) do
    if inst.started_at then inst.started_at = fmt(inst.started_at) end
    if inst.last_exit and inst.last_exit.at then inst.last_exit.at = fmt(inst.last_exit.at) end
  end
  return api.reply(200, { service = service, revision = body.revision, instances = json.array(list) })
end

local function get_quotas()
  local quota = require "steward.scaling.quota"
  local list, err = quota.usage()
  if not list then return api.fail(503, "unavailable", tostring(err)) end
  local out = {}
  for i, s in ipairs(list) do
    local used = {}
    for r in pairs(s.limits) do used[r] = s.used[r] end
    out[i] = { scope = s.scope, quota = s.quota, limits = s.limits, used = used }
  end
  return api.reply(200, { quotas = json.array(out) })
end

-- install(add, ctx): the routes, with the daemon API's add (permission, audit action).
function M.install(add)
  api = require "steward.runtime.daemon.api"
  add("POST", "/v1/services/{name}/scale", "operate", post_scale, "service.scale")
  add("GET", "/v1/quotas", "read", get_quotas)
end

return M
