-- steward.billing.wallets: prepaid credits. A wallet belongs to a tenant, in one currency,
-- with the price of one credit (rate_amount); top-ups add purchased and granted credits, and
-- the invoices consume credits for what a tenant owes — once per invoice (asking again gives
-- the same amount back), never below zero. Every movement is a transaction row, written in the
-- batch that changes the balance (conditional on the version read).
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

-- credits are kept to this many decimals (what a consumption's share of a credit rounds up to)
M.CREDIT_SCALE = 5
local SOURCE = "steward.billing.wallets"
local KNOWN = { tenant = true, name = true, currency = true, rate_amount = true, paid_credits = true,
                granted_credits = true }

local ready = domain.migrator("billing")
M.ready = ready

local COLS = "id, tenant, name, currency, CAST(rate_amount AS TEXT) AS rate_amount, CAST(balance AS TEXT) AS balance, " ..
  "state, created, updated, version"

local function row(r)
  local w = domain.row(r, {})
  w.rate_amount, w.balance, w.version = V.read(w.rate_amount), V.read(w.balance), tonumber(w.version)
  w.balance_amount = w.balance * w.rate_amount
  return w
end

-- get(st, id) -> wallet (balance in credits, balance_amount in its currency) | false | nil, err
function M.get(st, id)
  if type(id) ~= "string" then error("wallets.get: id: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_wallets WHERE id = $1", id)
end

-- list(st, {tenant=, currency=}) -> wallets, oldest first | nil, err
function M.list(st, f)
  f = f or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if f.tenant ~= nil then w:add("tenant = ?", f.tenant) end
  if f.currency ~= nil then w:add("currency = ?", f.currency) end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_wallets" .. w:clause() .. " ORDER BY created, id", unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

local function credits_arg(v, field)
  local d, err = V.dec(v, field, { min = 0 })
  if err then return nil, err end
  if d and d ~= d:round(M.CREDIT_SCALE, "down") then return nil, format("%s: at most %d decimals", field, M.CREDIT_SCALE) end
  return d
end

-- ids of one batch share a prefix and end in their order, so a list sorts them as they happened
local function tx_stmt(w, kind, ref, credits, amount, balance_after, now, base, n)
  return { "INSERT INTO billing_wallet_transactions (id, wallet, tenant, kind, ref, credits, amount, balance_after, at) " ..
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)", format("%s-%d", base or ("wtx-" .. util.uuidv7(now)), n or 1), w.id, w.tenant, kind, ref, V.text(credits),
    V.text(amount), V.text(balance_after), now }
end

