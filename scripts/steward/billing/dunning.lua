-- steward.billing.dunning: what follows a failed payment (docs/billing/payments.md, "Dunning").
-- The shipped policy billing.dunning decides (retry after the next of `retries`, or give up);
-- this module does it: a retry is a durable timer that fires billing.dunning.retry (it survives
-- a restart, and a handler that runs again arms nothing new: the timer's key is the invoice and
-- attempt), each failure notifies the tenant (its branding), giving up announces
-- billing.dunning.exhausted and suspends the tenant (steward.tenants.suspend) when `suspend`
-- is on; paying the invoice later resumes it. One row per invoice in billing_dunning keeps
-- where each stands.
local json = require "steward.json"
local log = require "steward.log"
local time = require "steward.time"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"
require "steward.billing.payments_schema"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require = type, pairs, ipairs, tostring, tonumber, error, pcall, require
local format = string.format

local M = {}

local SOURCE = "steward.billing.dunning"
M.DEFAULTS = { retries = { "1d", "3d", "7d" }, suspend = true, notify = { channel = "log" } }

local ready = domain.migrator("billing_payments")

-------------------------------------------------------------------------------- config
local current

-- check_config(v, where) -> v with defaults | nil, "where.field: reason" (checking its own
-- result again gives the same: steward.billing.config keeps what this returns)
function M.check_config(v, where)
  where = where or "billing.dunning"
  if type(v) ~= "table" then return nil, where .. ": table expected" end
  for k in pairs(v) do
    if k ~= "retries" and k ~= "suspend" and k ~= "notify" then
      return nil, format("%s.%s: unknown field (retries, suspend, notify)", where, tostring(k))
    end
  end
  local out = { retries = v.retries or M.DEFAULTS.retries }
  local delays = {}
  if type(out.retries) ~= "table" then
    return nil, where .. ".retries: a list of durations expected ({\"1d\", \"3d\", \"7d\"})"
  end
  if #out.retries > 20 then return nil, where .. ".retries: at most 20 retries" end
  for i, d in ipairs(out.retries) do
    local s = tonumber(d) or (type(d) == "string" and time.parse_duration(d))
    if not s or s <= 0 then return nil, format("%s.retries[%d]: a positive duration expected (\"1d\", \"12h\")", where, i) end
    delays[i] = s
  end
  for k in pairs(out.retries) do
    if type(k) ~= "number" or k > #out.retries then return nil, where .. ".retries: a list expected, not a map" end
  end
  if v.suspend ~= nil and type(v.suspend) ~= "boolean" then return nil, where .. ".suspend: boolean expected" end
  out.suspend = v.suspend ~= false
  local n = v.notify == nil and M.DEFAULTS.notify or v.notify
  if n == false then
    out.notify = false
  else
    if type(n) ~= "table" then return nil, where .. ".notify: {channel = ...} or false expected" end
    for k in pairs(n) do
      if k ~= "channel" then return nil, format("%s.notify.%s: unknown field (channel)", where, tostring(k)) end
    end
    local ch = n.channel or "log"
    if type(ch) == "table" then
      if type(ch.kind) ~= "string" then return nil, where .. ".notify.channel.kind: a notify kind expected (\"email\", \"log\", ...)" end
    elseif type(ch) ~= "string" then
      return nil, where .. ".notify.channel: a notify kind (\"log\") or {kind = ..., options} expected"
    end
    out.notify = { channel = ch }
  end
  return out
end

function M.configure(billing)
  if billing == nil or billing.dunning == nil then current = nil; return true end
  local cfg, err = M.check_config(billing.dunning, "billing.dunning")
  if not cfg then error(err, 2) end
  current = cfg
  return true
end

-- settings() -> billing.dunning in force (configure's, else steward.billing.config's, else the
-- defaults), with `delays`: the retries in seconds
function M.settings()
  local c = current
  if not c then
    local ok, bc = pcall(require, "steward.billing.config")
    local d = ok and type(bc) == "table" and type(bc.current) == "table" and bc.current.dunning or nil
    c = type(d) == "table" and M.check_config(d, "billing.dunning") or assert(M.check_config({}, "billing.dunning"))
  end
  local out = { retries = c.retries, suspend = c.suspend, notify = c.notify, delays = {} }
  for i, d in ipairs(c.retries) do out.delays[i] = tonumber(d) or time.parse_duration(d) end
  return out
end

-------------------------------------------------------------------------------- state
local function state_row(st, invoice)
  return domain.one(st, function(r) return domain.row(r, {}) end,
    "SELECT invoice, tenant, state, attempts, next_retry, suspended, updated FROM billing_dunning WHERE invoice = $1", invoice)
end

