-- steward.billing.credit_notes: credit notes against a finalized or paid invoice, numbered
-- gap-free in their own series (billing.invoices.credit_note_series). A credit note never
-- credits more than is left creditable on its invoice. Its method says where the money goes:
-- "credit" (Lago's credit to the customer: taken off the tenant's next invoices when they are
-- finalized) or "refund" (paid back: the payment part, steward.billing.payments, takes the
-- pending refunds with refunds_pending() and marks each done with refunded()).
local json = require "steward.json"
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local record = require "steward.billing.invoice_record"
local numbering = require "steward.billing.numbering"
require "steward.billing.invoices_schema"

local type, pairs, ipairs, tostring, error, require, unpack, pcall, format =
  type, pairs, ipairs, tostring, error, require, unpack, pcall, string.format

local M = {}

M.METHODS = { credit = true, refund = true }
local SOURCE = "steward.billing.credit_notes"
local COLS = "id, tenant, invoice, series, seq, number, state, method, currency, total, remaining, body, created"

local ready = domain.migrator("billing_invoices")

local function row(r)
  local cn = json.decode(r.body) or {}
  cn.id, cn.tenant, cn.invoice, cn.series, cn.seq, cn.number = r.id, r.tenant, r.invoice, r.series, r.seq, r.number
  cn.state, cn.method, cn.currency, cn.created = r.state, r.method, r.currency, r.created
  cn.total, cn.remaining = decimal.new(tostring(r.total)), decimal.new(tostring(r.remaining))
  if cn.subtotal then cn.subtotal = decimal.new(cn.subtotal) end
  for _, l in ipairs(cn.lines or {}) do l.amount = decimal.new(l.amount) end
  for _, t in ipairs(cn.taxes or {}) do t.amount = decimal.new(t.amount) end
  return cn
end

