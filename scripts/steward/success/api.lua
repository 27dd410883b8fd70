-- steward.success.api: the HTTP side of customer success (docs/http-api.md, "Customer
-- success"; docs/customer-success.md): tickets filed by a tenant's token or by mail through the
-- MTA, their state changes, the CSAT survey's signed link (a GET answers a form; its POST
-- records the score once), the CSAT figures, health scores and onboarding checklists. Tenant
-- tokens see their own tenant's tickets, scores and checklist and nobody else's (another
-- tenant's ticket is a 404, as if it did not exist).
local json = require "steward.json"
local tickets = require "steward.success.tickets"
local health = require "steward.success.health"
local onboarding = require "steward.success.onboarding"
local inbound = require "steward.success.inbound"
local usage = require "steward.success.usage"
local util = require "steward.runtime.store.util"
local links_http = require "steward.runtime.daemon.signed_links"

local type, pairs, ipairs, tostring, tonumber, pcall, require, error = type, pairs, ipairs, tostring, tonumber, pcall, require, error
local format = string.format

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function view(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  for _, k in ipairs({ "created", "updated", "closed", "sla_due" }) do
    if type(o[k]) == "number" then o[k] = util.format_rfc3339(o[k]) end
  end
  o.revision = nil
  return o
end

-- The fields whose refusals are the client's (400 naming the field); any other message is
-- the store's (503), so a driver's "SQLITE_BUSY: ..." is never taken for a bad field.
local CLIENT_FIELDS = { tenant = true, subject = true, body = true, requester = true, severity = true, plan = true,
  source = true, message_id = true, score = true, comment = true, ticket = true }

-- A store failure or a refusal, as the API answers it.
local function failed(err)
  local e = tostring(err)
  if e:match("^not found") then return api.fail(404, "not_found", e) end
  if e:match("^invalid") or e:match("^conflict") or e:match("^already answered") then return api.fail(409, "conflict", e) end
  local field, reason = e:match("^([%w_]+): (.*)$")
  if field and CLIENT_FIELDS[field] then return api.invalid(field, reason) end
  local unknown, what = e:match("^(.-): (unknown field.*)$")
  if unknown then return api.invalid(unknown, what) end
  return api.unavailable(e)
end

local function body_of(ctx, req)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "null")
  if body == nil then return nil, api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if type(body) ~= "table" or json.is_array(body) then return nil, api.fail(400, "invalid_json", "expected an object") end
  return body
end

-- POST /v1/tickets: a tenant's token files for its own tenant; a token without a tenant names it.
local function post_ticket(ctx, req, principal)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  if body.source ~= nil or body.message_id ~= nil then
    return api.invalid(body.source ~= nil and "source" or "message_id", "set by steward, not by the client")
  end
  if principal.tenant then
    if body.tenant ~= nil and body.tenant ~= principal.tenant then
      return api.fail(403, "forbidden", format("a token of tenant %s files tickets for %s only", principal.tenant, principal.tenant))
    end
    body.tenant = principal.tenant
  end
  local t, err = tickets.open(ctx.store, body)
  if not t then return failed(err) end
  return api.reply(201, { ticket = view(t) })
end

-- POST /v1/tickets/inbound: a mail as the MTA hands it over (message/rfc822).
local function post_inbound(ctx, req)
  local ctype = (req.headers["content-type"] or ""):lower():match("^%s*([^;%s]+)")
  if ctype ~= "message/rfc822" then
    return api.fail(415, "unsupported_media_type", "the body must be a mail: Content-Type message/rfc822",
      { content_type = req.headers["content-type"] or json.null })
  end
  local q = api.parse_query(req.query)
  if q.tenant and not q.tenant:match("^[a-z0-9][a-z0-9_-]*$") then return api.invalid("tenant", "a tenant id expected") end
  local fields, perr = inbound.parse(req.body, q.tenant)
  if not fields then
    local field, reason = perr:match("^([%w-]+): (.*)$")
    return api.fail(422, "invalid_message", perr, { errors = { { field = field or "message", reason = reason or perr } } })
  end
  local t, created = tickets.open(ctx.store, fields)
  if not t then return failed(created) end
  return api.reply(created and 201 or 200, { ticket = view(t), duplicate = not created })
end

local function own(principal, t)
  return t and not (principal and principal.tenant and principal.tenant ~= t.tenant)
end

local P -- api.params

local function get_tickets(ctx, req, principal)
  local states = function(v) return tickets.STATES[v] and v, "open, pending, solved or closed expected" end
  local f, s, h, b = api.query(req, { tenant = P.text, state = states, queue = P.text, limit = P.limit })
  if not f then return s, h, b end
  if principal.tenant then
    if f.tenant and f.tenant ~= principal.tenant then return api.reply(200, { tickets = json.array({}) }) end
    f.tenant = principal.tenant
  end
  local list, err = tickets.list(ctx.store, f)
  if not list then return failed(err) end
  for i, t in ipairs(list) do list[i] = view(t) end
  return api.reply(200, { tickets = json.array(list) })
end

local function get_ticket(ctx, req, principal)
  local t, err = tickets.get(ctx.store, req.params.id)
  if t == nil then return failed(err) end
  if not own(principal, t) then return api.fail(404, "not_found", "no ticket " .. req.params.id) end
  local out = view(t)
  local a = tickets.answer(ctx.store, t.id)
  out.csat = a and { score = a.score, comment = a.comment, answered = util.format_rfc3339(a.answered) } or json.null
  return api.reply(200, { ticket = out })
end

local ACTIONS = { pending = "pending", solve = "solved", close = "closed", reopen = "open" }

-- POST /v1/tickets/{id}/{action}: an agent's move (operate, no tenant: agents work every queue).
local function post_action(ctx, req, principal)
  local state = ACTIONS[req.params.action]
  if not state then return api.fail(404, "not_found", "no action " .. req.params.action .. " (pending, solve, close, reopen)") end
  if req.body ~= "" then
    local body, s, h, b = body_of(ctx, req)
    if not body then return s, h, b end
    for k in pairs(body) do return api.invalid(tostring(k), "unknown field (none expected)") end
  end
  local t, err = tickets.set_state(ctx.store, req.params.id, state, principal.id or principal.role)
  if not t then return failed(err) end
  return api.reply(200, { ticket = view(t) })
end

-- ---- the CSAT survey's signed link ----

local html_escape = links_http.html_escape

local function describe(t)
  return format("<p>Ticket <strong>%s</strong>: %s</p>", html_escape(t.id), html_escape(t.subject))
end

local FIELDS = [[<fieldset><legend>How satisfied are you with our help?</legend>
<label><input type="radio" name="score" value="1" required> 1 (very unsatisfied)</label><br>
<label><input type="radio" name="score" value="2"> 2</label><br>
<label><input type="radio" name="score" value="3"> 3</label><br>
<label><input type="radio" name="score" value="4"> 4</label><br>
<label><input type="radio" name="score" value="5"> 5 (very satisfied)</label></fieldset>
<p><label>Comment (optional)<br><textarea name="comment" rows="4" cols="50" maxlength="2000"></textarea></label></p>
]]

local LINKS = { noun = "ticket", path = "/v1/csat", actions = tickets.LINK_ACTIONS, verbs = { rate = "Send" },
  question = "%s your rating?", done = { rate = "Thank you" }, fields = FIELDS,
  expired = "<p>This survey has expired.</p>" }

function LINKS.verify(id, action, exp, sig) return tickets.csat_verify(id, action, exp, sig) end

function LINKS.get(st, id)
  local t, err = tickets.get(st, id)
  if not t then return t, err end
  t.answer = tickets.answer(st, id) or nil
  return t
end

LINKS.describe = describe

function LINKS.settled(t)
  if t.answer then return "<p>This survey has its answer already: thank you.</p>" end
  if t.state ~= "closed" then return "<p>The ticket is " .. html_escape(t.state) .. " again: no survey now.</p>" end
end

function LINKS.act(ctx, req, l)
  local f = req.body:match("^%s*{") and (json.decode(req.body) or {}) or api.parse_query(req.body)
  local a, err = tickets.rate(ctx.store, l.id, tonumber(f.score), f.comment)
  if not a then return failed(err) end
  a.answered = util.format_rfc3339(a.answered)
  return api.reply(200, { answer = a })
end

local function get_link(ctx, req) return links_http.get(ctx, req, LINKS) end

local function post_link(ctx, req)
  local s, h, b = links_http.post(ctx, req, LINKS)
  if s then return s, h, b end
  return api.fail(401, "unauthorized", "a survey answer needs the link's signature (exp and sig)")
end

local function get_csat(ctx, req, principal)
  local f, s, h, b = api.query(req, { tenant = P.text })
  if not f then return s, h, b end
  if principal.tenant then f.tenant = principal.tenant end
  local list, err = tickets.csat(ctx.store, f)
  if not list then return failed(err) end
  return api.reply(200, { csat = json.array(list) })
end

-- ---- health, onboarding ----

local function score_view(r)
  return { tenant = r.tenant, at = util.format_rfc3339(r.at), score = r.score, parts = r.parts }
end

local function get_health(ctx, _, principal)
  local list, err = health.latest(ctx.store, principal.tenant)
  if not list then return failed(err) end
  for i, r in ipairs(list) do list[i] = score_view(r) end
  return api.reply(200, { health = json.array(list) })
end

local function tenant_param(req, principal)
  local tenant = req.params.tenant
  if principal.tenant and principal.tenant ~= tenant then return nil end
  return tenant
end

local function get_tenant_health(ctx, req, principal)
  local tenant = tenant_param(req, principal)
  if not tenant then return api.fail(404, "not_found", "no tenant " .. req.params.tenant) end
  local f, s, h, b = api.query(req, { limit = P.limit })
  if not f then return s, h, b end
  local list, err = health.history(ctx.store, tenant, f.limit)
  if not list then return failed(err) end
  for i, r in ipairs(list) do list[i] = score_view(r) end
  return api.reply(200, { tenant = tenant, history = json.array(list) })
end

local function get_onboarding(ctx, req, principal)
  local tenant = tenant_param(req, principal)
  if not tenant or not tenant:match("^[%w._-]+$") then return api.fail(404, "not_found", "no tenant " .. req.params.tenant) end
  local p = ctx.policies and ctx.policies["success.onboarding"]
  if not p then return api.fail(503, "unavailable", "the policy success.onboarding is not loaded: it declares the milestones") end
  -- the tenant's start: its record's creation (steward.tenants, when present), else its first milestone
  local started
  local okt, tenants = pcall(require, "steward.tenants")
  if okt and type(tenants) == "table" and type(tenants.get) == "function" then
    local okg, rec = pcall(tenants.get, tenant)
    if okg and type(rec) == "table" and type(rec.created) == "number" then started = rec.created end
  end
  local pr, err = onboarding.progress(ctx.store, tenant, p.config.milestones, { started = started })
  if not pr then return failed(err) end
  pr.started = pr.started and util.format_rfc3339(pr.started) or json.null
  for _, m in ipairs(pr.milestones) do m.reached = m.reached and util.format_rfc3339(m.reached) or json.null end
  pr.milestones = json.array(pr.milestones)
  pr.time_to_value = pr.time_to_value or json.null
  return api.reply(200, pr)
end

local function get_usage(ctx, req, principal)
  local f, s, h, b = api.query(req, { tenant = P.text, period = function(v)
    return (v == "day" or v == "week") and v, "day or week expected"
  end, since = P.since })
  if not f then return s, h, b end
  if principal.tenant then f.tenant = principal.tenant end
  f.policies = ctx.policies
  local list, err = usage.query(ctx.store, f)
  if not list then return failed(err) end
  return api.reply(200, { usage = json.array(list) })
end

-- install(add, ctx): the routes, with the daemon API's add (permission, scope, audit action).
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  P = api.params
  if ctx.store then
    local ok, err = tickets.ready(ctx.store)
    if not ok then error(err, 0) end
  end
  usage.install(ctx)
  local T = "tenant"
  add("POST", "/v1/tickets", "ingest", post_ticket, { scope = T, action = "ticket.create" })
  add("GET", "/v1/tickets", "read", get_tickets, { scope = T })
  add("POST", "/v1/tickets/inbound", "ingest", post_inbound, { action = "ticket.inbound", raw_body = true })
  add("GET", "/v1/tickets/{id}", "read", get_ticket, { scope = T })
  add("POST", "/v1/tickets/{id}/{action}", "operate", post_action, "ticket.change")
  add("GET", "/v1/csat", "read", get_csat, { scope = T })
  add("GET", "/v1/csat/{id}/{action}", nil, get_link)
  add("POST", "/v1/csat/{id}/{action}", nil, post_link)
  add("GET", "/v1/success/health", "read", get_health, { scope = T })
  add("GET", "/v1/success/health/{tenant}", "read", get_tenant_health, { scope = T })
  add("GET", "/v1/success/onboarding/{tenant}", "read", get_onboarding, { scope = T })
  add("GET", "/v1/success/usage", "read", get_usage, { scope = T })
end

return M