-- move(st, w, stmts, ev, now): stmts[1] is the balance's UPDATE (conditional on the version
-- read); the movement stands or falls with it -> true | nil, "conflict" | nil, err
local function move(st, w, stmts, ev, now)
  local key = guard.key(now)
  local u = stmts[1]
  u[1] = u[1]:gsub(" WHERE ", ", change_id = $" .. #u .. " WHERE ", 1)
  u[#u + 1] = key
  for _, g in ipairs(guard.statements("billing_wallets", key)) do stmts[#stmts + 1] = g end
  local res, fresh = domain.commit(st, stmts, ev, now)
  if not res then
    if guard.conflict(fresh) then return nil, "conflict" end
    return nil, fresh
  end
  events.published(st, fresh)
  return true
end

-- create(st, {tenant, currency, rate_amount, name, paid_credits, granted_credits} [, now]) ->
-- wallet | nil, "field: reason" | nil, "exists: ..." (one active wallet per tenant and currency)
function M.create(st, spec, now)
  if type(spec) ~= "table" then error("wallets.create: spec: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  err = V.unknown(spec, KNOWN)
  if err then return nil, err end
  local w = {}
  w.tenant, err = V.str(spec.tenant, "tenant", { required = true, max = 63 })
  if err then return nil, err end
  w.name, err = V.str(spec.name, "name", { max = 200 })
  if err then return nil, err end
  w.currency, err = V.str(spec.currency, "currency", { max = 3 })
  if err then return nil, err end
  w.currency = w.currency or bconfig.current.currency
  ok, err = bconfig.currency_known(w.currency)
  if not ok then return nil, "currency: " .. err end
  w.rate_amount, err = V.dec(spec.rate_amount, "rate_amount", { positive = true })
  if err then return nil, err end
  w.rate_amount = w.rate_amount or decimal.new(1)
  local paid, granted
  paid, err = credits_arg(spec.paid_credits, "paid_credits")
  if err then return nil, err end
  granted, err = credits_arg(spec.granted_credits, "granted_credits")
  if err then return nil, err end
  local rows
  rows, err = st.db:query("SELECT id FROM billing_wallets WHERE tenant = $1 AND currency = $2 AND state = 'active'",
    w.tenant, w.currency)
  if not rows then return nil, err end
  if #rows > 0 then return nil, format("exists: %s has an active %s wallet (%s): top it up", w.tenant, w.currency, rows[1].id) end
  now = util.now(now)
  w.id, w.state, w.created, w.updated, w.version = "wal-" .. util.uuidv7(now), "active", now, now, 1
  w.name = w.name or w.id
  w.balance = decimal.zero
  local stmts = { { "INSERT INTO billing_wallets (id, tenant, name, currency, rate_amount, balance, state, created, updated, " ..
    "version) VALUES ($1,$2,$3,$4,$5,'0','active',$6,$6,1)", w.id, w.tenant, w.name, w.currency, V.text(w.rate_amount), now } }
  local ev = { id = "billing.wallet.created:" .. w.id, type = "billing.wallet.created", tenant = w.tenant, time = now,
               source = SOURCE, data = { wallet = w.id, tenant = w.tenant, currency = w.currency,
               rate_amount = V.text(w.rate_amount) } }
  local res, fresh = domain.commit(st, stmts, ev, now)
  if not res then
    -- made meanwhile by another request (the unique index of active wallets)
    if tostring(fresh):find("billing_wallets", 1, true) then
      return nil, format("exists: %s has an active %s wallet: top it up", w.tenant, w.currency)
    end
    return nil, fresh
  end
  events.published(st, fresh)
  if (paid and not paid:is_zero()) or (granted and not granted:is_zero()) then
    return M.top_up(st, w.id, { paid_credits = paid, granted_credits = granted, key = "create" }, now)
  end
  return M.get(st, w.id)
end

-- top_up(st, id, {paid_credits, granted_credits, key} [, now]) -> wallet | nil, err. key makes
-- a top-up once (the same key again changes nothing); purchased credits count at rate_amount.
function M.top_up(st, id, t, now)
  if type(t) ~= "table" then error("wallets.top_up: top_up: table expected", 2) end
  local err = V.unknown(t, { paid_credits = true, granted_credits = true, key = true })
  if err then return nil, err end
  local paid, granted
  paid, err = credits_arg(t.paid_credits, "paid_credits")
  if err then return nil, err end
  granted, err = credits_arg(t.granted_credits, "granted_credits")
  if err then return nil, err end
  paid, granted = paid or decimal.zero, granted or decimal.zero
  if paid:is_zero() and granted:is_zero() then return nil, "paid_credits: paid_credits or granted_credits above 0 expected" end
  local key
  key, err = V.str(t.key, "key", { max = 200 })
  if err then return nil, err end
  now = util.now(now)
  key = key or util.uuidv7(now)
  for _ = 1, 5 do
    local w
    w, err = M.get(st, id)
    if w == nil then return nil, err end
    if not w then return nil, "not found: no wallet " .. id end
    if w.state ~= "active" then return nil, "invalid: the wallet is " .. w.state end
    local seen = st.db:query("SELECT 1 AS x FROM billing_wallet_transactions WHERE wallet = $1 AND ref = $2 AND " ..
      "kind IN ('purchased', 'granted')", id, key)
    if seen and #seen > 0 then return w end
    local balance = w.balance + paid + granted
    local stmts = { { "UPDATE billing_wallets SET balance = $1, updated = $2, version = version + 1 WHERE id = $3 AND version = $4",
      V.text(balance), now, id, w.version } }
    local after, base = w.balance, "wtx-" .. util.uuidv7(now)
    if not paid:is_zero() then
      after = after + paid
      stmts[#stmts + 1] = tx_stmt(w, "purchased", key, paid, paid * w.rate_amount, after, now, base, 1)
    end
    if not granted:is_zero() then
      after = after + granted
      stmts[#stmts + 1] = tx_stmt(w, "granted", key, granted, granted * w.rate_amount, after, now, base, 2)
    end
    local ev = { id = format("billing.wallet.topped_up:%s:%s", id, key), type = "billing.wallet.topped_up", tenant = w.tenant,
                 time = now, source = SOURCE, data = { wallet = id, paid_credits = V.text(paid),
                 granted_credits = V.text(granted), balance = V.text(balance) } }
    local ok
    ok, err = move(st, w, stmts, ev, now)
    if ok then return M.get(st, id) end
    if err ~= "conflict" then
      -- a concurrent top-up with this key won the unique (wallet, kind, ref): it is done
      local again = st.db:query("SELECT 1 AS x FROM billing_wallet_transactions WHERE wallet = $1 AND ref = $2", id, key)
      if again and #again > 0 then return M.get(st, id) end
      return nil, err
    end
  end
  return nil, "conflict: the wallet " .. id .. " keeps changing"
end

-- consume(st, tenant, amount, invoice_id [, currency, now]) -> amount taken (decimal, at the
-- currency's scale; zero without a wallet or credits) | nil, err. Once per invoice: asking
-- again answers what the first call took. The credits taken are amount / rate_amount, rounded
-- up to CREDIT_SCALE decimals and never more than the balance.
function M.consume(st, tenant, amount, invoice, currency, now)
  if type(tenant) ~= "string" then error("wallets.consume: tenant: string expected", 2) end
  if not decimal.is(amount) then error("wallets.consume: amount: decimal expected", 2) end
  if type(invoice) ~= "string" then error("wallets.consume: invoice_id: string expected", 2) end
  if currency ~= nil and type(currency) ~= "string" then error("wallets.consume: currency: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  now = util.now(now)
  for _ = 1, 5 do
    local list
    list, err = M.list(st, { tenant = tenant, currency = currency })
    if not list then return nil, err end
    local w
    for _, x in ipairs(list) do if x.state == "active" then w = x; break end end
    if not w then return decimal.zero end
    local prev = st.db:query("SELECT CAST(amount AS TEXT) AS amount FROM billing_wallet_transactions WHERE wallet = $1 AND " ..
      "kind = 'consumed' AND ref = $2", w.id, invoice)
    if prev and prev[1] then return V.read(prev[1].amount) end
    if amount:sign() <= 0 or w.balance:is_zero() then return decimal.zero end
    local scale = decimal.scale(w.currency)
    local taken = decimal.min(amount, (w.balance * w.rate_amount):round(scale, "down"))
    if taken:sign() <= 0 then return decimal.zero end
    local credits = decimal.min((taken / w.rate_amount):round(M.CREDIT_SCALE, "up"), w.balance)
    local balance = w.balance - credits
    local ev = { id = format("billing.wallet.consumed:%s:%s", w.id, invoice), type = "billing.wallet.consumed",
                 tenant = w.tenant, time = now, source = SOURCE, data = { wallet = w.id, invoice = invoice,
                 credits = V.text(credits), amount = V.text(taken), balance = V.text(balance) } }
    local stmts = { { "UPDATE billing_wallets SET balance = $1, updated = $2, version = version + 1 WHERE id = $3 AND version = $4",
      V.text(balance), now, w.id, w.version }, tx_stmt(w, "consumed", invoice, credits, taken, balance, now) }
    ok, err = move(st, w, stmts, ev, now)
    if ok then return taken end
    if err ~= "conflict" then
      local again = st.db:query("SELECT CAST(amount AS TEXT) AS amount FROM billing_wallet_transactions WHERE wallet = $1 AND " ..
        "kind = 'consumed' AND ref = $2", w.id, invoice)
      if again and again[1] then return V.read(again[1].amount) end
      return nil, err
    end
  end
  return nil, "conflict: the wallets of " .. tenant .. " keep changing"
end

-- transactions(st, id) -> {{id, kind = "purchased"|"granted"|"consumed", ref, credits, amount,
-- balance_after, at}} oldest first | nil, err
function M.transactions(st, id)
  if type(id) ~= "string" then error("wallets.transactions: id: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT id, wallet, tenant, kind, ref, CAST(credits AS TEXT) AS credits, CAST(amount AS TEXT) AS amount, " ..
    "CAST(balance_after AS TEXT) AS balance_after, at FROM billing_wallet_transactions WHERE wallet = $1 ORDER BY at, id", id)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do
    local t = domain.row(r, {})
    t.credits, t.amount, t.balance_after = V.read(t.credits), V.read(t.amount), V.read(t.balance_after)
    rows[i] = t
  end
  return rows
end

-- terminate(st, id [, now]) -> wallet | nil, err: no more top-ups or consumption
function M.terminate(st, id, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local res
  res, err = st.db:exec("UPDATE billing_wallets SET state = 'terminated', updated = $1, version = version + 1 WHERE id = $2 " ..
    "AND state = 'active'", util.now(now), id)
  if not res then return nil, err end
  if res.changes == 0 then return nil, "not found: no active wallet " .. id end
  return M.get(st, id)
end

function M.view(w)
  local o = V.jsonable(w, { created = true, updated = true, at = true })
  if o.balance_amount and w.balance_amount then o.balance_amount = V.text(w.balance_amount:money(w.currency, "down")) end
  return o
end

domain.default_store(M, { "get", "list", "create", "top_up", "consume", "transactions", "terminate" })

return M
