-- steward.billing.wallets on a real store (STEWARD_TEST_STORE, default SQLite): prepaid credits
-- at a rate, top-ups once per key, consumption once per invoice (asking again answers the
-- same amount), never below zero, every movement a transaction row with the balance after it.
local t = require "steward.tap"
local decimal = require "steward.decimal"

local D = decimal.new
local T0 = 1767225600
local bs = assert(loadfile("tests/support/billing_store.lua"))()
local st = bs.st
local wallets = require "steward.billing.wallets"

local bad = {
  { { currency = "EUR" }, "^tenant: required" },
  { { tenant = "acme", rate_amount = "0" }, "^rate_amount: greater than 0" },
  { { tenant = "acme", rate_amount = 0.5 }, "^rate_amount: 0.5 is a number with a fraction" },
  { { tenant = "acme", paid_credits = "1.000001" }, "^paid_credits: at most 5 decimals" },
  { { tenant = "acme", currency = "EURO" }, "^currency: " },
}
for _, c in ipairs(bad) do
  local _, e = wallets.create(st, c[1])
  t.like(e, c[2], "wallet refused: " .. tostring(e))
end

local w = assert(wallets.create(st, { tenant = "acme", currency = "EUR", rate_amount = "0.50", paid_credits = "100",
  granted_credits = "20" }, T0))
t.ok(tostring(w.balance) == "120" and tostring(w.balance_amount) == "60", "created with 100 paid + 20 granted credits at 0.50 EUR")
local _, err = wallets.create(st, { tenant = "acme", currency = "EUR" })
t.like(err, "^exists: acme has an active EUR wallet", "one active wallet per tenant and currency")
w = assert(wallets.top_up(st, w.id, { paid_credits = "10", key = "order-7" }, T0 + 1))
w = assert(wallets.top_up(st, w.id, { paid_credits = "10", key = "order-7" }, T0 + 2))
t.is(tostring(w.balance), "130", "a top-up with the same key counts once")
_, err = wallets.top_up(st, w.id, {})
t.like(err, "^paid_credits: ", "a top-up of nothing is refused")

-- consumption: 25.25 EUR = 50.5 credits
local taken = assert(wallets.consume(st, "acme", D("25.25"), "inv-1", nil, T0 + 10))
t.is(tostring(taken), "25.25", "consume: the amount owed, from the credits")
t.is(tostring(wallets.get(st, w.id).balance), "79.5", "130 - 50.5 credits")
taken = assert(wallets.consume(st, "acme", D("25.25"), "inv-1", nil, T0 + 11))
t.is(tostring(taken), "25.25", "the same invoice again: the same amount, nothing more taken")
t.is(tostring(wallets.get(st, w.id).balance), "79.5", "balance unchanged")
-- more than the balance: all of it (39.75 EUR), never below zero
taken = assert(wallets.consume(st, "acme", D("100"), "inv-2", "EUR", T0 + 12))
t.is(tostring(taken), "39.75", "owed more than the credits: what they are worth")
t.ok(wallets.get(st, w.id).balance:is_zero(), "balance zero, never negative")
t.ok(assert(wallets.consume(st, "acme", D("5"), "inv-3", nil, T0 + 13)):is_zero(), "an empty wallet takes nothing")
t.ok(assert(wallets.consume(st, "nobody", D("5"), "inv-4")):is_zero(), "a tenant without a wallet: nothing taken")

-- a rate that does not divide: the credits round up to 5 decimals, bounded by the balance
local w3 = assert(wallets.create(st, { tenant = "globex", currency = "USD", rate_amount = "3", granted_credits = "10" }, T0))
taken = assert(wallets.consume(st, "globex", D("1.00"), "g-1", nil, T0 + 1))
t.ok(tostring(taken) == "1" and tostring(wallets.get(st, w3.id).balance) == "9.66666",
  "1.00 USD at 3 per credit: 0.33334 credits (rounded up), 9.66666 left")

local txs = assert(wallets.transactions(st, w.id))
local kinds = {}
for i, x in ipairs(txs) do kinds[i] = x.kind .. ":" .. tostring(x.credits) .. "->" .. tostring(x.balance_after) end
t.is(table.concat(kinds, " "), "purchased:100->100 granted:20->120 purchased:10->130 consumed:50.5->79.5 consumed:79.5->0",
  "transactions: each movement with the balance after it")
-- five invoices consuming at once: the balance and the transactions agree, whatever the order
local task = require "steward.task"
local w5 = assert(wallets.create(st, { tenant = "initech", currency = "EUR", granted_credits = "30" }, T0))
local got, hs = {}, {}
for i = 1, 5 do
  hs[i] = task.spawn(function() got[i] = { wallets.consume(st, "initech", D("10"), "c-" .. i, nil, T0 + i) } end)
end
for i = 1, 5 do hs[i]:join() end
local sum = D(0)
for i = 1, 5 do if got[i][1] then sum = sum + got[i][1] end end
local consumed, tsum = 0, D(0)
for _, x in ipairs(assert(wallets.transactions(st, w5.id))) do
  if x.kind == "consumed" then consumed = consumed + 1; tsum = tsum + x.credits end
end
local left = wallets.get(st, w5.id).balance
t.ok(sum == tsum and left == D(30) - tsum and left:sign() >= 0 and sum <= D(30),
  "concurrent consumption: what was taken (" .. tostring(sum) .. ") = the transactions = 30 - the balance (" .. tostring(left) .. ")")
t.raises(function() wallets.consume(st, "acme", 5, "x") end, "amount: decimal expected", "a Lua number amount raises")
bs.close()
t.done()