-- get(st, id) -> credit note | false | nil, err
function M.get(st, id)
  if type(id) ~= "string" then error("credit_notes.get: id: string expected, got " .. type(id), 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_credit_notes WHERE id = $1", id)
end

-- list(st, {tenant=, invoice=, method=, state=, limit=}) -> credit notes, newest first | nil, err
function M.list(st, f)
  f = f or {}
  if type(f) ~= "table" then error("credit_notes.list: filter: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  for _, k in ipairs({ "tenant", "invoice", "method", "state" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" then error("credit_notes.list: " .. k .. ": string expected", 2) end
      w:add(k .. " = ?", f[k])
    end
  end
  local limit = util.limit_arg(f.limit, "credit_notes.list: limit", 100, 1000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_credit_notes" .. w:clause() ..
    " ORDER BY created DESC, id DESC LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- json(cn) -> canonical JSON (amounts at the currency's scale, keys sorted)
function M.json(cn)
  local v = {}
  for k, x in pairs(cn) do v[k] = x end
  v.seq = nil
  return record.json(v)
end

-- available(st, tenant, currency) -> credit notes of method "credit" with credit left, oldest
-- first (invoices.finalize takes from them) | nil, err
function M.available(st, tenant, currency)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_credit_notes WHERE tenant = $1 AND currency = $2 " ..
    "AND method = 'credit' AND state = 'issued' ORDER BY created, id", tenant, currency)
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    local cn = row(r)
    if cn.remaining > decimal.zero then out[#out + 1] = cn end
  end
  return out
end

-- use_statements(cn, amount, invoice_id) -> the statements (for the finalizing batch) that take
-- amount off cn's credit for invoice_id. The UPDATE applies only if remaining is still what was
-- read, and marks the row as last used by this invoice; the INSERT after it reads the new
-- remaining of a row so marked into a NOT NULL column, so when the UPDATE did not apply (another
-- invoice took the credit meanwhile) it inserts NULL and the whole batch (the invoice's
-- finalization) rolls back rather than spend a credit twice.
function M.use_statements(cn, amount, invoice_id, now)
  local before, after = decimal.string(cn.remaining), decimal.string(cn.remaining - amount)
  return {
    { "UPDATE billing_credit_notes SET remaining = $1, last_use = $2 WHERE id = $3 AND remaining = $4",
      after, invoice_id, cn.id, before },
    { "INSERT INTO billing_credit_note_uses (credit_note, invoice, tenant, amount, remaining_after, used) " ..
      "VALUES ($1, $2, $3, $4, (SELECT remaining FROM billing_credit_notes WHERE id = $1 AND last_use = $2), $5)",
      cn.id, invoice_id, cn.tenant, decimal.string(amount), util.now(now) },
  }
end

-- creditable(st, inv) -> what is left creditable on the invoice: its total (with taxes, before
-- credits applied to it) less its credit notes so far | nil, err
function M.creditable(st, inv)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT total FROM billing_credit_notes WHERE invoice = $1", inv.id)
  if not rows then return nil, err end
  local left = inv.subtotal - inv.discount_total + inv.tax_total
  for _, r in ipairs(rows) do left = left - decimal.new(tostring(r.total)) end
  return left
end

local function amount_arg(v, field, currency)
  if v == nil then return nil end
  local ok, d = pcall(decimal.new, v)
  if not ok or (type(v) ~= "string" and not decimal.is(v)) then return nil, field .. ": a decimal string expected" end
  if d <= decimal.zero then return nil, field .. ": must be more than 0" end
  if d:round(decimal.scale(currency), "down") ~= d then
    return nil, format("%s: %s has more decimals than %s allows (%d)", field, decimal.string(d), currency, decimal.scale(currency))
  end
  return d
end

local KNOWN = { amount = true, lines = true, reason = true, method = true }

-- create(st, invoice_id, {amount | lines = {{line = <line id>, amount}}, reason, method} [, now])
-- -> credit note | nil, err. With lines, each amount is before tax and the invoice's tax rates
-- are added (each tax rounded half-up); with amount, it is the credit with taxes included.
function M.create(st, invoice_id, spec, now)
  if type(invoice_id) ~= "string" then error("credit_notes.create: invoice_id: string expected", 2) end
  if type(spec) ~= "table" then error("credit_notes.create: spec: table expected", 2) end
  for k in pairs(spec) do
    if not KNOWN[k] then return nil, tostring(k) .. ": unknown field (amount, lines, reason, method)" end
  end
  local method = spec.method or "credit"
  if not M.METHODS[method] then return nil, "method: credit or refund expected" end
  if type(spec.reason) ~= "string" or spec.reason == "" or #spec.reason > 500 then
    return nil, "reason: a non-empty string of at most 500 bytes expected"
  end
  if (spec.amount == nil) == (spec.lines == nil) then return nil, "amount: give either amount or lines" end
  local ok, err = ready(st)
  if not ok then return nil, err end
  now = util.now(now)
  local invoices = require "steward.billing.invoices"
  local inv
  inv, err = invoices.get(st, invoice_id)
  if inv == nil then return nil, err end
  if not inv then return nil, "not found: invoice " .. invoice_id end
  if inv.state ~= "finalized" and inv.state ~= "paid" then
    return nil, format("invalid: invoice %s is %s: only a finalized or paid invoice is credited", invoice_id, inv.state)
  end
  if method == "refund" and inv.state ~= "paid" then
    return nil, format("invalid: invoice %s is not paid: nothing to refund (credit it instead)", invoice_id)
  end
  local cur = inv.currency
  local lines, subtotal, taxes, total = {}, nil, {}, nil
  if spec.amount ~= nil then
    total, err = amount_arg(spec.amount, "amount", cur)
    if not total then return nil, err end
  else
    if type(spec.lines) ~= "table" or #spec.lines == 0 then return nil, "lines: a non-empty list expected" end
    local by_id = {}
    for _, l in ipairs(inv.lines) do by_id[l.id] = l end
    subtotal = decimal.zero
    for i, l in ipairs(spec.lines) do
      local at = "lines[" .. i .. "]"
      if type(l) ~= "table" or type(l.line) ~= "string" then return nil, at .. ".line: the id of an invoice line expected" end
      local il = by_id[l.line]
      if not il then return nil, at .. ".line: invoice " .. invoice_id .. " has no line " .. l.line end
      local a
      a, err = amount_arg(l.amount, at .. ".amount", cur)
      if not a then return nil, err end
      if a > il.amount then return nil, format("%s.amount: %s is more than the line's %s", at, decimal.string(a), il.amount:format(decimal.scale(cur))) end
      lines[i] = { line = l.line, description = il.description, amount = a }
      subtotal = subtotal + a
    end
    total = subtotal
    for _, t in ipairs(inv.taxes) do
      local amount = (subtotal * decimal.new(t.rate) / 100):money(cur, "half_up")
      taxes[#taxes + 1] = { name = t.name, rate = t.rate, amount = amount }
      total = total + amount
    end
  end
  local left
  left, err = M.creditable(st, inv)
  if not left then return nil, err end
  if total > left then
    return nil, format("amount: %s is more than the %s left creditable on invoice %s", total:format(decimal.scale(cur)),
      left:format(decimal.scale(cur)), invoice_id)
  end
  local cfg = invoices.config()
  local series = numbering.series_name(cfg.invoices.credit_note_series, inv.tenant)
  local id = "cn-" .. util.uuidv7(now)
  local cn = { id = id, tenant = inv.tenant, invoice = inv.id, invoice_number = inv.number, series = series,
               state = "issued", method = method, currency = cur, reason = spec.reason, lines = json.array(lines),
               subtotal = subtotal, taxes = json.array(taxes), total = total,
               remaining = method == "credit" and total or decimal.zero,
               refund = method == "refund" and { state = "pending" } or nil, created = now }
  local body = record.stored({ reason = cn.reason, lines = lines, subtotal = subtotal, taxes = taxes,
                               invoice_number = inv.number, refund = cn.refund })
  local batch = { numbering.lock_statement(series),
    { "INSERT INTO billing_credit_notes (id, tenant, invoice, series, state, method, currency, total, " ..
    "remaining, body, created) VALUES ($1,$2,$3,$4,'issued',$5,$6,$7,$8,$9,$10)",
    id, cn.tenant, cn.invoice, series, method, cur, decimal.string(total), decimal.string(cn.remaining), body, now } }
  for _, s in ipairs(numbering.statements(st.db:backend(), "billing_credit_notes", id, series, cfg.invoices.number_width)) do
    batch[#batch + 1] = s
  end
  local numbered = #batch
  local ev = { id = "credit_note:" .. id .. ":created", type = "billing.credit_note.created", tenant = cn.tenant,
               time = now, source = SOURCE,
               data = { credit_note = id, invoice = inv.id, method = method, currency = cur, total = decimal.string(total) } }
  local res, fresh
  for _ = 1, 10 do -- PostgreSQL's deadlock / serialization refusal: the same batch again
    local stmts = {} -- domain.commit appends the event's statements to the list it is given
    for i, x in ipairs(batch) do stmts[i] = x end
    res, fresh = domain.commit(st, stmts, ev, now)
    if res or not invoices.retryable(fresh) then break end
  end
  if not res then return nil, fresh end
  local r = res[numbered].rows and res[numbered].rows[1]
  cn.seq, cn.number = r and r.seq, r and r.number
  events.published(st, fresh)
  return cn
end

-- refunds_pending(st [, tenant]) -> credit notes of method refund not refunded yet (state
-- issued; refunded() moves them to refunded) | nil, err
function M.refunds_pending(st, tenant)
  return M.list(st, { method = "refund", state = "issued", tenant = tenant, limit = 1000 })
end

-- refunded(st, id, ref [, now]) -> credit note | nil, err: the payment provider paid the refund
-- back (ref: its refund id). Once: marking it again with the same ref answers it unchanged.
function M.refunded(st, id, ref, now)
  if type(ref) ~= "string" or ref == "" then error("credit_notes.refunded: ref: string expected", 2) end
  local cn, err = M.get(st, id)
  if cn == nil then return nil, err end
  if not cn then return nil, "not found: credit note " .. id end
  if cn.method ~= "refund" then return nil, "invalid: credit note " .. id .. " is not a refund" end
  if cn.state == "refunded" then
    if cn.refund.ref == ref then return cn end
    return nil, "invalid: credit note " .. id .. " was refunded as " .. tostring(cn.refund.ref)
  end
  now = util.now(now)
  cn.refund = { state = "refunded", ref = ref, at = now }
  local body = record.stored({ reason = cn.reason, lines = cn.lines or {}, subtotal = cn.subtotal, taxes = cn.taxes or {},
                               invoice_number = cn.invoice_number, refund = cn.refund })
  local ev = { id = "credit_note:" .. id .. ":refunded", type = "billing.credit_note.refunded", tenant = cn.tenant,
               time = now, source = SOURCE, data = { credit_note = id, invoice = cn.invoice, ref = ref } }
  local res, fresh = domain.commit(st, { { "UPDATE billing_credit_notes SET body = $1, state = 'refunded' " ..
    "WHERE id = $2 AND state = 'issued'", body, id } }, ev, now)
  if not res then return nil, fresh end
  if res[1].changes ~= 1 then return nil, "conflict: credit note " .. id .. " changed meanwhile" end
  events.published(st, fresh)
  return cn
end

domain.default_store(M, { "get", "list", "available", "creditable", "create", "refunds_pending", "refunded" })

return M
