-- steward.billing.render_api: an invoice as a page or a document over HTTP
-- (GET /v1/billing/invoices/{id}/html and /pdf; docs/billing/rendering.md). A tenant's token
-- reads its own invoices only: another tenant's is a 404, as if it did not exist.
local render = require "steward.billing.render"

local type, tostring, pcall, require = type, tostring, pcall, require
local format = string.format

local M = {}

local api -- steward.runtime.daemon.api; set by install

-- The page's own resources only: no script, styles inline, a logo over https or data:.
local CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; base-uri 'none'; form-action 'none'"

-- The billing settings: the daemon's configuration, else steward.billing.config's in force.
local function settings(ctx)
  local b = ctx.cfg and type(ctx.cfg.billing) == "table" and ctx.cfg.billing
  if not b then
    local ok, bc = pcall(require, "steward.billing.config")
    b = ok and type(bc) == "table" and type(bc.current) == "table" and bc.current or {}
  end
  local inv = type(b.invoices) == "table" and b.invoices or {}
  return { issuer = inv.issuer, net_payment_days = b.net_payment_days, timezone = b.timezone }
end

-- The invoice and its tenant's record, or the answer to give instead.
local function load(ctx, req, principal)
  local ok, invoices = pcall(require, "steward.billing.invoices")
  if not ok then return nil, api.unavailable("invoices are not available: steward.billing.invoices is not installed") end
  local id = req.params.id
  local inv, err = invoices.get(ctx.store, id)
  if inv == nil then return nil, api.unavailable(tostring(err)) end
  if not inv or (principal and principal.tenant and principal.tenant ~= inv.tenant) then
    return nil, api.fail(404, "not_found", "no invoice " .. id)
  end
  local tenant
  local okt, record = pcall(require, "steward.tenants.record")
  if okt then
    local okg, rec = pcall(record.get, ctx.store, inv.tenant)
    if okg and type(rec) == "table" then tenant = rec end
  end
  return inv, tenant or { id = inv.tenant }
end

local function filename(inv, ext)
  local name = tostring(inv.number or inv.id):gsub("[^%w._-]", "_")
  return format('inline; filename="%s.%s"', name, ext)
end

-- get(ctx, req, principal, kind): the page ("html") or the document ("pdf"); h5's
-- GET /v1/billing/invoices/{id} hands "<id>.html" and "<id>.pdf" here.
function M.get(ctx, req, principal, kind)
  local inv, tenant = load(ctx, req, principal)
  if not inv then return tenant end
  local opts = settings(ctx)
  -- a finalized invoice carries the issuer it was issued under (h11); a draft shows the one in force
  if type(inv.issuer) == "table" then opts.issuer = inv.issuer end
  if kind == "html" then
    local ok, page = pcall(render.html, inv, tenant, opts)
    if not ok then return api.fail(500, "render_failed", tostring(page)) end
    return 200, { ["content-type"] = "text/html; charset=utf-8", ["content-security-policy"] = CSP,
      ["content-disposition"] = filename(inv, "html"), ["x-content-type-options"] = "nosniff" }, page
  end
  local ok, pdf, err = pcall(render.pdf, inv, tenant, opts)
  if not ok then return api.fail(500, "render_failed", tostring(pdf)) end
  if not pdf then
    if tostring(err):match("^busy") then return api.fail(503, "busy", err, nil, { ["retry-after"] = "1" }) end
    return api.fail(502, "render_failed", err)
  end
  return 200, { ["content-type"] = "application/pdf", ["content-disposition"] = filename(inv, "pdf") }, pdf
end

-- suffixed(ctx, req, principal) -> status, headers, body | nil: for a route whose {id} ends in
-- .html or .pdf (the router matches whole segments only), the rendering; else nil.
function M.suffixed(ctx, req, principal)
  local id, ext = tostring(req.params.id):match("^(.+)%.(%a+)$")
  if ext ~= "html" and ext ~= "pdf" then return nil end
  api = api or require "steward.runtime.daemon.api"
  local r = { params = { id = id }, query = req.query, headers = req.headers, body = req.body }
  return M.get(ctx, r, principal, ext)
end

-- install(add, ctx): the routes, with the daemon API's add.
function M.install(add)
  api = require "steward.runtime.daemon.api"
  add("GET", "/v1/billing/invoices/{id}/html", "read", function(ctx, req, principal)
    return M.get(ctx, req, principal, "html")
  end, { scope = "tenant" })
  add("GET", "/v1/billing/invoices/{id}/pdf", "read", function(ctx, req, principal)
    return M.get(ctx, req, principal, "pdf")
  end, { scope = "tenant" })
end

return M
