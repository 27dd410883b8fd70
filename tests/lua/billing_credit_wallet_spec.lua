-- steward.billing.credit_notes with method "wallet" on a real store (STEWARD_TEST_STORE, default
-- SQLite in memory) and h4's real wallets: a credit note on a finalized invoice grants its
-- amount as credits (at the wallet's rate_amount) on the tenant's active wallet in the invoice's
-- currency, once (the top-up is keyed by the note's id); a top-up a crash interrupted is granted
-- by settle_wallets(), once; no wallet, or a wallet in another currency, is a clear refusal.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local store = require "steward.runtime.store"
local json = require "steward.json"
require("steward.log").set_level("error")

local JAN = { from = 1767225600, to = 1769904000 }
local DAY = 86400

-- ---- fixtures of the subscription side (the invoice's inputs) ----
local subs, usage = {}, {}
package.loaded["steward.billing.subscriptions"] = { get = function(_, id) return subs[id] or false end }
package.loaded["steward.billing.plans"] = { get = function(_, code, version)
  return { code = code, version = version, name = "Pro", interval = "monthly", amount = "100", currency = "EUR", charges = {} }
end }
package.loaded["steward.billing.usage"] = { query = function() return usage end }
local bconfig = require "steward.billing.config"
bconfig.current.currency = "EUR"

require "steward.runtime.store.tenants"
local st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or "sqlite::memory:"))
assert(st:migrate())
store.set_default(st)
require("steward.tenants").use(st)
local invoices = require "steward.billing.invoices"
local credit_notes = require "steward.billing.credit_notes"
local wallets = require "steward.billing.wallets"
for _, id in ipairs({ "acme", "globex" }) do
  assert(st.db:exec("INSERT INTO tenants (id, name, plan, state, contact, branding, config, limits, created, updated, version) " ..
    "VALUES ($1, $1, 'pro', 'active', '{}', '{}', $2, '{}', 0, 0, 1)", id, json.encode({ billing = { legal_name = id } })))
end
require("steward.tenants.record").forget()

local function finalized(sid, tenant)
  subs[sid] = { id = sid, tenant = tenant, plan = "pro", plan_version = 1, started = JAN.from - 40 * DAY, anchor = JAN.from,
                billing_time = "calendar", state = "active" }
  assert(invoices.build(st, sid, JAN, { now = JAN.to + 60 }))
  return assert(invoices.finalize(st, "inv_" .. sid .. "_" .. JAN.from, JAN.to + 4 * DAY))
end

local inv = finalized("s1", "acme")
t.is(tostring(inv.total), "100", "a finalized invoice of 100 EUR (no wallet yet: nothing taken)")

-- no wallet: refused, naming the method, and nothing is issued
local cn, err = credit_notes.create(st, inv.id, { amount = "10", reason = "outage", method = "wallet" })
t.ok(cn == nil and tostring(err):match("^method: tenant acme has no active EUR wallet"), "no wallet: " .. tostring(err))
t.is(#assert(credit_notes.list(st, { tenant = "acme" })), 0, "and no credit note was issued")
assert(wallets.create(st, { tenant = "acme", currency = "USD", rate_amount = "1" }, JAN.to))
cn, err = credit_notes.create(st, inv.id, { amount = "10", reason = "outage", method = "wallet" })
t.ok(cn == nil and tostring(err):match("no active EUR wallet"), "a wallet in another currency is not it: " .. tostring(err))

-- a wallet whose credit costs 2 EUR: 25 EUR credited is 12.5 credits granted
local w = assert(wallets.create(st, { tenant = "acme", currency = "EUR", rate_amount = "2", paid_credits = "1" }, JAN.to))
cn = assert(credit_notes.create(st, inv.id, { amount = "25", reason = "outage credit", method = "wallet" }, JAN.to + 5 * DAY))
t.is(cn.method, "wallet", "a wallet credit note")
t.like(cn.number, "^CN%-", "numbered in the credit note series: " .. tostring(cn.number))
t.is(cn.wallet.id, w.id, "it names the wallet credited")
t.is(tostring(cn.wallet.credits), "12.5", "25 EUR at 2 EUR a credit: 12.5 credits")
t.is(tostring(cn.remaining), "0", "nothing left to take off later invoices: the wallet holds it")
w = assert(wallets.get(st, w.id))
t.is(tostring(w.balance), "13.5", "the wallet: 1 paid + 12.5 granted")
local granted = 0
for _, x in ipairs(assert(wallets.transactions(st, w.id))) do
  if x.kind == "granted" and x.ref == "credit_note:" .. cn.id then granted = granted + 1 end
end
t.is(granted, 1, "one granted transaction, referencing the credit note")
t.is(tostring(assert(credit_notes.creditable(st, inv))), "75", "the invoice has 75 left creditable")
local back = assert(credit_notes.get(st, cn.id))
t.is(tostring(back.wallet.credits), "12.5", "the stored note reads back its wallet and credits")

-- idempotent per note: crediting again, or a settle run, grants nothing more
assert(credit_notes.credit_wallet(st, back, JAN.to + 6 * DAY))
local s = assert(credit_notes.settle_wallets(st, JAN.to + 6 * DAY))
t.is(s.settled, 0, "settle_wallets: nothing missing")
t.is(tostring(assert(wallets.get(st, w.id)).balance), "13.5", "still 13.5 credits: never granted twice")

-- a crash between the note and its top-up: the note exists, settle_wallets grants it once
local real = wallets.top_up
wallets.top_up = function() return nil, "the process died here" end
local cn2 = assert(credit_notes.create(st, inv.id, { amount = "5", reason = "second", method = "wallet" }, JAN.to + 7 * DAY))
wallets.top_up = real
t.is(tostring(assert(wallets.get(st, w.id)).balance), "13.5", "the interrupted top-up granted nothing yet")
s = assert(credit_notes.settle_wallets(st, JAN.to + 8 * DAY))
t.is(s.settled, 1, "settle_wallets grants the missing top-up")
t.is(tostring(assert(wallets.get(st, w.id)).balance), "16", "13.5 + 2.5 credits")
s = assert(credit_notes.settle_wallets(st, JAN.to + 9 * DAY))
t.is(s.settled, 0, "and a second run finds nothing (" .. cn2.number .. " granted once)")

-- bad input still names the field
cn, err = credit_notes.create(st, inv.id, { amount = "5", reason = "x", method = "cash" })
t.ok(cn == nil and err == "method: credit, refund or wallet expected", "an unknown method: " .. tostring(err))
t.done()
