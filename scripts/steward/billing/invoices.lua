-- steward.billing.invoices: invoices built from a subscription's period (draft), finalized
-- with a gap-free number, then paid or voided (docs/billing/invoices.md). An invoice's id is
-- made of its subscription and period, so building it again is the same invoice: a draft is
-- rebuilt from the usage recorded so far (late usage inside the grace window lands in it), a
-- finalized one never changes its lines. Every change commits with the event announcing it
-- (billing.invoice.created|finalized|paid|voided) and is conditional on the version it read.
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local record = require "steward.billing.invoice_record"
local build = require "steward.billing.invoice_build"
local inputs = require "steward.billing.invoice_inputs"
local numbering = require "steward.billing.numbering"
require "steward.billing.invoices_schema"

local type, pairs, ipairs, tostring, error, pcall, require, unpack, floor, format =
  type, pairs, ipairs, tostring, error, pcall, require, unpack, math.floor, string.format

local M = {}

M.STATES = { draft = true, finalized = true, paid = true, voided = true }
M.DEFAULTS = { series = "INV", credit_note_series = "CN", number_width = 6, auto_finalize = true }
local SOURCE = "steward.billing.invoices"
local COLS = "id, tenant, subscription, period_from, period_to, state, series, seq, number, currency, body, created, " ..
  "updated, version"

local ready = domain.migrator("billing_invoices")
M.ready = ready

-- ---- configuration: billing.invoices (checked by steward.billing.config) ----

local CONFIG_KEYS = { series = true, credit_note_series = true, number_width = true, auto_finalize = true }

-- check_config(v, path) -> v with defaults | nil, "<path>.<field>: reason"
function M.check_config(v, path)
  path = path or "billing.invoices"
  if type(v) ~= "table" then return nil, path .. ": a table {series, credit_note_series, number_width, auto_finalize} expected" end
  for k in pairs(v) do
    if not CONFIG_KEYS[k] then
      return nil, path .. "." .. tostring(k) .. ": unknown field (series, credit_note_series, number_width, auto_finalize)"
    end
  end
  local out = {}
  for k, d in pairs(M.DEFAULTS) do out[k] = v[k] == nil and d or v[k] end
  for _, k in ipairs({ "series", "credit_note_series" }) do
    local ok, err = numbering.check_series(out[k], path .. "." .. k)
    if not ok then return nil, err end
  end
  if out.series == out.credit_note_series then return nil, path .. ".credit_note_series: must differ from series" end
  local w = out.number_width
  if type(w) ~= "number" or w ~= floor(w) or w < 1 or w > 12 then
    return nil, path .. ".number_width: an integer from 1 to 12 expected"
  end
  if type(out.auto_finalize) ~= "boolean" then return nil, path .. ".auto_finalize: true or false expected" end
  return out
end

