-- steward.alerting.incidents_api: the incident routes of the daemon's HTTP API
-- (docs/http-api.md, docs/incidents.md): list, show with timeline, ack/resolve/reassign with a
-- token, and the signed links of notifications. A signed link (GET) only answers a confirm
-- page; its form POSTs back with the same signature and that POST acts — link previewers in
-- mail and chat clients fetch with GET, and must not acknowledge anything by doing so.
local json = require "steward.json"
local notify = require "steward.notify"
local incidents = require "steward.alerting.incidents"
local links = require "steward.alerting.links"
local util = require "steward.runtime.store.util"
local audit_trail = require "steward.runtime.daemon.audit_trail"
local links_http = require "steward.runtime.daemon.signed_links"

local type, ipairs, pairs, tostring, tonumber, format = type, ipairs, pairs, tostring, tonumber, string.format

local M = {}

local api -- steward.runtime.daemon.api (reply, fail, parse_query); set by install

local function bad(field, reason, code) return api.invalid(field, reason, code) end

local function view(inc) return api.stamped(inc, { "created_at", "acked_at", "resolved_at", "updated_at", "alert_at" }) end

-- The actor of a token: its name, else its id.
local function actor_of(_, principal)
  if not principal then return "api" end
  return principal.name or ("token:" .. tostring(principal.id))
end

local function get_list(ctx, req)
  local P = api.params
  local f, s, h, b = api.query(req, { service = P.text, since = P.since, limit = P.limit, cursor = P.text,
    state = function(v)
      return (incidents.STATES[v] or v == "open") and v, "triggered, acknowledged, resolved, silenced or open expected"
    end })
  if not f then return s, h, b end
  local res, err = incidents.list(ctx.store, f)
  if not res then
    if tostring(err):match("cursor") then return bad("cursor", "not a cursor this API returned", "invalid_query") end
    return api.unavailable(tostring(err))
  end
  local list = {}
  for i, inc in ipairs(res.incidents) do list[i] = view(inc) end
  return api.reply(200, { incidents = json.array(list), next_cursor = res.next_cursor or json.null })
end

local function get_one(ctx, req)
  local inc, err = incidents.get(ctx.store, req.params.id)
  if inc == nil then return api.unavailable(tostring(err)) end
  if not inc then return api.fail(404, "not_found", "no incident " .. req.params.id) end
  local tl
  tl, err = incidents.timeline(ctx.store, inc.id)
  if not tl then return api.unavailable(tostring(err)) end
  for _, e in ipairs(tl) do e.at = util.format_rfc3339(e.at); e.id = nil end
  local out = view(inc)
  out.timeline = json.array(tl)
  return api.reply(200, out)
end

local function act(ctx, id, action, actor, body, principal)
  local before = incidents.get(ctx.store, id)
  local inc, err, cur
  if action == "ack" then
    inc, err, cur = incidents.ack(ctx.store, id, actor)
  elseif action == "resolve" then
    inc, err, cur = incidents.resolve(ctx.store, id, actor)
  else
    inc, err, cur = incidents.reassign(ctx.store, id, body.assignee, actor)
  end
  -- Incident routes authenticate themselves (a token, or a signed link): they audit here.
  audit_trail.record(ctx, { action = "incident." .. action, actor = principal and audit_trail.actor(principal) or actor,
    role = principal and principal.role, target = id, before = before and audit_trail.digest(view(before)) or nil,
    after = inc and audit_trail.digest(view(inc)) or nil, outcome = inc and "ok" or "refused",
    detail = not inc and tostring(err) or (action == "reassign" and ("assignee " .. body.assignee)) or nil })
  if inc then return api.reply(200, view(inc)) end
  if cur then
    return api.fail(409, "invalid_state", tostring(err), { state = cur.state })
  end
  if tostring(err):match("^no incident") then return api.fail(404, "not_found", tostring(err)) end
  return api.unavailable(tostring(err))
end

local function post_action(ctx, req, principal)
  local action = req.params.action
  local body = {}
  if action == "reassign" then
    local b, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "null")
    if b == nil and st then return api.fail(st, code, err, details) end
    if type(b) ~= "table" or json.is_array(b) then return api.fail(400, "invalid_json", "expected an object") end
    for k in pairs(b) do
      if k ~= "assignee" then return bad(tostring(k), "unknown field") end
    end
    if type(b.assignee) ~= "string" or b.assignee == "" or #b.assignee > 200 then
      return bad("assignee", "non-empty string of at most 200 bytes expected")
    end
    body = b
  end
  return act(ctx, req.params.id, action, actor_of(ctx, principal), body, principal)