-- state(st, invoice) -> {invoice, tenant, state = "retrying"|"exhausted"|"paid", attempts,
-- next_retry, suspended} | false | nil, err
function M.state(st, invoice)
  if type(invoice) ~= "string" then error("dunning.state: invoice: string expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local r
  r, err = state_row(st, invoice)
  if r then r.suspended = r.suspended == 1 or r.suspended == true end
  return r, err
end

local function upsert(st, invoice, tenant, state, attempts, next_retry, now)
  return st.db:exec("INSERT INTO billing_dunning (invoice, tenant, state, attempts, next_retry, suspended, updated) " ..
    "VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (invoice) DO UPDATE SET state = $3, attempts = $4, " ..
    "next_retry = $5, updated = $6 WHERE billing_dunning.state <> 'paid'",
    invoice, tenant, state, attempts, next_retry or json.null, now)
end

local function retry_key(invoice, attempt) return format("billing.dunning.retry:%s:%d", invoice, attempt) end

-------------------------------------------------------------------------------- notify
local function invoice_of(invoice)
  local ok, inv = pcall(function() return require("steward.billing.payments").invoices().get(invoice) end)
  return ok and type(inv) == "table" and inv or nil
end

-- The tenant's address for billing: config.billing.email, else its contact.
local function tenant_email(tenant)
  local ok, tenants = pcall(require, "steward.tenants")
  if not ok or type(tenants) ~= "table" then return nil end
  local gok, r = pcall(tenants.get, tenant)
  if not gok or type(r) ~= "table" then return nil end
  local b = type(r.config) == "table" and type(r.config.billing) == "table" and r.config.billing or {}
  return type(b.email) == "string" and b.email or (type(r.contact) == "table" and r.contact.email) or nil
end

-- notify(st, {invoice, tenant, attempt, amount, currency, message, next_retry, exhausted,
-- suspended}) -> result | nil, err: one message per failed attempt (its key), branded as the
-- tenant's (steward.notify hands it to steward.tenants.branding).
function M.notify(_, f)
  local cfg = M.settings()
  if not cfg.notify then return { skipped = "billing.dunning.notify is false" } end
  local inv = invoice_of(f.invoice) or {}
  local number = inv.number or f.invoice
  local lines = { format("We could not collect %s %s for invoice %s (attempt %d)%s.", tostring(f.amount or inv.total or ""),
    tostring(f.currency or inv.currency or ""), number, f.attempt,
    type(f.message) == "string" and (": " .. f.message:gsub("%.$", "")) or "") }
  if f.next_retry then
    lines[#lines + 1] = "We will try again on " .. require("steward.runtime.store.util").format_rfc3339(f.next_retry) .. "."
  elseif f.exhausted then
    lines[#lines + 1] = f.suspended and "This was the last attempt: the account is suspended until the invoice is paid."
      or "This was the last attempt: please pay the invoice."
  end
  local to = tenant_email(f.tenant)
  local msg = { title = format("Payment failed for invoice %s", number), text = table.concat(lines, "\n"),
    severity = f.exhausted and "critical" or "warning", tenant = f.tenant,
    labels = { tenant = f.tenant, invoice = f.invoice, attempt = tostring(f.attempt) }, to = to and { to } or nil }
  local ch = cfg.notify.channel
  local opts = {}
  if type(ch) == "table" then for k, v in pairs(ch) do if k ~= "kind" then opts[k] = v end end; ch = ch.kind end
  if ch == "email" and not to and not opts.to then return { skipped = "the tenant has no billing email" } end
  if ch == "email" and opts.to == nil then opts.to = {} end
  opts.name = opts.name or "billing-dunning"
  local notify = require "steward.notify"
  local okc, channel = pcall(notify.channel, ch, opts)
  if not okc then return nil, "billing.dunning.notify.channel: " .. tostring(channel) end
  return channel:send(msg, { key = format("billing.dunning:%s:%d", f.invoice, f.attempt) })
end

-------------------------------------------------------------------------------- steps
local function announce(st, ev, now)
  local res, err = events.append(st, { ev }, { now = now })
  if not res then return nil, err end
  return res.accepted > 0
end

-- schedule(st, {invoice, tenant, attempt (the one that failed), delay (seconds)}) ->
-- {next_retry, attempt (the next)} | nil, err: arms the durable timer of the next attempt.
function M.schedule(st, f)
  if type(f) ~= "table" or type(f.invoice) ~= "string" or type(f.tenant) ~= "string" then
    error("dunning.schedule: {invoice, tenant, attempt, delay} expected", 2)
  end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local now = time.now()
  local at = now + f.delay
  local nxt = f.attempt + 1
  local cur = state_row(st, f.invoice)
  if cur and cur.state == "paid" then return { paid = true } end
  -- a handler run again after a crash finds its timer armed: the key makes it the same one
  local id
  id, err = timers.after(st, f.delay, { type = "billing.dunning.retry", tenant = f.tenant, source = SOURCE,
    data = { invoice = f.invoice, attempt = nxt } }, { key = retry_key(f.invoice, nxt), now = now })
  if not id then return nil, err end
  local res
  res, err = upsert(st, f.invoice, f.tenant, "retrying", f.attempt, at, now)
  if not res then return nil, err end
  return { next_retry = at, attempt = nxt, timer = id }
end

-- retry(st, {invoice, attempt}) -> payments.collect's result | nil, err (a paid invoice: {status = "paid"})
function M.retry(st, f)
  if type(f) ~= "table" or type(f.invoice) ~= "string" or type(f.attempt) ~= "number" then
    error("dunning.retry: {invoice, attempt} expected", 2)
  end
  local cur = state_row(st, f.invoice)
  if cur and cur.state == "paid" then return { status = "paid", invoice = f.invoice } end
  return require("steward.billing.payments").collect(st, f.invoice, { attempt = f.attempt })
end

-- exhaust(st, {invoice, tenant, attempt}) -> {suspended, reason} | nil, err: the last retry
-- failed: billing.dunning.exhausted, and the tenant suspended when `suspend` is on.
function M.exhaust(st, f)
  if type(f) ~= "table" or type(f.invoice) ~= "string" or type(f.tenant) ~= "string" then
    error("dunning.exhaust: {invoice, tenant, attempt} expected", 2)
  end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local cfg = M.settings()
  local now = time.now()
  local cur = state_row(st, f.invoice)
  if cur and cur.state == "paid" then return { paid = true } end
  local res
  res, err = upsert(st, f.invoice, f.tenant, "exhausted", f.attempt, nil, now)
  if not res then return nil, err end
  local inv = invoice_of(f.invoice) or {}
  local reason = "unpaid invoice " .. tostring(inv.number or f.invoice)
  local out = { suspended = false, reason = reason }
  if cfg.suspend then
    local tenants = require "steward.tenants"
    local ours = false
    if tenants.state(f.tenant) == "active" then
      local r, serr = tenants.suspend(f.tenant, reason)
      if r then
        ours = true
      else
        log.error("billing: dunning could not suspend the tenant", { tenant = f.tenant, invoice = f.invoice, error = tostring(serr) })
        out.error = tostring(serr)
      end
    elseif tenants.state(f.tenant) == "suspended" then
      -- suspended by dunning (this invoice's before a crash: its reason; or another unpaid
      -- invoice's, which holds it already), or by someone else for another reason: only a
      -- suspension of dunning's is lifted when the invoices are paid
      local rec = tenants.get(f.tenant)
      local held
      held, err = st.db:query("SELECT invoice FROM billing_dunning WHERE tenant = $1 AND suspended = 1", f.tenant)
      if not held then return nil, err end
      ours = #held > 0 or (type(rec) == "table" and rec.reason == reason)
    end
    out.suspended = tenants.state(f.tenant) == "suspended"
    if ours then
      res, err = st.db:exec("UPDATE billing_dunning SET suspended = 1, updated = $1 WHERE invoice = $2", now, f.invoice)
      if not res then return nil, err end
    end
  end
  local okc, aerr = announce(st, { id = "billing.dunning.exhausted:" .. f.invoice, type = "billing.dunning.exhausted",
    tenant = f.tenant, source = SOURCE, data = { invoice = f.invoice, attempts = f.attempt, suspended = out.suspended,
    reason = reason } }, now)
  if okc == nil then return nil, aerr end
  return out
end

-- paid(st, invoice, tenant) -> true | nil, err: the invoice is paid (steward.billing.payments):
-- its dunning ends, its pending retry is disarmed, and a tenant suspended for it is resumed
-- once no other exhausted invoice holds it suspended.
function M.paid(st, invoice, tenant)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local cur = state_row(st, invoice)
  if cur == nil then return nil, "dunning: cannot read the state of " .. invoice end
  if not cur or cur.state == "paid" then return true end
  local now = time.now()
  local res
  res, err = st.db:exec("UPDATE billing_dunning SET state = 'paid', next_retry = NULL, updated = $1 WHERE invoice = $2",
    now, invoice)
  if not res then return nil, err end
  timers.cancel(st, "k:" .. retry_key(invoice, (cur.attempts or 0) + 1))
  if cur.suspended == 1 or cur.suspended == true then
    local rows
    rows, err = st.db:query("SELECT invoice FROM billing_dunning WHERE tenant = $1 AND state = 'exhausted' AND suspended = 1",
      tenant)
    if not rows then return nil, err end
    if #rows == 0 then
      local tenants = require "steward.tenants"
      if tenants.state(tenant) == "suspended" then
        local r, rerr = tenants.resume(tenant)
        if not r then return nil, "tenants.resume: " .. tostring(rerr) end
      end
    end
    res, err = st.db:exec("UPDATE billing_dunning SET suspended = 0 WHERE invoice = $1", invoice)
    if not res then return nil, err end
  end
  return true
end

-- plan(attempt, delays) -> {retry_in = seconds} | {exhausted = true}: the formula the policy
-- applies by default: attempt n (1 = the first collection) is followed by the n-th delay.
function M.plan(attempt, delays)
  local d = delays[attempt]
  if d then return { retry_in = d } end
  return { exhausted = true }
end

domain.default_store(M, { "state", "notify", "schedule", "retry", "exhaust", "paid" })

return M
