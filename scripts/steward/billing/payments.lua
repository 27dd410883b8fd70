-- steward.billing.payments: collecting a finalized invoice through the payment provider (Stripe's
-- API, steward.billing.stripe; docs/billing/payments.md). collect(invoice) charges the tenant's
-- customer (created at the provider on first use, its id kept) with a PaymentIntent for the
-- invoice's total in minor units. Each attempt is a row written before its request, carrying
-- the request's Idempotency-Key ("steward-<invoice>-<attempt>"): after a crash the same key
-- goes out again and the provider answers the first result, so a retry never charges twice.
-- An intent's outcome, whether it comes back in the answer or in a webhook (both, usually),
-- is applied once: the attempt row moves once, and the event that announces it
-- (billing.payment.succeeded|failed) has a deterministic id.
local json = require "steward.json"
local log = require "steward.log"
local time = require "steward.time"
local decimal = require "steward.decimal"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local stripe = require "steward.billing.stripe"
require "steward.billing.payments_schema"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require, unpack =
  type, pairs, ipairs, tostring, tonumber, error, pcall, require, unpack
local format = string.format

local M = {}

M.PROVIDER = "stripe"
local SOURCE = "steward.billing.payments"
-- amount is read as text: PostgreSQL's driver hands NUMERIC over as a Lua number, which would
-- not be exact
local COLS = "invoice, attempt, tenant, provider, idempotency_key, CAST(amount AS TEXT) AS amount, amount_minor, " ..
  "currency, request, payment_intent, status, code, decline_code, message, created, updated"

local ready = domain.migrator("billing_payments")
M.ready = ready

-------------------------------------------------------------------------------- config
local current -- billing.payments with its defaults (configure)

-- check_config(v, where) -> v with defaults | nil, "where.field: reason" (steward.billing.config
-- delegates billing.payments here).
M.check_config = stripe.check_config

-- configure(billing): the `billing` config table (its `payments` part) for a script or spec
-- without the daemon's steward.billing.config; nil forgets it.
function M.configure(billing)
  if billing == nil or billing.payments == nil then current = nil; return true end
  local cfg, err = stripe.check_config(billing.payments, "billing.payments")
  if not cfg then error(err, 2) end
  current = cfg
  return true
end

-- settings() -> billing.payments in force (configure's, else steward.billing.config's: the
-- daemon's, reloaded with it) | nil, err
function M.settings()
  if current then return current end
  local ok, bc = pcall(require, "steward.billing.config")
  local p = ok and type(bc) == "table" and type(bc.current) == "table" and bc.current.payments or nil
  if type(p) == "table" then return stripe.check_config(p, "billing.payments") end
  return nil, "billing.payments is not configured (docs/billing/payments.md)"
end

-------------------------------------------------------------------------------- invoices
-- The invoices module (steward.billing.invoices: get, pay); a spec may hand in its own.
local invoices_mod
function M.use_invoices(mod) invoices_mod = mod end
local function invoices()
  if invoices_mod then return invoices_mod end
  local ok, mod = pcall(require, "steward.billing.invoices")
  if not ok then return nil, "steward.billing.invoices is not available: " .. tostring(mod) end
  return mod
end
M.invoices = invoices

-- minor(total, currency) -> the amount in the currency's minor unit (a decimal integer) |
-- nil, err. Never rounds: an invoice total has at most the currency's scale already.
function M.minor(total, currency)
  local scale = type(currency) == "string" and decimal.scale(currency) or nil
  if not scale then return nil, "currency: unknown currency " .. tostring(currency) end
  local ok, d = pcall(decimal.new, total)
  if not ok then return nil, "total: " .. tostring(d) end
  local m = d * decimal.new("1" .. string.rep("0", scale))
  if not m:is_integer() then
    return nil, format("total: %s has more than %d fraction digits for %s", tostring(d), scale, currency)
  end
  return m, d
end

-------------------------------------------------------------------------------- rows
local function row(r)
  local a = domain.row(r, {})
  a.amount = decimal.new(a.amount)
  return a
end

local function attempt_row(st, invoice, attempt)
  return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_payment_attempts WHERE invoice = $1 AND attempt = $2",
    invoice, attempt)
end

-- attempts(st, invoice) -> the invoice's attempts, first first | nil, err
function M.attempts(st, invoice)
  if type(invoice) ~= "string" then error("payments.attempts: invoice: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_payment_attempts WHERE invoice = $1 ORDER BY attempt", invoice)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- list(st, {tenant=, invoice=, status=, limit=}) -> attempts, newest first | nil, err
