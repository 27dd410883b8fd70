-- steward.deploy.approvals_api: the approval routes of the daemon's HTTP API
-- (docs/http-api.md, docs/deploy/approvals.md): list, show, approve/deny with a token (the
-- token's name is the approver), and the signed links of notifications. As with incident
-- links, a GET on a link only answers a confirm page; its form POSTs back with the same
-- signature and that POST decides — link previewers in mail and chat clients fetch with GET.
-- At start it expires the approvals whose timeout fell while the daemon was down.
local json = require "steward.json"
local log = require "steward.log"
local task = require "steward.task"
local util = require "steward.runtime.store.util"
local audit_trail = require "steward.runtime.daemon.audit_trail"
local links_http = require "steward.runtime.daemon.signed_links"
local approvals = require "steward.deploy.approvals"

local type, ipairs, pairs, tostring, unpack, format = type, ipairs, pairs, tostring, unpack, string.format

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function bad(field, reason, code) return api.invalid(field, reason, code) end

local function view(a)
  local out = api.stamped(a, { "created_at", "expires_at", "decided_at" })
  out.approvers = json.array(out.approvers or {})
  out.channels = json.array(out.channels or {})
  return out
end

local function get_list(ctx, req)
  local P = api.params
  local f, s, h, b = api.query(req, { subject = P.text, limit = P.limit, state = function(v)
    return approvals.STATES[v] and v, "pending, granted, denied or expired expected"
  end })
  if not f then return s, h, b end
  local rows, err = approvals.list(ctx.store, f)
  if not rows then return api.unavailable(tostring(err)) end
  local out = {}
  for i, a in ipairs(rows) do out[i] = view(a) end
  return api.reply(200, { approvals = json.array(out) })
end

local function get_one(ctx, req)
  local a, err = approvals.get(ctx.store, req.params.id)
  if a == nil then return api.unavailable(tostring(err)) end
  if not a then return api.fail(404, "not_found", "no approval " .. req.params.id) end
  return api.reply(200, view(a))
end

-- The answer to a decision: 200 with the approval, 409 naming the first decision, 403, 404.
local function answer(a, err, cur)
  if a then return api.reply(200, view(a)) end
  if cur then
    return api.fail(409, "already_decided", tostring(err), { state = cur.state, decided_by = cur.decided_by or json.null,
      via = cur.decided_via or json.null, decided_at = cur.decided_at and util.format_rfc3339(cur.decided_at) or json.null })
  end
  local msg = tostring(err)
  if msg:match("^no approval") then return api.fail(404, "not_found", msg) end
  if msg:match("may not decide") then return api.fail(403, "forbidden", msg) end
  return api.unavailable(msg)
end

-- The comment: a JSON body {"comment": "..."} from clients, or a form field from the confirm
-- page. -> comment | nil, {status, headers, body} (the answer refusing the body)
local function comment_of(ctx, req)
  local body = req.body or ""
  if body == "" then return nil end
  local ctype = req.headers["content-type"] or ""
  if ctype:match("^application/x%-www%-form%-urlencoded") and not body:match("^%s*{") then
    local c = api.parse_query(body).comment
    if c == "" then c = nil end
    if c and #c > 2000 then return nil, { bad("comment", "at most 2000 bytes") } end
    return c
  end
  local b, st, code, err, details = api.decode_json(ctx, body)
  if b == nil and st then return nil, { api.fail(st, code, err, details) } end
  if type(b) ~= "table" or json.is_array(b) then return nil, { api.fail(400, "invalid_json", "expected an object") } end
  for k in pairs(b) do
    if k ~= "comment" then return nil, { bad(tostring(k), "unknown field") } end
  end
  if b.comment ~= nil and (type(b.comment) ~= "string" or #b.comment > 2000) then
    return nil, { bad("comment", "string of at most 2000 bytes expected") }
  end
  return b.comment
end

-- ---- signed links ----

local html_escape = links_http.html_escape

local function describe(a)
  return format("<p><strong>%s</strong>%s</p>%s<p>State <strong>%s</strong>; expires %s.</p>",
    html_escape(a.subject), a.step and (", step " .. html_escape(a.step)) or "",
    a.reason and ("<p>" .. html_escape(a.reason) .. "</p>") or "", html_escape(a.state),
    html_escape(util.format_rfc3339(a.expires_at)))
end

local LINKS = { noun = "approval", path = "/v1/approvals", actions = approvals.LINK_ACTIONS,
  verbs = { approve = "Approve", deny = "Deny" }, question = "%s?", done = { approve = "Approved", deny = "Denied" },
  verify = approvals.verify, get = approvals.get, describe = describe,
  settled = function(a) return a.state ~= "pending" and "<p>This approval was decided already.</p>" or nil end,
  fields = '<p><label>Comment <input type="text" name="comment" maxlength="2000"></label></p>\n',
  expired = "<p>This link has expired with its approval. Use the API or the REPL.</p>" }

function LINKS.act(ctx, req, l)
  local comment, cerr = comment_of(ctx, req)
  if cerr then return cerr[1], cerr[2], cerr[3], true end
  return answer(approvals.decide(ctx.store, l.id, l.action,
    { actor = "link", via = "link", comment = comment, audit_actor = "link" }))
end

local function get_link(ctx, req) return links_http.get(ctx, req, LINKS) end

-- POST /v1/approvals/{id}/{approve|deny}: with a signature it decides as "link"; otherwise it
-- needs a token that may operate (and that the approval's approvers name, by role or name).
local function post(ctx, req)
  local action = req.params.action
  local ls, lh, lb = links_http.post(ctx, req, LINKS)
  if ls then return ls, lh, lb end
  local principal, s, h, b = links_http.operator(ctx, req, "approvals")
  if not principal then return s, h, b end
  if not approvals.LINK_ACTIONS[action] then
    return api.fail(404, "not_found", "no action " .. action .. " (approve, deny)")
  end
  local comment, cerr = comment_of(ctx, req)
  if cerr then return unpack(cerr, 1, 3) end
  local name = principal.id == "admin" and "admin" or principal.name
  return answer(approvals.decide(ctx.store, req.params.id, action, { actor = name or ("token:" .. tostring(principal.id)),
    name = principal.name, role = principal.role, via = "api", comment = comment,
    audit_actor = audit_trail.actor(principal) }))
end

-- Approvals whose timeout fell while the daemon was down expire at start (the module itself
-- turns each timeout timer's event into approval.expired while the daemon runs).
local function expire_overdue(ctx)
  local st = ctx.store
  task.spawn(function()
    local n, err = approvals.expire_due(st)
    if not n then log.warn("approvals: cannot expire overdue approvals", { error = tostring(err) }) end
  end)
end

-- install(add, ctx): routes with permission nil check a signature or a token themselves; the
-- others are global, so add's guard refuses tokens with a tenant.
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  if ctx.store then
    local ok, err = approvals.ready(ctx.store)
    if not ok then error(err, 0) end
    expire_overdue(ctx)
  end
  add("GET", "/v1/approvals", "read", get_list)
  add("GET", "/v1/approvals/{id}", "read", get_one)
  add("GET", "/v1/approvals/{id}/{action}", nil, get_link)
  add("POST", "/v1/approvals/{id}/{action}", nil, post)
end

return M
