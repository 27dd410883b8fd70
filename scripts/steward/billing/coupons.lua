-- steward.billing.coupons: coupons (a fixed amount or a percentage off; once, for a number of
-- periods, or forever) and their application to a tenant. The invoices ask for_invoice what
-- the tenant's coupons take off a subtotal (fixed-amount coupons first, then percentages, each
-- in the order applied; never more than what is left of the subtotal), then consume each use
-- once per invoice: a once coupon with a fixed amount keeps what is left of it for the next
-- invoices, a recurring one counts its periods down, and a coupon used up is terminated.
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local decimal = require "steward.decimal"
local bconfig = require "steward.billing.config"
local V = require "steward.billing.values"
local guard = require "steward.billing.guard"
require "steward.billing.schema"

local type, ipairs, tostring, tonumber, error, unpack, format =
  type, ipairs, tostring, tonumber, error, unpack, string.format

local M = {}

M.KINDS = { fixed = true, percentage = true }
M.FREQUENCIES = { once = true, recurring = true, forever = true }
local KNOWN = { code = true, name = true, kind = true, amount = true, percentage = true, currency = true,
                frequency = true, duration = true }
local SOURCE = "steward.billing.coupons"

local ready = domain.migrator("billing")
M.ready = ready

-- check(c) -> coupon | nil, "field: reason"
function M.check(c)
  if type(c) ~= "table" then return nil, "coupon: object expected" end
  local err = V.unknown(c, KNOWN)
  if err then return nil, err end
  local out = {}
  out.code, err = V.str(c.code, "code", { required = true, max = 100, pattern = V.CODE, what = V.CODE_WHAT })
  if err then return nil, err end
  out.name, err = V.str(c.name, "name", { max = 200 })
  if err then return nil, err end
  out.name = out.name or out.code
  out.kind, err = V.str(c.kind, "kind", { required = true, max = 20 })
  if err then return nil, err end
  if not M.KINDS[out.kind] then return nil, "kind: fixed or percentage expected" end
  if out.kind == "fixed" then
    out.amount, err = V.dec(c.amount, "amount", { required = true, positive = true })
    if err then return nil, err end
    if not V.absent(c.percentage) then return nil, "percentage: only for a percentage coupon" end
    out.currency, err = V.str(c.currency, "currency", { max = 3 })
    if err then return nil, err end
    out.currency = out.currency or bconfig.current.currency
    local ok, why = bconfig.currency_known(out.currency)
    if not ok then return nil, "currency: " .. why end
    if not decimal.is(out.amount) or out.amount ~= out.amount:round(decimal.scale(out.currency), "down") then
      return nil, format("amount: at most %d decimals in %s", decimal.scale(out.currency), out.currency)
    end
  else
    out.percentage, err = V.dec(c.percentage, "percentage", { required = true, positive = true })
    if err then return nil, err end
    if out.percentage > decimal.new(100) then return nil, "percentage: at most 100" end
    if not V.absent(c.amount) then return nil, "amount: only for a fixed coupon" end
    if not V.absent(c.currency) then return nil, "currency: only for a fixed coupon" end
  end
  out.frequency, err = V.str(c.frequency, "frequency", { max = 20 })
  if err then return nil, err end
  out.frequency = out.frequency or "once"
  if not M.FREQUENCIES[out.frequency] then return nil, "frequency: once, recurring or forever expected" end
  out.duration, err = V.int(c.duration, "duration", { min = 1, max = 1200 })
  if err then return nil, err end
  if out.frequency == "recurring" and not out.duration then return nil, "duration: required for a recurring coupon (periods)" end
  if out.frequency ~= "recurring" and out.duration then return nil, "duration: only for a recurring coupon" end
  return out
end

local CCOLS = "code, name, kind, CAST(amount AS TEXT) AS amount, CAST(percentage AS TEXT) AS percentage, currency, " ..
  "frequency, duration, created"

local function coupon_row(r)
  local c = domain.row(r, {})
  c.amount, c.percentage = V.read(c.amount), V.read(c.percentage)
  c.duration = tonumber(c.duration)
  return c
end