function M.list(st, f)
  f = f or {}
  if type(f) ~= "table" then error("payments.list: filter: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  for _, k in ipairs({ "tenant", "invoice", "status" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" then error("payments.list: " .. k .. ": string expected", 2) end
      w:add(k .. " = ?", f[k])
    end
  end
  local limit = require("steward.runtime.store.util").limit_arg(f.limit, "payments.list: limit", 100, 1000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_payment_attempts" .. w:clause() ..
    " ORDER BY created DESC, invoice, attempt DESC LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- view(attempt) -> the attempt as JSON shows it (amount a string, times RFC 3339)
function M.view(a)
  local util = require "steward.runtime.store.util"
  local o = {}
  for k, v in pairs(a) do o[k] = v end
  o.amount = decimal.string(a.amount)
  o.request = nil
  o.created, o.updated = util.format_rfc3339(a.created), util.format_rfc3339(a.updated)
  return o
end

-------------------------------------------------------------------------------- customers
-- customer(st, cfg, tenant, inv) -> the provider's customer id for the tenant | nil, err.
-- Created once: the Idempotency-Key is the tenant's, so a crash between the provider's answer
-- and our insert gets the same customer back.
local function customer(st, cfg, tenant, inv)
  local rows, err = st.db:query("SELECT customer FROM billing_payment_customers WHERE tenant = $1 AND provider = $2",
    tenant, M.PROVIDER)
  if not rows then return nil, err end
  if rows[1] then return rows[1].customer end
  local c = type(inv.customer) == "table" and inv.customer or {}
  local params = { metadata = { tenant = tenant } }
  if type(c.email) == "string" then params.email = c.email end
  if type(c.name) == "string" then params.name = c.name end
  local obj, cerr = stripe.create_customer(cfg, params, "steward-customer-" .. tenant)
  if not obj then return nil, cerr end
  if type(obj.id) ~= "string" then return nil, "stripe: a customer without an id" end
  local res
  res, err = st.db:exec("INSERT INTO billing_payment_customers (tenant, provider, customer, created) " ..
    "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, provider) DO NOTHING", tenant, M.PROVIDER, obj.id, time.now())
  if not res then return nil, err end
  return obj.id
end

-- customer_of(st, tenant) -> the kept customer id | false | nil, err
function M.customer_of(st, tenant)
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, function(r) return r.customer end,
    "SELECT customer FROM billing_payment_customers WHERE tenant = $1 AND provider = $2", tenant, M.PROVIDER)
end

-- customer(st, tenant) -> the tenant's customer id at the provider, created now if it has
-- none | nil, err: what a checkout needs to attach the tenant's card to.
function M.customer(st, tenant)
  if type(tenant) ~= "string" or tenant == "" then error("payments.customer: tenant: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local cfg
  cfg, err = M.settings()
  if not cfg then return nil, err end
  return customer(st, cfg, tenant, {})
end

-- The card to charge, off session: the tenant record's config.billing.payment_method, else
-- the customer's default at the provider (invoice_settings.default_payment_method: what the
-- tenant's checkout set), else the config's fallback. nil, err when the provider cannot say.
local function payment_method(cfg, tenant, cus)
  local ok, tenants = pcall(require, "steward.tenants")
  if ok and type(tenants) == "table" and tenants.get then
    local gok, rec = pcall(tenants.get, tenant)
    local b = gok and type(rec) == "table" and type(rec.config) == "table" and rec.config.billing
    if type(b) == "table" and type(b.payment_method) == "string" then return b.payment_method end
  end
  local c, err = stripe.customer(cfg, cus)
  if not c then return nil, err end
  local is = type(c.invoice_settings) == "table" and c.invoice_settings or {}
  if type(is.default_payment_method) == "string" then return is.default_payment_method end
  return cfg.payment_method or false
end

-------------------------------------------------------------------------------- outcomes
local STATUS = { succeeded = "succeeded", processing = "processing", requires_action = "requires_action",
                 requires_payment_method = "failed", canceled = "failed" }

local function announce(st, stmts, ev, now)
  ev.time = now
  local _, fresh_or_err = domain.commit(st, stmts, ev, now)
  if _ == nil then return nil, fresh_or_err end
  events.published(st, fresh_or_err)
  return true, #fresh_or_err > 0
end

-- settle(st, intent [, how]) -> {status, invoice, attempt, fresh} | nil, err: applies a
-- PaymentIntent's state to its attempt (found by the intent's metadata), once. A success pays
-- the invoice (steward.billing.invoices.pay) and ends its dunning; a failure is announced
-- (billing.payment.failed), which the dunning policy answers.
function M.settle(st, pi, how)
  if type(pi) ~= "table" or type(pi.id) ~= "string" then return nil, "payment_intent: object expected" end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local md = type(pi.metadata) == "table" and pi.metadata or {}
  local invoice, attempt = md.invoice, tonumber(md.attempt)
  if type(invoice) ~= "string" or not attempt then return nil, "payment_intent " .. pi.id .. ": not one of steward's (no metadata.invoice/attempt)" end
  local a
  a, err = attempt_row(st, invoice, attempt)
  if a == nil then return nil, err end
  if not a then return nil, format("payment_intent %s: no attempt %d of invoice %s", pi.id, attempt, invoice) end
  if tonumber(pi.amount) ~= a.amount_minor or tostring(pi.currency) ~= a.currency:lower() then
    return nil, format("payment_intent %s: %s %s is not the attempt's %d %s", pi.id, tostring(pi.amount),
      tostring(pi.currency), a.amount_minor, a.currency:lower())
  end
  local status = STATUS[pi.status] or "pending"
  local now = time.now()
  local lpe = type(pi.last_payment_error) == "table" and pi.last_payment_error or {}
  local result = { status = status, invoice = invoice, attempt = attempt, payment_intent = pi.id, tenant = a.tenant,
                   code = lpe.code, decline_code = lpe.decline_code, message = lpe.message }
  if a.status == "succeeded" then
    -- money received is final: a late word of an earlier failure of the same intent changes nothing
    result.status, result.code, result.decline_code, result.message = "succeeded", nil, nil, nil
    return result
  end
  -- the row moves from pending (or processing) on; a failure is final unless the same intent
  -- succeeds later (the customer confirmed it again with another card)
  local from = status == "succeeded" and "('pending', 'processing', 'requires_action', 'failed')"
    or "('pending', 'processing', 'requires_action')"
  local stmts = { { "UPDATE billing_payment_attempts SET status = $1, payment_intent = $2, code = $3, decline_code = $4, " ..
    "message = $5, updated = $6 WHERE invoice = $7 AND attempt = $8 AND status IN " .. from,
    status, pi.id, json.null, json.null, json.null, now, invoice, attempt } }
  if status == "failed" then
    stmts[1][4], stmts[1][5], stmts[1][6] = lpe.code or "declined", lpe.decline_code or json.null,
      lpe.message or json.null
  end
  local data = { invoice = invoice, attempt = attempt, payment_intent = pi.id, amount = decimal.string(a.amount),
                 currency = a.currency, provider = a.provider, via = how or "answer" }
  if status == "succeeded" then
    -- pay first: a crash after it leaves the row pending, and the next settle pays again
    -- (invoices.pay of a paid invoice is a no-op) and then records
    local inv_mod, ierr = invoices()
    if not inv_mod then return nil, ierr end
    local inv = inv_mod.get(invoice)
    if inv and inv.state ~= "paid" then
      local paid, perr = inv_mod.pay(invoice, { id = pi.id, provider = a.provider, amount = a.amount, at = now })
      if not paid then
        -- the answer and the webhook may pay at the same moment: the loser finds it paid by
        -- this very intent, which is all it wanted
        local again = inv_mod.get(invoice)
        if not (again and again.state == "paid" and type(again.payment) == "table" and again.payment.id == pi.id) then
          return nil, "invoices.pay: " .. tostring(perr)
        end
      end
    end
    local okc, fresh = announce(st, stmts, { id = "billing.payment.succeeded:" .. invoice, type = "billing.payment.succeeded",
      tenant = a.tenant, source = SOURCE, data = data }, now)
    if not okc then return nil, fresh end
    result.fresh = fresh
    local dunning = require "steward.billing.dunning"
    local dok, derr = dunning.paid(st, invoice, a.tenant)
    if not dok then log.error("billing: dunning could not end", { invoice = invoice, error = tostring(derr) }) end
  elseif status == "failed" then
    data.code, data.decline_code, data.message = result.code, result.decline_code, result.message
    local okc, fresh = announce(st, stmts, { id = format("billing.payment.failed:%s:%d", invoice, attempt),
      type = "billing.payment.failed", tenant = a.tenant, source = SOURCE, data = data }, now)
    if not okc then return nil, fresh end
    result.fresh = fresh
  else
    local res, uerr = st.db:exec(unpack(stmts[1]))
    if not res then return nil, uerr end
  end
  return result
end

-------------------------------------------------------------------------------- collect
-- collect(st, invoice_id [, {attempt = n}]) -> result | nil, err. result = {status =
-- "succeeded"|"failed"|"processing"|"requires_action"|"paid" (nothing to do), invoice,
-- attempt, payment_intent, code, decline_code, message}. Without opts.attempt: the attempt
-- left pending by a crash is sent again (same key), else a new one. A transport failure
-- leaves the attempt pending and answers nil, err: call again.
function M.collect(st, invoice_id, opts)
  if type(invoice_id) ~= "string" or invoice_id == "" then error("payments.collect: invoice: string expected", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("payments.collect: opts: table expected", 2) end
  if opts.attempt ~= nil and (type(opts.attempt) ~= "number" or opts.attempt < 1 or opts.attempt % 1 ~= 0) then
    error("payments.collect: opts.attempt: integer >= 1 expected", 2)
  end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local inv_mod
  inv_mod, err = invoices()
  if not inv_mod then return nil, err end
  local inv
  inv, err = inv_mod.get(invoice_id)
  if not inv then return nil, err or ("not found: invoice " .. invoice_id) end
  if inv.state == "paid" then return { status = "paid", invoice = invoice_id } end
  if inv.state ~= "finalized" then
    return nil, format("invalid state: invoice %s is %s (only a finalized invoice is collected)", invoice_id, tostring(inv.state))
  end
  local cfg
  cfg, err = M.settings()
  if not cfg then return nil, err end
  local minor, total = M.minor(inv.total, inv.currency)
  if not minor then return nil, total end
  local now = time.now()
  if minor:is_zero() then
    local paid, perr = inv_mod.pay(invoice_id, { id = "none-" .. invoice_id, provider = "none", amount = total, at = now })
    if not paid then return nil, "invoices.pay: " .. tostring(perr) end
    return { status = "paid", invoice = invoice_id }
  end
  -- the attempt: a pending one (a crash left it) is resent as it was; else the next number
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_payment_attempts WHERE invoice = $1 ORDER BY attempt DESC", invoice_id)
  if not rows then return nil, err end
  local last = rows[1] and row(rows[1])
  local a
  if last and (last.status == "succeeded") then return { status = "paid", invoice = invoice_id, attempt = last.attempt } end
  if opts.attempt and last and last.attempt >= opts.attempt then
    -- a retry that ran already (a timer firing again after a crash): its outcome stands
    local prior = attempt_row(st, invoice_id, opts.attempt)
    if prior and prior.status ~= "pending" then
      return { status = prior.status, invoice = invoice_id, attempt = prior.attempt, payment_intent = prior.payment_intent,
               code = prior.code, decline_code = prior.decline_code, message = prior.message }
    end
    a = prior or nil
  elseif last and last.status == "pending" then
    a = last
  end
  if not a then
    local n = opts.attempt or ((last and last.attempt or 0) + 1)
    a = { invoice = invoice_id, attempt = n, tenant = inv.tenant, provider = M.PROVIDER,
          idempotency_key = format("steward-%s-%d", invoice_id, n), amount = total,
          amount_minor = tonumber(minor:tostring()), currency = inv.currency, status = "pending", created = now }
    local cus
    cus, err = customer(st, cfg, inv.tenant, inv)
    if not cus then return nil, err end
    local pm
    pm, err = payment_method(cfg, inv.tenant, cus)
    if pm == nil then return nil, err end
    local params = { amount = a.amount_minor, currency = a.currency:lower(), customer = cus, confirm = true,
      off_session = true, description = "Invoice " .. tostring(inv.number or invoice_id),
      metadata = { invoice = invoice_id, attempt = a.attempt, tenant = inv.tenant } }
    if pm then params.payment_method = pm end
    a.request = json.encode(params)
    local res
    res, err = st.db:exec("INSERT INTO billing_payment_attempts (invoice, attempt, tenant, provider, idempotency_key, " ..
      "amount, amount_minor, currency, request, status, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, " ..
      "'pending', $10, $10) ON CONFLICT (invoice, attempt) DO NOTHING", a.invoice, a.attempt, a.tenant, a.provider,
      a.idempotency_key, decimal.string(a.amount), a.amount_minor, a.currency, a.request, now)
    if not res then return nil, err end
    if res.changes == 0 then a = attempt_row(st, invoice_id, a.attempt) or a end
  end
  -- a resent attempt sends what it sent the first time (its key is bound to those parameters),
  -- whatever changed since (the tenant's card, say)
  local params = json.decode(a.request)
  if type(params) ~= "table" then return nil, "attempt " .. a.attempt .. " of " .. invoice_id .. ": its request is unreadable" end
  local pi, perr, info = stripe.create_payment_intent(cfg, params, a.idempotency_key)
  if not pi then
    info = info or {}
    if info.kind == "declined" and info.object then pi = info.object
    elseif info.kind == "declined" or info.kind == "refused" then
      -- no intent to settle (a bad payment method, say): the attempt failed all the same
      pi = { id = "pi_none_" .. a.idempotency_key, amount = a.amount_minor, currency = a.currency:lower(),
             status = "requires_payment_method", metadata = { invoice = invoice_id, attempt = tostring(a.attempt) },
             last_payment_error = { code = info.code or info.type or "refused", decline_code = info.decline_code,
                                    message = perr } }
    else
      log.warn("billing: payment attempt unanswered; it is sent again with the same key", { invoice = invoice_id,
        attempt = a.attempt, error = perr })
      return nil, perr
    end
  end
  return M.settle(st, pi, "answer")
end

domain.default_store(M, { "collect", "settle", "attempts", "list", "customer_of", "customer" })

return M