end

-- ---- signed links ----

local html_escape = links_http.html_escape

local function describe(inc)
  return format("<p><strong>%s</strong></p><p>Service %s, severity %s, state <strong>%s</strong>.</p>%s",
    html_escape(inc.title), html_escape(inc.service), html_escape(inc.severity), html_escape(inc.state),
    inc.summary ~= "" and ("<p>" .. html_escape(inc.summary) .. "</p>") or "")
end

local LINKS = { noun = "incident", path = "/v1/incidents", actions = links.ACTIONS,
  verbs = { ack = "Acknowledge", resolve = "Resolve" }, question = "%s incident?",
  done = { ack = "Acknowledged", resolve = "Resolved" }, verify = links.verify, get = incidents.get,
  describe = describe, expired = "<p>This link has expired. Use the API or the REPL.</p>" }

function LINKS.settled(inc, action)
  if (action == "ack" and inc.state ~= "triggered") or (action == "resolve" and inc.state == "resolved") then
    return "<p>The incident is " .. html_escape(inc.state) .. " already.</p>"
  end
end

function LINKS.act(ctx, _, l) return act(ctx, l.id, l.action, "link", {}) end

local function get_link(ctx, req) return links_http.get(ctx, req, LINKS) end

-- POST /v1/incidents/{id}/{action}: with a signature (a form from the confirm page, or a
-- client) it acts as "link"; otherwise it needs a token with the operate permission.
local function post(ctx, req)
  local ls, lh, lb = links_http.post(ctx, req, LINKS)
  if ls then return ls, lh, lb end
  local principal, s, h, b = links_http.operator(ctx, req, "incidents")
  if not principal then return s, h, b end
  if req.params.action ~= "ack" and req.params.action ~= "resolve" and req.params.action ~= "reassign" then
    return api.fail(404, "not_found", "no action " .. req.params.action .. " (ack, resolve, reassign)")
  end
  return post_action(ctx, req, principal)
end

-- ---- notification history ----

local function get_notifications(ctx, req)
  local P = api.params
  local f, s, h, b = api.query(req, { channel = P.text, key = P.text, kind = P.text, since = P.since, limit = P.limit,
    status = function(v)
      return (v == "sending" or v == "sent" or v == "failed") and v, "sending, sent or failed expected"
    end,
    before = function(v)
      local n = tonumber(v)
      return n and n == math.floor(n) and n or nil, "a notification id expected"
    end })
  if not f then return s, h, b end
  f.store = ctx.store
  local rows, err = notify.history(f)
  if not rows then return api.unavailable(tostring(err)) end
  local out = {}
  for i, r in ipairs(rows) do
    local o = {}
    for k, v in pairs(r) do o[k] = v end
    for _, k in ipairs({ "created", "updated", "sent_at", "lease_until" }) do
      if type(o[k]) == "number" then o[k] = util.format_rfc3339(o[k]) end
    end
    out[i] = o
  end
  local next_before = #rows == (f.limit or 100) and rows[#rows].id or nil
  return api.reply(200, { notifications = json.array(out), next_before = next_before or json.null })
end
M.get_notifications = get_notifications

-- install(add, ctx): add is the daemon API's route helper (authentication, permission,
-- metrics); routes with permission nil check a signature or a token themselves. Incidents and
-- the notification history are shared by every tenant, as the alert state of the Alertmanager
-- API is: the routes are global, so add's guard refuses tokens with a tenant.
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  links.configure({ var_dir = ctx.cfg and ctx.cfg.var_dir, listen = ctx.cfg and ctx.cfg.listen,
    alerting = ctx.cfg and ctx.cfg.alerting,
    address = function()
      if ctx.server then
        local host = (ctx.cfg.listen or "127.0.0.1:8080"):match("^(.+):%d+$") or "127.0.0.1"
        return host .. ":" .. ctx.server:port()
      end
    end })
  if ctx.store then
    local ok, err = incidents.ready(ctx.store)
    if not ok then error(err, 0) end
    incidents.refresh_gauge(ctx.store)
  end
  add("GET", "/v1/incidents", "read", get_list)
  add("GET", "/v1/incidents/{id}", "read", get_one)
  add("GET", "/v1/incidents/{id}/{action}", nil, get_link)
  add("POST", "/v1/incidents/{id}/{action}", nil, post)
  add("GET", "/v1/notifications", "read", get_notifications)
end

return M
