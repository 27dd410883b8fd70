-- steward.billing.coupons on a real store (STEWARD_TEST_STORE, default SQLite): fixed and
-- percentage coupons, once / recurring / forever; what for_invoice takes off a subtotal
-- (fixed first, then percentages on what is left, never more than the subtotal, rounded only
-- where a percentage needs it), consumption once per invoice, a once fixed coupon carrying its
-- remainder to the next invoices, a recurring one counting its periods down.
local t = require "steward.tap"
local decimal = require "steward.decimal"

local D = decimal.new
local T0 = 1767225600
local bs = assert(loadfile("tests/support/billing_store.lua"))()
local st = bs.st
local coupons = require "steward.billing.coupons"

local bad = {
  { { code = "x", kind = "fixed" }, "^amount: required" },
  { { code = "x", kind = "fixed", amount = "10.005", currency = "EUR" }, "^amount: at most 2 decimals in EUR" },
  { { code = "x", kind = "percentage", percentage = "120" }, "^percentage: at most 100" },
  { { code = "x", kind = "percentage", percentage = "10", amount = "1" }, "^amount: only for a fixed coupon" },
  { { code = "x", kind = "percentage", percentage = "10", frequency = "recurring" }, "^duration: required" },
  { { code = "x", kind = "gift" }, "^kind: fixed or percentage" },
  { { code = "x", kind = "fixed", amount = "5", frequency = "weekly" }, "^frequency: once, recurring or forever" },
}
for _, c in ipairs(bad) do
  local _, e = coupons.create(st, c[1])
  t.like(e, c[2], "coupon refused: " .. tostring(e))
end

assert(coupons.create(st, { code = "WELCOME50", kind = "fixed", amount = "50", currency = "EUR" }, T0))
assert(coupons.create(st, { code = "TENOFF", kind = "percentage", percentage = "10", frequency = "recurring", duration = 2 }, T0))
assert(coupons.create(st, { code = "LOYAL", kind = "percentage", percentage = "3.5", frequency = "forever" }, T0))
local _, err = coupons.create(st, { code = "LOYAL", kind = "percentage", percentage = "1" })
t.like(err, "^exists", "a taken code is refused")

local a1 = assert(coupons.apply(st, "acme", "TENOFF", T0 + 1))
local a2 = assert(coupons.apply(st, "acme", "WELCOME50", T0 + 2))
_, err = coupons.apply(st, "acme", "WELCOME50", T0 + 3)
t.like(err, "^exists: the coupon WELCOME50 is applied to acme already", "applied twice: refused")
_, err = coupons.apply(st, "acme", "NOPE")
t.like(err, "^coupon: no coupon NOPE", "an unknown coupon: refused naming it")

local function show(list)
  local out = {}
  for i, x in ipairs(list) do out[i] = x.coupon .. "=" .. tostring(x.amount) end
  return table.concat(out, " ")
end
-- invoice 1: 80.00 EUR: 50 off first (fixed), then 10% of the 30 left
local l1 = assert(coupons.for_invoice(st, "acme", D("80.00"), "EUR"))
t.is(show(l1), "WELCOME50=50 TENOFF=3", "fixed first, then the percentage of what is left")
for _, x in ipairs(l1) do assert(coupons.consume(st, x.applied_coupon_id, "inv-1", x.amount, T0 + 10)) end
t.is(coupons.consume(st, a2.id, "inv-1", D(50), T0 + 11), false, "consumed again for the same invoice: nothing more")
local now = assert(coupons.applied(st, { tenant = "acme" }))
t.ok(now[1].periods_remaining == 1 and now[2].state == "terminated" and now[2].amount_remaining:is_zero(),
  "the fixed coupon is used up (terminated); the recurring one has one period left")

-- invoice 2: a fixed coupon carries its remainder; a USD invoice skips an EUR coupon
assert(coupons.apply(st, "globex", "WELCOME50", T0))
local g = assert(coupons.for_invoice(st, "globex", D("20"), "EUR"))
t.is(show(g), "WELCOME50=20", "never more than the subtotal")
assert(coupons.consume(st, g[1].applied_coupon_id, "g-1", g[1].amount, T0 + 20))
g = assert(coupons.for_invoice(st, "globex", D("100"), "EUR"))
t.is(show(g), "WELCOME50=30", "the remainder (30) on the next invoice")
t.is(show(assert(coupons.for_invoice(st, "globex", D("100"), "USD"))), "", "a fixed EUR coupon does not apply to a USD invoice")
_, err = coupons.consume(st, g[1].applied_coupon_id, "g-2", D("31"), T0 + 21)
t.like(err, "^invalid: 31 is more than the coupon's 30", "consuming more than is left: refused")

-- recurring counts down; percentages round half-up at the currency's scale
local l2 = assert(coupons.for_invoice(st, "acme", D("33.35"), "EUR"))
t.is(show(l2), "TENOFF=3.34", "10% of 33.35 = 3.335, rounded half-up to 3.34")
assert(coupons.consume(st, l2[1].applied_coupon_id, "inv-2", l2[1].amount, T0 + 30))
t.is(show(assert(coupons.for_invoice(st, "acme", D("10"), "EUR"))), "", "after its two periods the recurring coupon is done")
t.is(assert(coupons.applied(st, { tenant = "acme", state = "active" }))[1], nil, "no active coupon left for acme")
assert(coupons.apply(st, "acme", "LOYAL", T0 + 40))
for i = 1, 3 do
  local l = assert(coupons.for_invoice(st, "acme", D("1000"), "JPY"))
  assert(coupons.consume(st, l[1].applied_coupon_id, "inv-f" .. i, l[1].amount, T0 + 41 + i))
  if i == 3 then t.is(show(l), "LOYAL=35", "forever: every invoice (3.5% of 1000 JPY = 35, JPY has no decimals)") end
end
-- invoices consuming one fixed coupon at once: its uses add up to what it lost
local task = require "steward.task"
assert(coupons.create(st, { code = "BIG", kind = "fixed", amount = "100", currency = "EUR" }, T0))
local ap = assert(coupons.apply(st, "initech", "BIG", T0))
local hs, res = {}, {}
for i = 1, 5 do
  hs[i] = task.spawn(function() res[i] = { coupons.consume(st, ap.id, "c-" .. i, D("15"), T0 + i) } end)
end
for i = 1, 5 do hs[i]:join() end
local n = 0
for i = 1, 5 do if res[i][1] == true then n = n + 1 end end
local rem = assert(coupons.applied(st, { tenant = "initech" }))[1].amount_remaining
local uses = st.db:query("SELECT COUNT(*) AS n FROM billing_coupon_uses WHERE applied_coupon = $1", ap.id)
t.ok(tonumber(uses[1].n) == n and rem == D(100) - D(15) * n,
  string.format("concurrent uses: %d recorded, %s left (100 - 15 x %d)", n, tostring(rem), n))
t.raises(function() coupons.for_invoice(st, "acme", 10, "EUR") end, "subtotal: decimal expected", "a Lua number subtotal raises")

bs.close()
t.done()
