-- steward.billing.repl: the REPL's `billing` table (docs/repl.md, docs/billing/subscriptions.md):
-- plans, subscriptions, usage, coupons and wallets as tables of rows; changes to a subscription
-- or a wallet in admin sessions only. The other billing parts add their helpers here, one line
-- each, at the end of install.
local plans = require "steward.billing.plans"
local subscriptions = require "steward.billing.subscriptions"
local usage = require "steward.billing.usage"
local coupons = require "steward.billing.coupons"
local wallets = require "steward.billing.wallets"
local V = require "steward.billing.values"

local type, ipairs, tostring, error, setmetatable = type, ipairs, tostring, error, setmetatable

local M = {}

M.HELP = {
  { "billing.plans() / billing.plan(code)", "plans (latest versions) / one plan with its charges" },
  { "billing.subscriptions{tenant=, state=, plan=}", "subscriptions: id, tenant, plan@version, state, started, trial, ending" },
  { "billing.subscription(id)", "one subscription and its history" },
  { "billing.history{from=, to=, tenant=}", "subscription changes (what MRR reads)" },
  { "billing.due()", "the periods the invoices still have to bill" },
  { "billing.usage{subscription=, code=, from=, to=}", "recorded usage events" },
  { "billing.wallets{tenant=} / billing.coupons()", "wallets with balances / coupons" },
  { "billing.subscribe{tenant=, plan=, ...} / .upgrade(id, plan) / .downgrade / .terminate / .cancel",
    "change subscriptions (admin)" },
  { "billing.top_up(wallet, {paid_credits=, granted_credits=})", "add credits (admin)" },
}

for _, l in ipairs(require("steward.billing.invoices_repl").HELP) do M.HELP[#M.HELP + 1] = l end -- h5: invoices

local function iso(t) return t and V.rfc3339(t) or nil end

-- install(h, {rows = helpers.rows, admin = fn(what), st = fn() -> store}): adds h.billing.
function M.install(h, opts)
  local st, rows = opts.st, opts.rows
  local b = {}
  local function admin(what, fn)
    return function(...)
      opts.admin("billing." .. what)
      return fn(st(), ...)
    end
  end

  function b.plans()
    local list, err = plans.list(st())
    if not list then return nil, err end
    local out = {}
    for i, p in ipairs(list) do
      out[i] = { code = p.code, version = p.version, interval = p.interval, amount = tostring(p.amount),
                 currency = p.currency, advance = p.pay_in_advance or nil, trial_days = p.trial_days, charges = #p.charges }
    end
    return rows(out, { "code", "version", "interval", "amount", "currency", "advance", "trial_days", "charges" })
  end

  function b.plan(code, version)
    local p, err = plans.get(st(), code, version)
    if not p then return nil, err or ("no plan " .. tostring(code)) end
    return plans.view(p)
  end

  b.subscriptions = function(f)
    if f ~= nil and type(f) ~= "table" then error("billing.subscriptions: filter: table expected", 2) end
    local list, err = subscriptions.list(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, s in ipairs(list) do
      out[i] = { id = s.id, tenant = s.tenant, plan = s.plan .. "@" .. s.plan_version, state = s.state,
                 started = iso(s.started), trial_ends = iso(s.trial_ends), ending = iso(s.ending), next = s.next }
    end
    return rows(out, { "id", "tenant", "plan", "state", "started", "trial_ends", "ending", "next" })
  end

  function b.subscription(id)
    if type(id) ~= "string" then error("billing.subscription: id: string expected", 2) end
    local s, err = subscriptions.get(st(), id)
    if not s then return nil, err or ("no subscription " .. id) end
    local out = subscriptions.view(s)
    local hist = subscriptions.history(st(), { subscription = id }) or {}
    for i, x in ipairs(hist) do hist[i] = { at = iso(x.at), change = x.change, plan = x.plan, amount = tostring(x.amount) } end
    out.history = rows(hist, { "at", "change", "plan", "amount" })
    return out
  end

  function b.history(f)
    local list, err = subscriptions.history(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, x in ipairs(list) do
      out[i] = { at = iso(x.at), tenant = x.tenant, subscription = x.subscription, change = x.change, plan = x.plan,
                 previous_plan = x.previous_plan, amount = tostring(x.amount), interval = x.interval }
    end
    return rows(out, { "at", "tenant", "subscription", "change", "plan", "previous_plan", "amount", "interval" })
  end

  function b.due(now)
    local list, err = subscriptions.due(st(), now)
    if not list then return nil, err end
    local out = {}
    for i, d in ipairs(list) do
      out[i] = { subscription = d.subscription, tenant = d.tenant, plan = d.plan, kind = d.kind,
                 from = iso(d.period.from), to = iso(d.period.to) }
    end
    return rows(out, { "subscription", "tenant", "plan", "kind", "from", "to" })
  end

  function b.usage(f)
    local list, err = usage.query(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, u in ipairs(list) do
      local props = require("steward.json").encode(u.properties)
      out[i] = { timestamp = iso(u.timestamp), code = u.code, transaction_id = u.transaction_id, properties = props }
    end
    return rows(out, { "timestamp", "code", "transaction_id", "properties" })
  end

  function b.wallets(f)
    local list, err = wallets.list(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, w in ipairs(list) do
      out[i] = { id = w.id, tenant = w.tenant, currency = w.currency, rate = tostring(w.rate_amount),
                 credits = tostring(w.balance), state = w.state }
    end
    return rows(out, { "id", "tenant", "currency", "rate", "credits", "state" })
  end

  function b.coupons()
    local list, err = coupons.list(st())
    if not list then return nil, err end
    local out = {}
    for i, c in ipairs(list) do
      out[i] = { code = c.code, kind = c.kind, amount = c.amount and tostring(c.amount) or nil,
                 percentage = c.percentage and tostring(c.percentage) or nil, frequency = c.frequency, duration = c.duration }
    end
    return rows(out, { "code", "kind", "amount", "percentage", "frequency", "duration" })
  end

  b.subscribe = admin("subscribe", subscriptions.create)
  b.upgrade = admin("upgrade", subscriptions.upgrade)
  b.downgrade = admin("downgrade", subscriptions.downgrade)
  b.terminate = admin("terminate", subscriptions.terminate)
  b.cancel = admin("cancel", subscriptions.cancel)
  b.top_up = admin("top_up", wallets.top_up)
  -- the other billing parts add their helpers below, one line each
  require("steward.billing.invoices_repl").install(b, { st = st, rows = rows, admin = opts.admin }) -- h5: invoices

  h.billing = setmetatable(b, { __index = function(_, k)
    error("billing." .. tostring(k) .. ": no such helper (help() lists them)", 2)
  end })
end

return M
