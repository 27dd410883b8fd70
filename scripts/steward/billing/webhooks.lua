-- steward.billing.webhooks: Stripe's webhooks (docs/billing/payments.md, "Webhooks"). verify()
-- is Stripe's signature scheme: the header `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=...]`,
-- each v1 an HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint's secret; one matching v1
-- (compared in constant time) within `tolerance` seconds of now is required, so a captured
-- request cannot be replayed later. handle() applies a verified event once: an event id seen
-- before is a duplicate, answered but not applied again.
local json = require "steward.json"
local crypto = require "steward.crypto"
local time = require "steward.time"
local domain = require "steward.runtime.store.domain"
local payments = require "steward.billing.payments"
require "steward.billing.payments_schema"

local type, ipairs, tostring, tonumber, error = type, ipairs, tostring, tonumber, error
local format, abs = string.format, math.abs

local M = {}

M.MAX_SIGNATURES = 16 -- v1 values read from one header (Stripe sends one per active secret)

-- verify(payload, header, secret, tolerance, now) -> true | nil, reason
function M.verify(payload, header, secret, tolerance, now)
  if type(payload) ~= "string" then error("webhooks.verify: payload: string expected", 2) end
  if type(secret) ~= "string" or secret == "" then error("webhooks.verify: secret: non-empty string expected", 2) end
  if type(tolerance) ~= "number" or tolerance <= 0 then error("webhooks.verify: tolerance: seconds > 0 expected", 2) end
  if type(header) ~= "string" or header == "" then return nil, "no Stripe-Signature header" end
  if #header > 4096 then return nil, "Stripe-Signature: too long" end
  local t, sigs = nil, {}
  for item in header:gmatch("[^,]+") do
    local k, v = item:match("^%s*([%w_]+)=(.-)%s*$")
    if k == "t" then
      if t ~= nil or not v:match("^%d+$") or #v > 12 then return nil, "Stripe-Signature: t: one Unix time expected" end
      t = v
    elseif k == "v1" and #sigs < M.MAX_SIGNATURES then
      sigs[#sigs + 1] = v
    end
  end
  if not t then return nil, "Stripe-Signature: no timestamp (t=)" end
  if #sigs == 0 then return nil, "Stripe-Signature: no v1 signature" end
  local expected = crypto.hex(crypto.hmac("sha256", secret, t .. "." .. payload))
  local match = false
  for _, s in ipairs(sigs) do
    -- every candidate is compared, a match or not, so the time taken says nothing
    if #s == #expected and crypto.equals(s:lower(), expected) then match = true end
  end
  if not match then return nil, "Stripe-Signature: no v1 signature matches the payload" end
  now = now or time.now()
  if abs(now - tonumber(t)) > tolerance then
    return nil, format("Stripe-Signature: timestamp %s is %d s away from now (tolerance %d s)", t, now - tonumber(t), tolerance)
  end
  return true
end

-- sign(payload, secret, t) -> the Stripe-Signature header Stripe would send (for tests and tools)
function M.sign(payload, secret, t)
  t = format("%d", t or time.now())
  return "t=" .. t .. ",v1=" .. crypto.hex(crypto.hmac("sha256", secret, t .. "." .. payload))
end

local APPLY = { ["payment_intent.succeeded"] = true, ["payment_intent.payment_failed"] = true,
                ["payment_intent.processing"] = true, ["payment_intent.requires_action"] = true }

-- handle(st, event) -> {duplicate, outcome, invoice, tenant} | nil, err: a verified event.
-- The event is recorded after it is applied (an applied outcome is idempotent), so a crash
-- in between makes Stripe's next delivery apply it again rather than lose it.
function M.handle(st, ev)
  if type(ev) ~= "table" or type(ev.id) ~= "string" or type(ev.type) ~= "string" then
    return nil, "event: a Stripe event object {id, type, data} expected"
  end
  local ok, err = payments.ready(st)
  if not ok then return nil, err end
  local seen
  seen, err = domain.one(st, function(r) return r end,
    "SELECT outcome, tenant, invoice FROM billing_webhook_events WHERE id = $1", ev.id)
  if seen == nil then return nil, err end
  if seen then return { duplicate = true, outcome = seen.outcome, invoice = seen.invoice, tenant = seen.tenant } end
  local obj = type(ev.data) == "table" and type(ev.data.object) == "table" and ev.data.object or nil
  local md = obj and type(obj.metadata) == "table" and obj.metadata or {}
  local out = { duplicate = false, outcome = "ignored", invoice = md.invoice, tenant = md.tenant }
  if APPLY[ev.type] and obj then
    local r, serr = payments.settle(st, obj, "webhook")
    if not r then
      -- not one of ours (another integration's intent): recorded, answered, nothing to do
      if tostring(serr):match("not one of steward's") or tostring(serr):match("no attempt") then
        out.outcome = "unknown: " .. tostring(serr)
      elseif tostring(serr):match("^invoices%.pay: invalid") or tostring(serr):match("^invoices%.pay: amount") then
        -- money for an invoice that cannot take it (voided meanwhile): delivering again would
        -- not change that; it is recorded and logged for a person to refund
        require("steward.log").error("billing: a payment could not be applied to its invoice; refund it",
          { event = ev.id, invoice = md.invoice, error = tostring(serr) })
        out.outcome = "unapplied: " .. tostring(serr)
      else
        return nil, serr
      end
    else
      out.outcome, out.tenant = r.status, r.tenant
    end
  end
  local res
  res, err = st.db:exec("INSERT INTO billing_webhook_events (id, provider, type, tenant, invoice, outcome, received) " ..
    "VALUES ($1, 'stripe', $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING", ev.id, ev.type,
    type(out.tenant) == "string" and out.tenant or json.null, type(out.invoice) == "string" and out.invoice or json.null,
    out.outcome, time.now())
  if not res then return nil, err end
  return out
end

domain.default_store(M, { "handle" })

return M