-- create(st, c [, now]) -> coupon | nil, err ("exists: ..." for a code taken)
function M.create(st, c, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local cp
  cp, err = M.check(c)
  if not cp then return nil, err end
  now = util.now(now)
  local res
  res, err = st.db:exec("INSERT INTO billing_coupons (code, name, kind, amount, percentage, currency, frequency, duration, " ..
    "created) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (code) DO NOTHING", cp.code, cp.name, cp.kind,
    util.nullable(V.text(cp.amount)), util.nullable(V.text(cp.percentage)), util.nullable(cp.currency), cp.frequency,
    util.nullable(cp.duration), now)
  if not res then return nil, err end
  if res.changes == 0 then return nil, "exists: a coupon " .. cp.code .. " exists" end
  cp.created = now
  return cp
end

-- get(st, code) -> coupon | false | nil, err
function M.get(st, code)
  if type(code) ~= "string" then error("coupons.get: code: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, coupon_row, "SELECT " .. CCOLS .. " FROM billing_coupons WHERE code = $1", code)
end

-- list(st) -> coupons by code | nil, err
function M.list(st)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. CCOLS .. " FROM billing_coupons ORDER BY code")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = coupon_row(r) end
  return rows
end

local ACOLS = "a.id, a.tenant, a.coupon, a.state, CAST(a.amount_remaining AS TEXT) AS amount_remaining, " ..
  "a.periods_remaining, a.created, a.updated, a.version, c.kind, CAST(c.amount AS TEXT) AS amount, " ..
  "CAST(c.percentage AS TEXT) AS percentage, c.currency, c.frequency, c.duration"

local function applied_row(r)
  local a = domain.row(r, {})
  a.amount_remaining, a.amount, a.percentage = V.read(a.amount_remaining), V.read(a.amount), V.read(a.percentage)
  a.periods_remaining, a.version, a.duration = tonumber(a.periods_remaining), tonumber(a.version), tonumber(a.duration)
  return a
end

local function applied_get(st, id)
  return domain.one(st, applied_row, "SELECT " .. ACOLS .. " FROM billing_applied_coupons a JOIN billing_coupons c " ..
    "ON c.code = a.coupon WHERE a.id = $1", id)
end

-- applied(st, {tenant=, state=}) -> applied coupons (with their coupon's terms), oldest first
function M.applied(st, f)
  f = f or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if f.tenant ~= nil then w:add("a.tenant = ?", f.tenant) end
  if f.state ~= nil then w:add("a.state = ?", f.state) end
  local rows
  rows, err = st.db:query("SELECT " .. ACOLS .. " FROM billing_applied_coupons a JOIN billing_coupons c ON c.code = a.coupon" ..
    w:clause() .. " ORDER BY a.created, a.id", unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = applied_row(r) end
  return rows
end

-- apply(st, tenant, code [, now]) -> applied coupon | nil, err: the coupon for the tenant's
-- next invoices ("exists: ..." when the tenant has it active already).
function M.apply(st, tenant, code, now)
  if type(tenant) ~= "string" then error("coupons.apply: tenant: string expected", 2) end
  if type(code) ~= "string" then error("coupons.apply: code: string expected", 2) end
  local c, err = M.get(st, code)
  if c == nil then return nil, err end
  if not c then return nil, "coupon: no coupon " .. code end
  now = util.now(now)
  local rows
  rows, err = st.db:query("SELECT id FROM billing_applied_coupons WHERE tenant = $1 AND coupon = $2 AND state = 'active'",
    tenant, code)
  if not rows then return nil, err end
  if #rows > 0 then return nil, "exists: the coupon " .. code .. " is applied to " .. tenant .. " already" end
  local id = "cpn-" .. util.uuidv7(now)
  local remaining = c.kind == "fixed" and c.frequency == "once" and c.amount or nil
  local periods = c.frequency == "recurring" and c.duration or nil
  local ev = { id = "billing.coupon.applied:" .. id, type = "billing.coupon.applied", tenant = tenant, time = now,
               source = SOURCE, data = { applied_coupon = id, coupon = code, tenant = tenant } }
  local res, fresh = domain.commit(st, { { "INSERT INTO billing_applied_coupons (id, tenant, coupon, state, " ..
    "amount_remaining, periods_remaining, created, updated, version) VALUES ($1,$2,$3,'active',$4,$5,$6,$6,1)",
    id, tenant, code, util.nullable(V.text(remaining)), util.nullable(periods), now } }, ev, now)
  if not res then
    -- applied meanwhile by another request (the unique index of active applications)
    if tostring(fresh):find("billing_applied_coupons", 1, true) then
      return nil, "exists: the coupon " .. code .. " is applied to " .. tenant .. " already"
    end
    return nil, fresh
  end
  events.published(st, fresh)
  return applied_get(st, id)
end

-- for_invoice(st, tenant, subtotal, currency) -> {{applied_coupon_id, coupon, amount}} |
-- nil, err: what the tenant's active coupons take off subtotal, nothing consumed yet. Amounts
-- are at the currency's scale (a percentage rounded half-up, Lago's rounding of fees).
function M.for_invoice(st, tenant, subtotal, currency)
  if type(tenant) ~= "string" then error("coupons.for_invoice: tenant: string expected", 2) end
  if not decimal.is(subtotal) then error("coupons.for_invoice: subtotal: decimal expected", 2) end
  local scale = decimal.scale(currency)
  if not scale then error("coupons.for_invoice: currency: unknown currency " .. tostring(currency), 2) end
  local list, err = M.applied(st, { tenant = tenant, state = "active" })
  if not list then return nil, err end
  table.sort(list, function(a, b)
    if a.kind ~= b.kind then return a.kind == "fixed" end
    if a.created ~= b.created then return a.created < b.created end
    return a.id < b.id
  end)
  local left, out = subtotal, {}
  for _, a in ipairs(list) do
    if left:sign() <= 0 then break end
    local amount
    if a.kind == "fixed" then
      if a.currency == currency then amount = decimal.min(a.amount_remaining or a.amount, left) end
    else
      amount = decimal.min((left * a.percentage / 100):money(currency, "half_up"), left)
    end
    if amount and amount:sign() > 0 then
      out[#out + 1] = { applied_coupon_id = a.id, coupon = a.coupon, amount = amount }
      left = left - amount
    end
  end
  return out
end

-- consume(st, applied_coupon_id, invoice_id, amount [, now]) -> true | false (this invoice
-- consumed it before) | nil, err: records the use once per invoice and counts it down.
function M.consume(st, id, invoice, amount, now)
  if type(id) ~= "string" then error("coupons.consume: applied_coupon_id: string expected", 2) end
  if type(invoice) ~= "string" then error("coupons.consume: invoice_id: string expected", 2) end
  if not decimal.is(amount) then error("coupons.consume: amount: decimal expected", 2) end
  now = util.now(now)
  for _ = 1, 5 do
    local a, err = applied_get(st, id)
    if a == nil then return nil, err end
    if not a then return nil, "not found: no applied coupon " .. id end
    local used = st.db:query("SELECT 1 AS x FROM billing_coupon_uses WHERE applied_coupon = $1 AND invoice = $2", id, invoice)
    if used and #used > 0 then return false end
    if a.state ~= "active" then return nil, "invalid: the coupon " .. a.coupon .. " is " .. a.state end
    local remaining, periods, state = a.amount_remaining, a.periods_remaining, "active"
    if remaining then
      if amount > remaining then return nil, "invalid: " .. tostring(amount) .. " is more than the coupon's " .. tostring(remaining) end
      remaining = remaining - amount
      if remaining:is_zero() then state = "terminated" end
    elseif a.frequency == "once" then
      state = "terminated"
    end
    if periods then
      periods = periods - 1
      if periods <= 0 then state = "terminated" end
    end
    local ev = { id = format("billing.coupon.used:%s:%s", id, invoice), type = "billing.coupon.used", tenant = a.tenant,
                 time = now, source = SOURCE, data = { applied_coupon = id, coupon = a.coupon, invoice = invoice,
                 amount = V.text(amount), state = state } }
    -- the use and the count-down stand or fall together (guard): a use of this invoice made
    -- meanwhile makes the INSERT fail on the primary key, another invoice's the UPDATE miss
    local key = guard.key(now)
    local stmts = {
      { "UPDATE billing_applied_coupons SET amount_remaining = $1, periods_remaining = $2, state = $3, updated = $4, " ..
        "version = version + 1, change_id = $7 WHERE id = $5 AND version = $6", util.nullable(V.text(remaining)),
        util.nullable(periods), state, now, id, a.version, key },
      { "INSERT INTO billing_coupon_uses (applied_coupon, invoice, tenant, amount, at) VALUES ($1, $2, $3, $4, $5)",
        id, invoice, a.tenant, V.text(amount), now } }
    for _, g in ipairs(guard.statements("billing_applied_coupons", key)) do stmts[#stmts + 1] = g end
    local res, fresh = domain.commit(st, stmts, ev, now)
    if res then
      events.published(st, fresh)
      return true
    end
    if not guard.conflict(fresh) and not tostring(fresh):lower():find("unique", 1, true)
        and not tostring(fresh):lower():find("duplicate key", 1, true) then
      return nil, fresh
    end
    -- another use came first: read again
  end
  return nil, "conflict: the coupon " .. id .. " keeps changing"
end

-- terminate(st, applied_coupon_id [, now]) -> true | nil, err: removes a coupon from a tenant
function M.terminate(st, id, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local res
  res, err = st.db:exec("UPDATE billing_applied_coupons SET state = 'terminated', updated = $1, version = version + 1 " ..
    "WHERE id = $2 AND state = 'active'", util.now(now), id)
  if not res then return nil, err end
  if res.changes == 0 then return nil, "not found: no active applied coupon " .. id end
  return true
end

local TIMES = { created = true, updated = true }
function M.view(c)
  local o = V.jsonable(c, TIMES)
  for _, k in ipairs({ "amount", "percentage", "currency", "duration" }) do if o[k] == nil then o[k] = V.null end end
  return o
end

domain.default_store(M, { "create", "get", "list", "applied", "apply", "for_invoice", "consume", "terminate" })

return M
