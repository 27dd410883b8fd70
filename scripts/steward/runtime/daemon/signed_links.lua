-- steward.runtime.daemon.signed_links: the HTTP side of the signed links in notifications
-- (incidents' ack/resolve, approvals' approve/deny) and of the POST routes that take either a
-- link's signature or a token. A GET on a link only answers a confirm page; its form POSTs back
-- with the same signature and that POST acts — link previewers in mail and chat clients fetch
-- with GET, and must not act by doing so. One kind of link is a spec:
-- {noun = "incident", path = "/v1/incidents", actions = {ack = true, ...},
--  verbs = {ack = "Acknowledge", ...}, question = "%s incident?", done = {ack = "Acknowledged", ...},
--  verify = function(id, action, exp, sig) -> true | nil, reason, get = function(store, id),
--  describe = function(item) -> html, settled = function(item, action) -> html | nil,
--  act = function(ctx, req, link), fields = html (optional), expired = html (the 410 page's)}
local json = require "steward.json"
local auth = require "steward.runtime.auth"

local tostring, format = tostring, string.format

local M = {}

local function api() return require "steward.runtime.daemon.api" end

function M.html_escape(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;"))
end
local html_escape = M.html_escape

local HTML = { ["content-type"] = "text/html; charset=utf-8", ["cache-control"] = "no-store",
               ["referrer-policy"] = "no-referrer", ["x-frame-options"] = "DENY" }

-- page(status, title, body_html) -> status, headers, body
function M.page(status, title, body)
  return status, HTML, format([[<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>%s</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em">
<h1>%s</h1>
%s
</body></html>
]], html_escape(title), html_escape(title), body)
end
local page = M.page

-- The signature from the query string or a form body (not a JSON body: a client's JSON is no
-- form); -> exp, sig
function M.signature(req)
  local q = api().parse_query(req.query)
  if (not q.sig) and req.body and req.body ~= "" and not req.body:match("^%s*{") then
    local f = api().parse_query(req.body)
    q.exp, q.sig = q.exp or f.exp, f.sig
  end
  return q.exp, q.sig
end

-- check(ctx, req, spec) -> {id, action, exp, sig, item} | nil, status, headers, body (the
-- page refusing the link: unknown action, no signature, a bad or expired one, no such item).
function M.check(ctx, req, spec)
  local id, action = req.params.id, req.params.action
  if not spec.actions[action] then return nil, page(404, "Not found", "<p>Unknown action.</p>") end
  local exp, sig = M.signature(req)
  if not exp or not sig then
    return nil, page(400, "Link incomplete", "<p>This link lacks its signature (<code>exp</code> and <code>sig</code>).</p>")
  end
  local ok, why = spec.verify(id, action, exp, sig)
  if not ok then
    if why == "expired" then return nil, page(410, "Link expired", spec.expired) end
    return nil, page(403, "Link not valid", "<p>The link's signature does not match (" .. html_escape(why) .. ").</p>")
  end
  local item, err = spec.get(ctx.store, id)
  if item == nil then return nil, api().unavailable(tostring(err)) end
  if not item then return nil, page(404, "Not found", "<p>No such " .. spec.noun .. ".</p>") end
  return { id = id, action = action, exp = exp, sig = sig, item = item }
end

-- get(ctx, req, spec) -> the answer to a GET on a link: a confirm page whose form POSTs the
-- signature back (with spec.fields, if any), or "Nothing to do" when spec.settled(item, action)
-- says why (the item moved on).
function M.get(ctx, req, spec)
  local l, s, h, b = M.check(ctx, req, spec)
  if not l then return s, h, b end
  local settled = spec.settled(l.item, l.action)
  if settled then return page(200, "Nothing to do", spec.describe(l.item) .. settled) end
  local verb = spec.verbs[l.action]
  local action = format("%s/%s/%s?exp=%s", spec.path, html_escape(l.id), l.action, html_escape(l.exp))
  return page(200, format(spec.question, verb), spec.describe(l.item) .. format([[
<form method="post" action="%s">
<input type="hidden" name="sig" value="%s">
%s<button type="submit" style="font-size: 1.2em; padding: 0.5em 1.5em">%s</button>
</form>]], action, html_escape(l.sig), spec.fields or "", verb))
end

-- Did a person's browser send this (the confirm page's form), rather than a client?
local function wants_html(req)
  local accept = req.headers.accept or ""
  local ctype = req.headers["content-type"] or ""
  return ctype:match("^application/x%-www%-form%-urlencoded") or accept:match("text/html")
end

-- post(ctx, req, spec) -> status, headers, body | nil (no signature: the caller wants a token).
-- A signed POST acts through spec.act(ctx, req, link) -> the API's answer (a fourth value true:
-- a refusal of the request itself, answered as it is); a browser gets a page saying what came
-- of it (spec.done[action] on 200, else "Nothing done" with the error's message).
function M.post(ctx, req, spec)
  local _, sig = M.signature(req)
  if not sig then return nil end
  local l, s, h, b = M.check(ctx, req, spec)
  if not l then return s, h, b end
  local status, headers, body, as_is = spec.act(ctx, req, l)
  if as_is or not wants_html(req) then return status, headers, body end
  local html = spec.describe(spec.get(ctx.store, l.id) or l.item)
  if status == 200 then return page(200, spec.done[l.action], html) end
  local doc = json.decode(body) or {}
  return page(status, "Nothing done", html .. "<p>" .. html_escape(doc.error and doc.error.message or "") .. "</p>")
end

-- operator(ctx, req, plural) -> principal | nil, status, headers, body: the token of a POST
-- that came without a signature, which must operate and have no tenant (plural: "incidents").
function M.operator(ctx, req, plural)
  local principal, reason = ctx.auth:authenticate(req.headers.authorization)
  if not principal then
    return nil, api().fail(401, "unauthorized", reason == "missing" and "an Authorization: Bearer <token> header is required"
      or "the token is not valid", nil, { ["www-authenticate"] = 'Bearer realm="steward"' })
  end
  if not auth.allows(principal, "operate") then
    return nil, api().fail(403, "forbidden", format("role %s may not operate", principal.role))
  end
  if principal.tenant then
    return nil, api().fail(403, "forbidden", plural .. " are not tenant-scoped: use a token without a tenant")
  end
  return principal
end

return M
