-- steward.billing.invoices_api: the HTTP side of invoices and credit notes (docs/http-api.md,
-- "Billing: invoices"; docs/billing/invoices.md). Reads are open to tenant tokens for their own
-- tenant (another tenant's invoice is a 404, as if it did not exist); finalizing, voiding,
-- rebuilding and crediting move money and need an admin token. An invoice answers its
-- canonical JSON (invoices.json: keys sorted, amounts as strings at the currency's scale).
local json = require "steward.json"
local invoices = require "steward.billing.invoices"
local credit_notes = require "steward.billing.credit_notes"

local type, pairs, ipairs, tostring, concat = type, pairs, ipairs, tostring, table.concat

local M = {}

local api -- steward.runtime.daemon.api; set by install
local P

local JSON = { ["content-type"] = "application/json" }

-- {"<key>": <canonical JSON>} without decoding it again: the bytes are the invoice's own.
local function reply_raw(status, key, text)
  return status, JSON, "{" .. json.encode(key) .. ":" .. text .. "}"
end

local function list_raw(key, list, encode)
  local parts = {}
  for i, x in ipairs(list) do parts[i] = encode(x) end
  return 200, JSON, "{" .. json.encode(key) .. ":[" .. concat(parts, ",") .. "]}"
end

local CLIENT_FIELDS = { amount = true, lines = true, reason = true, method = true, period = true }

local function failed(err)
  local e = tostring(err)
  if e:match("^not found") then return api.fail(404, "not_found", e) end
  if e:match("^invalid") or e:match("^conflict") then return api.fail(409, "conflict", e) end
  local field, reason = e:match("^([%w_]+)[%[%].%w_]*: (.*)$")
  if field and CLIENT_FIELDS[field] then
    local full = e:match("^([^:]+):")
    return api.invalid(full, reason)
  end
  return api.unavailable(e)
end

local function body_of(ctx, req)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "{}")
  if body == nil then return nil, api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if type(body) ~= "table" or json.is_array(body) then return nil, api.fail(400, "invalid_json", "expected an object") end
  return body
end

local function own(principal, x)
  return x and not (principal and principal.tenant and principal.tenant ~= x.tenant)
end

local function load(ctx, req, principal)
  local inv, err = invoices.get(ctx.store, req.params.id)
  if inv == nil then return nil, failed(err) end
  if not own(principal, inv) then return nil, api.fail(404, "not_found", "no invoice " .. req.params.id) end
  return inv
end

local function states(v) return invoices.STATES[v] and v, "draft, finalized, paid or voided expected" end

local function get_invoices(ctx, req, principal)
  local f, s, h, b = api.query(req, { tenant = P.text, state = states, subscription = P.text, limit = P.limit })
  if not f then return s, h, b end
  if principal.tenant then
    if f.tenant and f.tenant ~= principal.tenant then return api.reply(200, { invoices = json.array({}) }) end
    f.tenant = principal.tenant
  end
  local list, err = invoices.list(ctx.store, f)
  if not list then return failed(err) end
  return list_raw("invoices", list, invoices.json)
end

local function get_invoice(ctx, req, principal)
  local inv, s, h, b = load(ctx, req, principal)
  if not inv then return s, h, b end
  return reply_raw(200, "invoice", invoices.json(inv))
end

local function no_fields(ctx, req, known)
  if req.body == "" then return {} end
  local body, s, h, b = body_of(ctx, req)
  if not body then return nil, s, h, b end
  for k in pairs(body) do
    if not known[k] then return nil, api.invalid(tostring(k), "unknown field") end
  end
  return body
end

-- POST /v1/billing/invoices/{id}/finalize|void|refresh
local function post_action(ctx, req, principal)
  local action = req.params.action
  local known = action == "void" and { reason = true } or {}
  if action ~= "finalize" and action ~= "void" and action ~= "refresh" then
    return api.fail(404, "not_found", "no action " .. action .. " (finalize, void, refresh)")
  end
  local body, s, h, b = no_fields(ctx, req, known)
  if not body then return s, h, b end
  local inv
  inv, s, h, b = load(ctx, req, principal)
  if not inv then return s, h, b end
  local res, err
  if action == "finalize" then
    res, err = invoices.finalize(ctx.store, inv.id)
  elseif action == "refresh" then
    res, err = invoices.refresh(ctx.store, inv.id)
  else
    if type(body.reason) ~= "string" or body.reason == "" or #body.reason > 500 then
      return api.invalid("reason", "a non-empty string of at most 500 bytes expected")
    end
    res, err = invoices.void(ctx.store, inv.id, body.reason)
  end
  if not res then return failed(err) end
  return reply_raw(200, "invoice", invoices.json(res))
end

-- POST /v1/billing/invoices/{id}/credit_notes
local function post_credit_note(ctx, req, principal)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  local inv
  inv, s, h, b = load(ctx, req, principal)
  if not inv then return s, h, b end
  local cn, err = credit_notes.create(ctx.store, inv.id, body)
  if not cn then return failed(err) end
  return reply_raw(201, "credit_note", credit_notes.json(cn))
end

local function get_credit_notes(ctx, req, principal)
  local f, s, h, b = api.query(req, { tenant = P.text, invoice = P.text, limit = P.limit, method = function(v)
    return credit_notes.METHODS[v] and v, "credit or refund expected"
  end })
  if not f then return s, h, b end
  if principal.tenant then
    if f.tenant and f.tenant ~= principal.tenant then return api.reply(200, { credit_notes = json.array({}) }) end
    f.tenant = principal.tenant
  end
  local list, err = credit_notes.list(ctx.store, f)
  if not list then return failed(err) end
  return list_raw("credit_notes", list, credit_notes.json)
end

local function get_credit_note(ctx, req, principal)
  local cn, err = credit_notes.get(ctx.store, req.params.id)
  if cn == nil then return failed(err) end
  if not own(principal, cn) then return api.fail(404, "not_found", "no credit note " .. req.params.id) end
  return reply_raw(200, "credit_note", credit_notes.json(cn))
end

-- install(add, ctx): the routes, with the daemon API's add (permission, scope, audit action).
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  P = api.params
  if ctx.store then
    local ok, err = invoices.ready(ctx.store)
    if not ok then error(err, 0) end
  end
  local T = "tenant"
  add("GET", "/v1/billing/invoices", "read", get_invoices, { scope = T })
  add("GET", "/v1/billing/invoices/{id}", "read", get_invoice, { scope = T })
  add("POST", "/v1/billing/invoices/{id}/credit_notes", "admin", post_credit_note, "billing.credit_note.create")
  add("POST", "/v1/billing/invoices/{id}/{action}", "admin", post_action, "billing.invoice.change")
  add("GET", "/v1/billing/credit_notes", "read", get_credit_notes, { scope = T })
  add("GET", "/v1/billing/credit_notes/{id}", "read", get_credit_note, { scope = T })
end

return M