-- The billing configuration in force (steward.billing.config, h4's) with this part's defaults.
function M.config()
  local ok, bc = pcall(require, "steward.billing.config")
  local cur = ok and type(bc) == "table" and bc.current or {}
  local inv = {}
  for k, d in pairs(M.DEFAULTS) do inv[k] = d end
  for k, v in pairs(cur.invoices or {}) do inv[k] = v end
  return { currency = cur.currency or "USD", net_payment_days = cur.net_payment_days or 30,
           grace_seconds = cur.grace_seconds or 3 * 86400, timezone = cur.timezone or "UTC",
           invoices = inv, taxes = cur.taxes or {} }
end

-- ---- reading ----

local function row(r)
  local inv, err = record.load(r.body, { state = r.state, series = r.series, seq = r.seq, number = r.number,
    version = r.version })
  if not inv then error(err .. ": " .. tostring(r.id), 0) end
  inv.created, inv.updated = r.created, r.updated
  return inv
end

-- get(st, id) -> invoice | false | nil, err
function M.get(st, id)
  if type(id) ~= "string" then error("invoices.get: id: string expected, got " .. type(id), 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_invoices WHERE id = $1", id)
end

-- list(st, {tenant=, state=, subscription=, limit=}) -> invoices, newest period first | nil, err
function M.list(st, f)
  f = f or {}
  if type(f) ~= "table" then error("invoices.list: filter: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  for _, k in ipairs({ "tenant", "state", "subscription" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" then error("invoices.list: " .. k .. ": string expected", 2) end
      w:add(k .. " = ?", f[k])
    end
  end
  if f.state ~= nil and not M.STATES[f.state] then error("invoices.list: state: draft, finalized, paid or voided expected", 2) end
  local limit = util.limit_arg(f.limit, "invoices.list: limit", 100, 1000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_invoices" .. w:clause() ..
    " ORDER BY period_from DESC, id DESC LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

M.json = record.json
M.view = record.view

-- ---- building ----

local function period_arg(p, what)
  if type(p) ~= "table" or type(p.from) ~= "number" or type(p.to) ~= "number" or p.to <= p.from then
    error(what .. ": period: {from = seconds, to = seconds} with from < to expected", 3)
  end
  return { from = p.from, to = p.to }
end

-- id_of(subscription_id, period, final) -> the invoice's id: one per subscription and period
-- (and one final invoice of a terminated in-advance subscription, whose fee was billed before)
function M.id_of(subscription_id, period, final)
  return format("inv_%s_%d%s", subscription_id, floor(period.from), final and "_final" or "")
end

local function billing(name) return require("steward.billing." .. name) end

local function must(v, err, what)
  if v == nil then return nil, err end
  if v == false then return nil, "not found: " .. (what or "no such record") end
  return v
end

local function event(inv, kind, now, extra)
  -- a finalized invoice's number is taken in the transaction that stores this event: readers
  -- of billing.invoice.finalized get it with invoices.get(data.invoice)
  local d = { invoice = inv.id, subscription = inv.subscription, number = inv.number, state = inv.state,
              currency = inv.currency, total = inv.total and decimal.string(inv.total) or nil,
              period = { from = inv.period.from, to = inv.period.to } }
  for k, v in pairs(extra or {}) do d[k] = v end
  return { id = format("invoice:%s:%s", inv.id, kind), type = "billing.invoice." .. kind, tenant = inv.tenant,
           time = now, source = SOURCE, data = d }
end

-- The fields of an invoice that go into its body (the columns carry state, number and version).
local BODY = { "id", "tenant", "subscription", "currency", "period", "series", "issued", "due", "lines", "subtotal",
               "discounts", "discount_total", "taxes", "tax_total", "credits", "credit_total", "total", "customer",
               "finalized", "paid", "voided", "void_reason", "payment", "final", "plan", "plan_version" }
local function body_of(inv)
  local b = {}
  for _, k in ipairs(BODY) do b[k] = inv[k] end
  return record.stored(b)
end

-- build(st, subscription_id, period [, opts]) -> invoice, changed | nil, err. opts = {final =
-- true (the final invoice of a terminated in-advance subscription), now =}. A finalized, paid
-- or voided invoice is returned as it is (changed false); a draft is rebuilt (changed when its
-- lines or totals moved).
function M.build(st, subscription_id, period, opts)
  if type(subscription_id) ~= "string" then error("invoices.build: subscription_id: string expected", 2) end
  period = period_arg(period, "invoices.build")
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = util.now(opts.now)
  local id = M.id_of(subscription_id, period, opts.final)
  local old
  old, err = M.get(st, id)
  if old == nil then return nil, err end
  if old and old.state ~= "draft" then return old, false end
  local sub, serr = billing("subscriptions").get(st, subscription_id)
  sub, err = must(sub, serr, "subscription " .. subscription_id)
  if not sub then return nil, err or ("not found: subscription " .. subscription_id) end
  local plan
  plan, err = billing("plans").get(st, sub.plan, sub.plan_version)
  if not plan then return nil, err or ("not found: plan " .. tostring(sub.plan) .. " version " .. tostring(sub.plan_version)) end
  local cfg = M.config()
  local okb, inp, cust = pcall(inputs.of, st, sub, plan, period, cfg, opts.final)
  if not okb then return nil, tostring(inp) end
  local okc, money = pcall(build.compute, inp)
  if not okc then return nil, "invoice " .. id .. ": " .. tostring(money) end
  local inv = { id = id, tenant = sub.tenant, subscription = sub.id, currency = inp.currency, period = period,
                series = numbering.series_name(cfg.invoices.series, sub.tenant), customer = cust, state = "draft",
                plan = plan.code, plan_version = plan.version, final = opts.final or nil }
  for k, v in pairs(money) do inv[k] = v end
  local body = body_of(inv)
  if not old then
    local res, fresh = domain.commit(st, { { "INSERT INTO billing_invoices (id, tenant, subscription, period_from, " ..
      "period_to, state, series, currency, total, body, created, updated, version) VALUES " ..
      "($1,$2,$3,$4,$5,'draft',$6,$7,$8,$9,$10,$10,1) ON CONFLICT (id) DO NOTHING",
      id, inv.tenant, inv.subscription, period.from, period.to, inv.series, inv.currency,
      decimal.string(inv.total), body, now } }, event(inv, "created", now), now)
    if not res then return nil, fresh end
    if res[1].changes ~= 1 then return M.build(st, subscription_id, period, opts) end -- built meanwhile
    events.published(st, fresh)
    inv.version, inv.created, inv.updated = 1, now, now
    return inv, true
  end
  if body == body_of(old) then return old, false end
  local res
  res, err = st.db:exec("UPDATE billing_invoices SET body = $1, total = $2, series = $3, updated = $4, " ..
    "version = version + 1 WHERE id = $5 AND state = 'draft' AND version = $6",
    body, decimal.string(inv.total), inv.series, now, id, old.version)
  if not res then return nil, err end
  if res.changes ~= 1 then return nil, "conflict: invoice " .. id .. " changed meanwhile" end
  inv.version, inv.created, inv.updated = old.version + 1, old.created, now
  return inv, true
end

-- refresh(st, id [, now]) -> invoice, changed | nil, err: a draft rebuilt from the usage
-- recorded so far.
function M.refresh(st, id, now)
  local inv, err = must(M.get(st, id))
  if not inv then return nil, err or ("not found: invoice " .. id) end
  if inv.state ~= "draft" then return nil, format("invalid: invoice %s is %s: only a draft is rebuilt", id, inv.state) end
  return M.build(st, inv.subscription, inv.period, { final = inv.final, now = now })
end

-- ---- finalizing ----

-- credit_sources(st, inv) -> {{kind = "credit_note", ref, amount, cn}}: the tenant's credit
-- notes with credit left in the invoice's currency, oldest first.
local function credit_sources(st, inv)
  local ok, cn = pcall(require, "steward.billing.credit_notes")
  if not ok then return {} end
  local list = cn.available(st, inv.tenant, inv.currency)
  return list or {}
end

-- finalize(st, id [, now]) -> invoice, changed | nil, err. The draft is rebuilt from the usage
-- recorded, the tenant's credits are applied (credit notes first, then the prepaid wallet), the
-- customer is snapshotted, and the invoice takes the next number of its series in the same
-- transaction. Finalizing a finalized (or paid) invoice answers it unchanged.
-- retryable(err) -> whether a failed change may simply be tried again: a credit note taken
-- meanwhile, or PostgreSQL's deadlock / serialization refusal (SQLSTATE 40P01, 40001)
function M.retryable(err)
  local e = tostring(err)
  return e:match("^conflict: a credit note") ~= nil or e:match("deadlock detected") ~= nil
    or e:match("could not serialize") ~= nil
end

local function consume_coupons(st, inv, now)
  local okc, coupons = pcall(require, "steward.billing.coupons")
  if not okc or type(coupons) ~= "table" or not coupons.consume then return end
  for _, d in ipairs(inv.discounts or {}) do
    if d.applied_coupon then
      local ok, err = coupons.consume(st, d.applied_coupon, inv.id, decimal.new(d.amount), now)
      if ok == nil then require("steward.log").warn("coupon use not recorded", { invoice = inv.id, err = tostring(err) }) end
    end
  end
end

local function finalize_once(st, id, now)
  local inv, err = must(M.get(st, id))
  if not inv then return nil, err or ("not found: invoice " .. id) end
  if inv.state == "finalized" or inv.state == "paid" then consume_coupons(st, inv, now); return inv, false end
  if inv.state == "voided" then return nil, "invalid: invoice " .. id .. " is voided" end
  local rebuilt = M.build(st, inv.subscription, inv.period, { final = inv.final, now = now })
  if rebuilt then inv = rebuilt end
  local cfg = M.config()
  -- credits: credit notes with credit left, then the wallet (h4's wallets.consume is once per invoice)
  local stmts, credits = {}, {}
  local due = inv.subtotal - inv.discount_total + inv.tax_total
  local left = due
  for _, c in ipairs(credit_sources(st, inv)) do
    if left <= decimal.zero then break end
    local take = decimal.min(c.remaining, left)
    credits[#credits + 1] = { kind = "credit_note", ref = c.number, amount = take }
    left = left - take
    for _, s in ipairs(require("steward.billing.credit_notes").use_statements(c, take, inv.id, now)) do stmts[#stmts + 1] = s end
  end
  if left > decimal.zero then
    local okw, wallets = pcall(require, "steward.billing.wallets")
    if okw and type(wallets) == "table" and wallets.consume then
      local taken, werr = wallets.consume(st, inv.tenant, left, inv.id, inv.currency, now)
      if taken == nil and werr then return nil, "wallet: " .. tostring(werr) end
      if taken and decimal.new(taken) > decimal.zero then
        credits[#credits + 1] = { kind = "wallet", ref = inv.tenant, amount = decimal.new(taken) }
      end
    end
  end
  local money = build.totals(inv.lines, inv.subtotal, { currency = inv.currency, credits = credits,
    coupons = function() return inv.discounts end,
    tax_rates = {} })
  inv.credits, inv.credit_total = money.credits, money.credit_total
  inv.total = due - inv.credit_total
  local t = inputs.tenant_record(st, inv.tenant)
  if t then inv.customer = inputs.customer(t) end
  inv.state, inv.issued, inv.finalized = "finalized", now, now
  inv.due = now + (cfg.net_payment_days or 30) * 86400
  local width = cfg.invoices.number_width
  local batch = { numbering.lock_statement(inv.series),
    { "UPDATE billing_invoices SET state = 'finalized', body = $1, total = $2, updated = $3, " ..
    "version = version + 1 WHERE id = $4 AND state = 'draft' AND version = $5",
    body_of(inv), decimal.string(inv.total), now, inv.id, inv.version } }
  for _, s in ipairs(numbering.statements(st.db:backend(), "billing_invoices", inv.id, inv.series, width)) do
    batch[#batch + 1] = s
  end
  local numbered = #batch
  for _, s in ipairs(stmts) do batch[#batch + 1] = s end
  local ev = event(inv, "finalized", now)
  local res, fresh = domain.commit(st, batch, ev, now)
  if not res then
    -- the guard of a credit note's use (credit_notes.use_statements): SQLite says "NOT NULL
    -- constraint failed", PostgreSQL "violates not-null constraint"
    if #stmts > 0 and tostring(fresh):lower():match("not.null") then
      return nil, "conflict: a credit note used by invoice " .. id .. " changed meanwhile"
    end
    return nil, fresh
  end
  if res[2].changes ~= 1 then
    local cur = M.get(st, id)
    if cur and cur.state ~= "draft" then return cur, false end
    return nil, "conflict: invoice " .. id .. " changed meanwhile"
  end
  local r = res[numbered].rows and res[numbered].rows[1]
  inv.seq, inv.number, inv.version, inv.updated = r and r.seq, r and r.number, inv.version + 1, now
  events.published(st, fresh)
  -- coupons count a use per (applied coupon, invoice), once the invoice is final; a use that
  -- fails here is retried by the next finalize call (it answers the invoice unchanged)
  consume_coupons(st, inv, now)
  return inv, true
end

function M.finalize(st, id, now)
  if type(id) ~= "string" then error("invoices.finalize: id: string expected, got " .. type(id), 2) end
  now = util.now(now)
  -- a credit note taken by another invoice meanwhile, or the database's deadlock or
  -- serialization refusal (several instances' write groups): read again and retry
  local inv, changed
  for _ = 1, 10 do
    inv, changed = finalize_once(st, id, now)
    if inv or not M.retryable(changed) then break end
  end
  return inv, changed
end

-- ---- paying and voiding ----

local function change(st, inv, state, from_states, now, extra_event)
  local res, fresh = domain.commit(st, { { "UPDATE billing_invoices SET state = $1, body = $2, updated = $3, " ..
    "version = version + 1 WHERE id = $4 AND version = $5 AND state IN (" .. from_states .. ")",
    state, body_of(inv), now, inv.id, inv.version } }, event(inv, state, now, extra_event), now)
  if not res then return nil, fresh end
  if res[1].changes ~= 1 then return nil, "conflict: invoice " .. inv.id .. " changed meanwhile" end
  events.published(st, fresh)
  inv.version, inv.updated = inv.version + 1, now
  return inv, true
end

-- pay(st, id, payment [, now]) -> invoice, changed | nil, err. payment = {id, provider, amount
-- (decimal or string; the invoice's total when absent), at}. Paying a paid invoice with the same
-- payment id answers it unchanged; another payment id is refused.
function M.pay(st, id, payment, now)
  if type(id) ~= "string" then error("invoices.pay: id: string expected, got " .. type(id), 2) end
  if type(payment) ~= "table" or type(payment.id) ~= "string" or payment.id == "" then
    error("invoices.pay: payment: {id = string, provider, amount, at} expected", 2)
  end
  now = util.now(now)
  local inv, err = must(M.get(st, id))
  if not inv then return nil, err or ("not found: invoice " .. id) end
  if inv.state == "paid" then
    if inv.payment and inv.payment.id == payment.id then return inv, false end
    return nil, format("invalid: invoice %s was paid by payment %s", id, tostring(inv.payment and inv.payment.id))
  end
  if inv.state ~= "finalized" then return nil, format("invalid: invoice %s is %s: only a finalized one is paid", id, inv.state) end
  local amount = payment.amount ~= nil and decimal.new(payment.amount) or inv.total
  if amount ~= inv.total then
    return nil, format("amount: %s does not settle invoice %s's total %s", decimal.string(amount), id, decimal.string(inv.total))
  end
  inv.state, inv.paid = "paid", type(payment.at) == "number" and payment.at or now
  inv.payment = { id = payment.id, provider = payment.provider, amount = decimal.string(amount) }
  return change(st, inv, "paid", "'finalized'", now, { payment = payment.id })
end

-- void(st, id, reason [, now]) -> invoice, changed | nil, err: a finalized invoice is voided and
-- keeps its number (a gap would hide it); a paid one is credited instead (credit notes).
function M.void(st, id, reason, now)
  if type(id) ~= "string" then error("invoices.void: id: string expected, got " .. type(id), 2) end
  if type(reason) ~= "string" or reason == "" or #reason > 500 then
    error("invoices.void: reason: a non-empty string of at most 500 bytes expected", 2)
  end
  now = util.now(now)
  local inv, err = must(M.get(st, id))
  if not inv then return nil, err or ("not found: invoice " .. id) end
  if inv.state == "voided" then return inv, false end
  if inv.state ~= "finalized" then
    return nil, format("invalid: invoice %s is %s: only a finalized invoice is voided%s", id, inv.state,
      inv.state == "paid" and " (credit a paid one with a credit note)" or "")
  end
  inv.state, inv.voided, inv.void_reason = "voided", now, reason
  return change(st, inv, "voided", "'finalized'", now, { reason = reason })
end

-- drafts_due(st, now, grace) -> drafts built more than grace seconds ago (late usage had its
-- window to land in them) | nil, err
function M.drafts_due(st, now, grace)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_invoices WHERE state = 'draft' AND created <= $1 " ..
    "ORDER BY created, id LIMIT 500", util.now(now) - (grace or 0))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- ---- what the invoicing policy runs (steward.billing.invoice_runs) ----

-- invoice_due(st [, now]) -> {built, errors}; finalize_due(st [, now]) -> {finalized, errors};
-- credit_unused(st, sub, period [, now]) -> true | nil, err. docs/billing/invoices.md.
function M.invoice_due(st, now) return require("steward.billing.invoice_runs").invoice_due(st, now) end
function M.finalize_due(st, now) return require("steward.billing.invoice_runs").finalize_due(st, now) end
function M.credit_unused(st, sub, period, now)
  return require("steward.billing.invoice_runs").credit_unused(st, sub, period, now)
end

domain.default_store(M, { "get", "list", "build", "refresh", "finalize", "pay", "void", "drafts_due", "invoice_due",
  "finalize_due", "credit_unused" })

return M
