-- steward.billing.payments_api: the HTTP side of payments (docs/billing/payments.md,
-- docs/http-api.md "Billing: payments"): Stripe's webhook endpoint (public: Stripe holds no
-- token; its signature is the credential, and a refused one is on the audit log), collecting an
-- invoice now, the payment attempts and an invoice's dunning state (tenant tokens: their own).
local json = require "steward.json"
local log = require "steward.log"
local util = require "steward.runtime.store.util"
local payments = require "steward.billing.payments"
local stripe = require "steward.billing.stripe"
local webhooks = require "steward.billing.webhooks"
local dunning = require "steward.billing.dunning"
local audit_trail = require "steward.runtime.daemon.audit_trail"

local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall

local M = {}

local api -- steward.runtime.daemon.api; set by install
local P

local function failed(err)
  local e = tostring(err)
  if e:match("^not found") then return api.fail(404, "not_found", e) end
  if e:match("^invalid state") then return api.fail(409, "conflict", e) end
  if e:match("is not configured") or e:match("is not available") then return api.fail(503, "not_configured", e) end
  if e:match("^stripe:") then return api.fail(502, "provider_error", e) end
  return api.unavailable(e)
end

-- POST /v1/billing/webhooks/stripe: the raw body is what was signed, so it is verified before
-- anything reads it as JSON.
local function post_stripe(ctx, req)
  local cfg, cerr = payments.settings()
  if not cfg then return api.fail(503, "not_configured", cerr) end
  local secret, serr = stripe.secret(cfg.webhook_secret)
  if not secret then
    log.error("billing: webhook secret unavailable", { error = serr })
    return api.fail(503, "not_configured", "billing.payments.webhook_secret: " .. serr)
  end
  local sig = req.headers["stripe-signature"]
  local ok, reason = webhooks.verify(req.body, sig, secret, cfg.tolerance)
  if not ok then
    audit_trail.record(ctx, { action = "billing.webhook.stripe", actor = "stripe webhook", outcome = "refused",
      detail = reason, target = req.headers["x-forwarded-for"] or req.remote or "stripe" })
    return api.fail(400, "bad_signature", reason)
  end
  local ev = json.decode(req.body)
  if type(ev) ~= "table" or type(ev.id) ~= "string" or type(ev.type) ~= "string" then
    return api.fail(400, "invalid_json", "a Stripe event object {id, type, data} expected")
  end
  local r, err = webhooks.handle(ctx.store, ev)
  if not r then
    log.error("billing: webhook not applied; Stripe delivers it again", { event = ev.id, type = ev.type, error = tostring(err) })
    return api.unavailable(tostring(err))
  end
  if not r.duplicate then
    audit_trail.record(ctx, { action = "billing.webhook.stripe", actor = "stripe webhook", outcome = "ok",
      target = ev.id, detail = ev.type .. ": " .. tostring(r.outcome) })
  end
  return api.reply(200, { received = true, id = ev.id, type = ev.type, duplicate = r.duplicate, outcome = r.outcome,
    invoice = r.invoice or json.null })
end

local function body_of(ctx, req)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "null")
  if body == nil then return nil, api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if type(body) ~= "table" or json.is_array(body) then return nil, api.fail(400, "invalid_json", "expected an object") end
  return body
end

local function result_view(r)
  local o = {}
  for _, k in ipairs({ "status", "invoice", "attempt", "payment_intent", "code", "decline_code", "message" }) do
    o[k] = r[k] == nil and json.null or r[k]
  end
  return o
end

-- POST /v1/billing/payments {"invoice": "..."}: collect a finalized invoice now.
local function post_payment(ctx, req)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  for k in pairs(body) do
    if k ~= "invoice" then return api.invalid(tostring(k), "unknown field (invoice)") end
  end
  if type(body.invoice) ~= "string" or body.invoice == "" then return api.invalid("invoice", "an invoice id expected") end
  local r, err = payments.collect(ctx.store, body.invoice)
  if not r then return failed(err) end
  req.audit = { target = body.invoice, detail = r.status }
  return api.reply(200, { payment = result_view(r) })
end

-- POST /v1/billing/customers/{tenant}: the tenant's customer at the provider (created once), for
-- a checkout that attaches its card. A tenant's token asks for its own.
local function post_customer(ctx, req, principal)
  local tenant = req.params.tenant
  if principal.tenant and principal.tenant ~= tenant then return api.fail(404, "not_found", "no tenant " .. tenant) end
  if not tenant:match("^[a-z0-9][a-z0-9_-]*$") then return api.invalid("tenant", "a tenant id expected") end
  local id, err = payments.customer(ctx.store, tenant)
  if not id then return failed(err) end
  return api.reply(200, { tenant = tenant, provider = payments.PROVIDER, customer = id })
end

local function get_payments(ctx, req, principal)
  local f, s, h, b = api.query(req, { tenant = P.text, invoice = P.text, status = P.text, limit = P.limit })
  if not f then return s, h, b end
  if principal.tenant then f.tenant = principal.tenant end
  local list, err = payments.list(ctx.store, f)
  if not list then return failed(err) end
  for i, a in ipairs(list) do list[i] = payments.view(a) end
  return api.reply(200, { payments = json.array(list) })
end

local function get_dunning(ctx, req, principal)
  local d, err = dunning.state(ctx.store, req.params.invoice)
  if d == nil then return failed(err) end
  if not d or (principal.tenant and principal.tenant ~= d.tenant) then
    return api.fail(404, "not_found", "no dunning for invoice " .. req.params.invoice)
  end
  d.updated = util.format_rfc3339(d.updated)
  d.next_retry = d.next_retry and util.format_rfc3339(d.next_retry) or json.null
  return api.reply(200, { dunning = d })
end

-- install(add, ctx): the routes, with the daemon API's add (permission, scope, audit action).
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  P = api.params
  if ctx.store then
    local ok, err = payments.ready(ctx.store)
    if not ok then error(err, 0) end
  end
  local T = "tenant"
  add("POST", "/v1/billing/webhooks/stripe", nil, post_stripe, { raw_body = true })
  add("POST", "/v1/billing/payments", "operate", post_payment, "billing.payment.collect")
  add("GET", "/v1/billing/payments", "read", get_payments, { scope = T })
  add("POST", "/v1/billing/customers/{tenant}", "operate", post_customer, { scope = T, action = "billing.customer.create" })
  add("GET", "/v1/billing/dunning/{invoice}", "read", get_dunning, { scope = T })
end

return M
