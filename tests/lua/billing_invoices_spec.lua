-- steward.billing.invoices and credit_notes on a real store (STEWARD_TEST_STORE, default SQLite
-- in memory; tests/e2e/billing_invoices_pg.t runs it on PostgreSQL). The subscription side
-- (h4's subscriptions, plans, usage, metrics, wallets, coupons) is a fixture here: this spec is
-- about the invoice's life — built idempotently, rebuilt while draft, finalized with a gap-free
-- number (also with 60 finalizations at once), paid, voided keeping its number, credited.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local task = require "steward.task"
local store = require "steward.runtime.store"
local json = require "steward.json"
require("steward.log").set_level("error")

local D = decimal.new
local JAN = { from = 1767225600, to = 1769904000 }
local FEB = { from = 1769904000, to = 1772323200 }
local DAY = 86400

-- ---- fixtures of h4's modules ----
local subs, usage, wallet_taken = {}, {}, {}
local wallet_balance = { acme = D("0") }
package.loaded["steward.billing.subscriptions"] = { get = function(_, id) return subs[id] or false end }
package.loaded["steward.billing.plans"] = { get = function(_, code, version)
  if code == "seats" then
    return { code = code, version = version, name = "Seats", interval = "monthly", amount = "0", currency = "EUR",
             charges = { { id = "seats", metric = "seats", model = "standard", properties = { amount = "10" } } } }
  end
  return { code = code, version = version, name = "Pro", interval = "monthly", amount = "100", currency = "EUR",
           charges = { { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.05" } } } }
end }
package.loaded["steward.billing.metrics"] = { get = function(_, code)
  if code == "seats" then return { code = code, name = "Seats", aggregation = "unique_count", field = "user", recurring = true } end
  return { code = code, name = "API calls", aggregation = "count" }
end }
package.loaded["steward.billing.usage"] = { query = function(_, q)
  local out = {}
  for _, e in ipairs(usage) do
    if e.subscription == q.subscription and e.code == q.code and e.timestamp >= q.from and e.timestamp < q.to then
      out[#out + 1] = e
    end
  end
  return out
end }
package.loaded["steward.billing.wallets"] = { consume = function(_, tenant, amount, invoice)
  if wallet_taken[invoice] then return wallet_taken[invoice] end
  local take = decimal.min(wallet_balance[tenant] or D(0), amount)
  wallet_balance[tenant] = (wallet_balance[tenant] or D(0)) - take
  wallet_taken[invoice] = take
  return take
end }
package.loaded["steward.billing.config"] = { current = { currency = "EUR", net_payment_days = 15, grace_seconds = 3 * DAY,
  taxes = { rates = { { country = "FR", rate = "20", name = "TVA" } } }, invoices = { series = "INV" } } }

require "steward.runtime.store.tenants"
require "steward.billing.invoices_schema"
local st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or "sqlite::memory:"))
assert(st:migrate())
store.set_default(st)
local tenants = require "steward.tenants"
tenants.use(st)
local invoices = require "steward.billing.invoices"
local credit_notes = require "steward.billing.credit_notes"

-- a tenant with its billing details (taxes follow its country)
local record = require "steward.tenants.record"
assert(st.db:exec("INSERT INTO tenants (id, name, plan, state, contact, branding, config, limits, created, updated, version) " ..
  "VALUES ('acme', 'Acme', 'pro', 'active', '{}', '{}', $1, '{}', 0, 0, 1)",
  json.encode({ billing = { country = "FR", legal_name = "Acme SAS", email = "billing@acme.example" } })))
record.forget()

local function sub(id, over)
  local s = { id = id, tenant = "acme", plan = "pro", plan_version = 1, started = JAN.from - 40 * DAY, anchor = JAN.from,
              billing_time = "calendar", state = "active" }
  for k, v in pairs(over or {}) do s[k] = v end
  subs[id] = s
  return s
end
local function use(sid, n, at, prefix)
  for i = 1, n do
    usage[#usage + 1] = { subscription = sid, code = "api_calls", transaction_id = (prefix or "t") .. i, timestamp = at + i,
                          properties = {} }
  end
end

sub("s1")
use("s1", 200, JAN.from + DAY)

-- build: idempotent, same id, same bytes
local inv, changed = assert(invoices.build(st, "s1", JAN, { now = JAN.to + 60 }))
t.ok(changed, "the first build creates the draft")
t.is(inv.state, "draft", "a draft")
t.is(inv.number, nil, "without a number")
t.is(tostring(inv.subtotal), "110", "fee 100 + 200 calls at 0.05")
t.is(tostring(inv.tax_total), "22", "TVA 20 % from the tenant's country")
t.is(tostring(inv.total), "132", "total")
local first = invoices.json(inv)
local again, changed2 = assert(invoices.build(st, "s1", JAN, { now = JAN.to + 120 }))
t.is(again.id, inv.id, "building again is the same invoice")
t.ok(not changed2, "unchanged when the usage is")
t.is(invoices.json(again), first, "byte-identical canonical JSON")
t.is(invoices.json(assert(invoices.get(st, inv.id))), first, "and the stored invoice reads back byte-identical")
t.like(first, '"total":"132.00"', "amounts at the currency's scale, as strings")
t.like(first, '"from":"2026%-01%-01T00:00:00Z"', "times in RFC 3339")

-- late usage inside the grace window: the draft is rebuilt
use("s1", 20, JAN.to - 100, "late")
local r = assert(invoices.refresh(st, inv.id, JAN.to + DAY))
t.is(tostring(r.subtotal), "111", "refresh: 220 calls now")
t.isnt(invoices.json(r), first, "the draft changed")

-- finalize: a number, due date, customer snapshot
local f = assert(invoices.finalize(st, inv.id, JAN.to + 3 * DAY))
t.is(f.state, "finalized", "finalized")
t.is(f.number, "INV-000001", "the first number of the series")
t.is(f.due, JAN.to + 3 * DAY + 15 * DAY, "due after net_payment_days")
t.is(f.customer.name, "Acme SAS", "the customer as it was at finalization")
local again_f, ch = assert(invoices.finalize(st, inv.id))
t.ok(not ch and again_f.number == "INV-000001", "finalizing again changes nothing")
use("s1", 50, JAN.to - 60, "later")
local same = assert(invoices.build(st, "s1", JAN))
t.is(invoices.json(same), invoices.json(f), "a finalized invoice is never rebuilt")
local ok, err = invoices.refresh(st, inv.id)
t.ok(not ok and err:match("^invalid: .* only a draft"), "refresh refuses a finalized invoice: " .. tostring(err))

-- pay
local ok2, perr = invoices.pay(st, inv.id, { id = "pi_1", provider = "stripe", amount = "1" })
t.ok(not ok2 and perr:match("^amount: 1 does not settle"), "a payment of another amount is refused: " .. tostring(perr))
local p = assert(invoices.pay(st, inv.id, { id = "pi_1", provider = "stripe" }, JAN.to + 4 * DAY))
t.is(p.state, "paid", "paid")
local _, pch = assert(invoices.pay(st, inv.id, { id = "pi_1", provider = "stripe" }))
t.ok(not pch, "the same payment again changes nothing")
ok2, perr = invoices.pay(st, inv.id, { id = "pi_2" })
t.ok(not ok2 and perr:match("^invalid"), "another payment of a paid invoice is refused")
ok2, perr = invoices.void(st, inv.id, "mistake")
t.ok(not ok2 and perr:match("credit a paid one"), "a paid invoice is not voided: " .. tostring(perr))

-- credit notes: at most what is left, numbered in their own series
ok2, perr = credit_notes.create(st, inv.id, { amount = "200", reason = "too much" })
t.ok(not ok2 and perr:match("^amount: 200.00 is more than the 133.20 left"), "more than the invoice is refused: " .. tostring(perr))
ok2, perr = credit_notes.create(st, inv.id, { amount = "1.234", reason = "x" })
t.ok(not ok2 and perr:match("^amount: .* more decimals than EUR"), "more decimals than the currency is refused")
ok2, perr = credit_notes.create(st, inv.id, { lines = { { line = "nope", amount = "1" } }, reason = "x" })
t.ok(not ok2 and perr:match("^lines%[1%]%.line: invoice .* has no line nope"), "an unknown line is named")
local cn = assert(credit_notes.create(st, inv.id, { lines = { { line = "subscription", amount = "50" } },
  reason = "outage credit" }, JAN.to + 5 * DAY))
t.is(cn.number, "CN-000001", "the credit note's own series")
t.is(tostring(cn.total), "60", "50 + its TVA 10")
t.is(tostring(cn.remaining), "60", "a credit: all of it left for the next invoices")
local rf = assert(credit_notes.create(st, inv.id, { amount = "3.20", reason = "refund", method = "refund" }))
t.is(rf.number, "CN-000002", "gap-free in its series")
t.is(#assert(credit_notes.refunds_pending(st, "acme")), 1, "the refund waits for the payment provider")
assert(credit_notes.refunded(st, rf.id, "re_1"))
t.is(#assert(credit_notes.refunds_pending(st, "acme")), 0, "refunded() marks it done")
t.is(tostring(assert(credit_notes.creditable(st, p))), "70", "133.20 - 60 - 3.20 = 70 left creditable")

-- the next invoice takes the credit note's credit, then the wallet's
wallet_balance.acme = D("30")
local feb = assert(invoices.build(st, "s1", FEB, { now = FEB.to }))
t.is(tostring(feb.total), "120", "February before credits: 100 + TVA 20")
local ff = assert(invoices.finalize(st, feb.id, FEB.to + 3 * DAY))
t.is(ff.number, "INV-000002", "the next number")
t.is(#ff.credits, 2, "two credits")
t.is(ff.credits[1].kind .. " " .. tostring(ff.credits[1].amount), "credit_note 60", "the credit note's 60 first")
t.is(ff.credits[2].kind .. " " .. tostring(ff.credits[2].amount), "wallet 30", "then 30 from the wallet")
t.is(tostring(ff.total), "30", "120 - 90")
t.is(tostring(assert(credit_notes.get(st, cn.id)).remaining), "0", "the credit note is used up")
t.ok(require("steward.billing.invoice_build").check(ff), "the invariants hold")

-- a credit is never spent twice: a use computed from a stale read rolls its batch back
local c3 = assert(credit_notes.create(st, inv.id, { amount = "10", reason = "goodwill" }))
local stale = assert(credit_notes.get(st, c3.id))
t.ok(st.db:batch(credit_notes.use_statements(stale, D("6"), "inv-x1")), "a use from a fresh read applies")
local okb, berr = st.db:batch(credit_notes.use_statements(stale, D("6"), "inv-x2"))
t.ok(not okb, "the same read used again fails its whole batch (" .. tostring(berr) .. ")")
t.is(tostring(assert(credit_notes.get(st, c3.id)).remaining), "4", "10 - 6, once")

-- void keeps the number
local v = assert(invoices.void(st, feb.id, "issued by mistake", FEB.to + 4 * DAY))
t.is(v.state .. " " .. v.number, "voided INV-000002", "voided, its number kept")
ok2, perr = invoices.finalize(st, feb.id)
t.ok(not ok2 and perr:match("voided"), "a voided invoice is not finalized again")

-- in-advance: fee of the period starting, usage of the one that ended; and the final invoice
-- 60 finalizations at once: numbers 3..62, none twice, none missing
local hs = {}
for i = 1, 60 do
  sub("c" .. i, { started = JAN.from })
  hs[i] = task.spawn(function()
    local d = assert(invoices.build(st, "c" .. i, JAN, { now = JAN.to }))
    return assert(invoices.finalize(st, d.id, JAN.to + 4 * DAY))
  end)
end
local seen, nums = {}, {}
for i = 1, 60 do
  local okj, res = hs[i]:join()
  if okj and res then seen[res.number] = (seen[res.number] or 0) + 1; nums[#nums + 1] = res.number
  else t.diag("finalize " .. i .. ": " .. tostring(res)) end
end
local gapless = #nums == 60
for n = 3, 62 do if seen[string.format("INV-%06d", n)] ~= 1 then gapless = false end end
t.ok(gapless, "60 concurrent finalizations took INV-000003 .. INV-000062, each once")

local list = assert(invoices.list(st, { tenant = "acme", state = "finalized", limit = 1000 }))
t.is(#list, 60, "list by tenant and state")
t.is(#assert(invoices.list(st, { subscription = "s1" })), 2, "list by subscription")

-- a recurring metric carries its state from one period to the next: seats added in January
-- are still billed in February, until removed
sub("r1", { plan = "seats", started = JAN.from, anchor = JAN.from })
local function seat(user, op, at, id)
  usage[#usage + 1] = { subscription = "r1", code = "seats", transaction_id = id, timestamp = at,
                        properties = { user = user, operation_type = op } }
end
seat("ann", "add", JAN.from + DAY, "s1")
seat("bob", "add", JAN.from + 2 * DAY, "s2")
seat("ann", "remove", FEB.from + DAY, "s3")
seat("cyd", "add", FEB.from + 2 * DAY, "s4")
local rj = assert(invoices.build(st, "r1", JAN, { now = JAN.to }))
t.is(tostring(rj.lines[#rj.lines].units), "2", "January: ann and bob")
local rf2 = assert(invoices.build(st, "r1", FEB, { now = FEB.to }))
t.is(tostring(rf2.lines[#rf2.lines].units), "2", "February: bob carried over, ann removed, cyd added")
t.is(tostring(rf2.subtotal), "20", "2 seats at 10")

-- misuse names the argument
t.raises(function() invoices.build(st, "s1", { from = 2, to = 1 }) end, "period", "a bad period is refused")
t.raises(function() invoices.void(st, "x", "") end, "reason", "a void without a reason is refused")
ok2, perr = invoices.build(st, "nope", JAN)
t.ok(not ok2 and perr:match("not found"), "an unknown subscription: not found")

-- the canonical JSON of s1's invoices, for tests/e2e/billing_invoices_pg.t to compare backends
local out = os.getenv("BILLING_JSON_OUT")
if out then
  local f = assert(io.open(out, "w"))
  for _, i in ipairs(assert(invoices.list(st, { subscription = "s1" }))) do f:write(invoices.json(i), "\n") end
  f:close()
end

st:close()
t.done()
