-- steward.billing.revenue: ASC 606 schedules (ratable subscription fees, point-in-time usage),
-- voids and credit notes, the paid basis, the monthly report's reconciliation, and properties
-- over random periods and random invoice sets: every schedule sums exactly to what it spreads,
-- every month reconciles, and over the whole life Σ recognized = Σ invoiced.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local revenue = require "steward.billing.revenue"

local D = decimal.new
local DAY = 86400

-- 2026-01-01T00:00:00Z and friends, computed the way revenue does not (os.time on a UTC table
-- would read local time): days since the epoch by the proleptic Gregorian rule.
local function at(y, m, d)
  local a = math.floor((14 - m) / 12)
  local yy, mm = y + 4800 - a, m + 12 * a - 3
  local jdn = d + math.floor((153 * mm + 2) / 5) + 365 * yy + math.floor(yy / 4) - math.floor(yy / 100)
    + math.floor(yy / 400) - 32045
  return (jdn - 2440588) * DAY
end

local function by_month(list)
  local out = {}
  for _, e in ipairs(list) do
    out[e.month] = (out[e.month] or decimal.zero) + e.amount
  end
  local s = {}
  for m, v in pairs(out) do s[m] = decimal.string(v) end
  return s
end

local function total(list)
  local s = decimal.zero
  for _, e in ipairs(list) do s = s + e.amount end
  return s
end

local function invoice(o)
  local inv = { id = o.id or "inv-1", tenant = o.tenant or "acme", currency = o.currency or "USD",
    state = o.state or "finalized", period = o.period, finalized = o.finalized, paid = o.paid, voided = o.voided,
    lines = o.lines, subtotal = D(o.subtotal), discount_total = o.discount_total and D(o.discount_total) or nil }
  return inv
end

local function main()
  -- A yearly fee paid in advance: 1,200.00 over 2026-03-15 .. 2027-03-15 (365 days), by day.
  local yearly = invoice { period = { from = at(2026, 3, 15), to = at(2027, 3, 15) }, finalized = at(2026, 3, 15),
    subtotal = "1200.00", lines = { { id = "fee", kind = "subscription", amount = D("1200.00"),
      from = at(2026, 3, 15), to = at(2027, 3, 15) } } }
  local s = revenue.schedule(yearly)
  local m = by_month(s.recognized)
  t.is(m["2026-03"], "55.89", "March: 17 of 365 days of 1,200.00 = 55.8904 -> 55.89")
  t.is(m["2026-04"], "98.63", "April: 30 days -> cumulative 47/365 = 154.52, minus 55.89")
  t.is(m["2027-03"], "46.03", "March 2027: 14 days, the remainder")
  t.is(decimal.string(total(s.recognized)), "1200", "the whole year is recognized, exactly")
  t.is(by_month(s.invoiced)["2026-03"], "1200", "invoiced in March, when finalized")
  local n = 0
  for _ in pairs(m) do n = n + 1 end
  t.is(n, 13, "13 calendar months touched")

  -- Usage in arrears: point-in-time at the period's end (its last second), whenever invoiced.
  local usage = invoice { period = { from = at(2026, 1, 1), to = at(2026, 2, 1) }, finalized = at(2026, 2, 3),
    subtotal = "49.00", lines = {
      { id = "fee", kind = "subscription", amount = D("30.00"), from = at(2026, 1, 1), to = at(2026, 2, 1) },
      { id = "api", kind = "charge", amount = D("19.00"), from = at(2026, 1, 1), to = at(2026, 2, 1) } } }
  s = revenue.schedule(usage)
  t.is_deeply(by_month(s.recognized), { ["2026-01"] = "49" }, "a January fee and January usage: earned in January")
  t.is_deeply(by_month(s.invoiced), { ["2026-02"] = "49" }, "invoiced in February")
  local rows = revenue.ledger({ usage }, nil, {})
  t.is(#rows, 2, "report: January and February")
  t.is(decimal.string(rows[1].deferred_closing), "-49", "January closes with -49: earned, not yet invoiced (unbilled)")
  t.is(decimal.string(rows[2].deferred_closing), "0", "February closes at 0")

  -- The paid basis (Lago's): nothing counts until paid; what was earned before is caught up then.
  local paid = revenue.schedule(usage, { basis = "paid" })
  t.is(#paid.recognized, 0, "paid basis: an unpaid invoice has no schedule")
  usage.paid, usage.state = at(2026, 3, 10), "paid"
  paid = revenue.schedule(usage, { basis = "paid" })
  t.is_deeply(by_month(paid.recognized), { ["2026-03"] = "49" }, "paid basis: caught up in the month of payment")
  t.is_deeply(by_month(paid.invoiced), { ["2026-03"] = "49" }, "paid basis: counted when paid")

  -- Discounts reduce revenue, spread over the lines; taxes and credits are not revenue.
  local disc = invoice { period = { from = at(2026, 1, 1), to = at(2026, 2, 1) }, finalized = at(2026, 1, 1),
    subtotal = "100.00", discount_total = "10.00", lines = {
      { id = "fee", kind = "subscription", amount = D("75.00"), from = at(2026, 1, 1), to = at(2026, 2, 1) },
      { id = "api", kind = "charge", amount = D("25.00") } } }
  disc.taxes = { { name = "TVA", rate = D("20"), amount = D("18.00") } }
  disc.tax_total, disc.total = D("18.00"), D("108.00")
  s = revenue.schedule(disc)
  local per = {}
  for _, e in ipairs(s.recognized) do per[e.line] = (per[e.line] or decimal.zero) + e.amount end
  t.is(decimal.string(per.fee), "67.5", "the fee bears 75% of the discount")
  t.is(decimal.string(per.api), "22.5", "the usage bears 25%")
  t.is(decimal.string(total(s.invoiced)), "90", "invoiced revenue is net of discounts, without taxes")

  -- A voided invoice reverses: what was earned is taken back when voided, the rest never comes.
  local void = invoice { period = { from = at(2026, 1, 1), to = at(2026, 4, 1) }, finalized = at(2026, 1, 1),
    state = "voided", voided = at(2026, 2, 10), subtotal = "90.00", lines = {
      { id = "fee", kind = "subscription", amount = D("90.00"), from = at(2026, 1, 1), to = at(2026, 4, 1) } } }
  s = revenue.schedule(void)
  t.is(decimal.string(total(s.recognized)), "0", "voided: nothing recognized over its life")
  t.is(decimal.string(total(s.invoiced)), "0", "voided: nothing invoiced over its life")
  rows = revenue.ledger({ void }, nil, {})
  t.is(rows[1].month, "2026-01", "void report starts in January")
  t.is(decimal.string(rows[1].recognized), "31", "January earned 31 of 90 days")
  t.is(decimal.string(rows[2].invoiced), "-90", "February: the void takes back the invoice")
  t.is(decimal.string(rows[2].recognized), "-31", "February: January's revenue reversed, February's never earned")
  t.is(decimal.string(rows[#rows].deferred_closing), "0", "the void leaves nothing deferred")

  -- A credit note takes back part: the earned share at once, the rest of the schedule shrinks.
  local cn = invoice { id = "inv-cn", period = { from = at(2026, 1, 1), to = at(2026, 4, 1) }, finalized = at(2026, 1, 1),
    subtotal = "90.00", lines = {
      { id = "fee", kind = "subscription", amount = D("90.00"), from = at(2026, 1, 1), to = at(2026, 4, 1) } } }
  local notes = { { id = "cn-1", invoice = "inv-cn", amount = D("36.00"), tax_amount = D("6.00"), issued = at(2026, 2, 1) } }
  rows = revenue.ledger({ cn }, notes, {})
  local life_inv, life_rec = decimal.zero, decimal.zero
  for _, r in ipairs(rows) do life_inv, life_rec = life_inv + r.invoiced, life_rec + r.recognized end
  t.is(decimal.string(life_inv), "60", "credit note of 30.00 net of tax: 60 invoiced over the life")
  t.is(decimal.string(life_rec), "60", "... and 60 recognized")
  t.is(decimal.string(rows[2].invoiced), "-30", "February: the credit note")

  -- Drafts are not in the books; report filters by tenant and month range.
  local draft = invoice { id = "d", state = "draft", subtotal = "5.00", lines = { { kind = "charge", amount = D("5.00") } },
    period = { from = at(2026, 1, 1), to = at(2026, 2, 1) } }
  t.is(#revenue.schedule(draft).invoiced, 0, "a draft has no schedule")
  local other = invoice { id = "o", tenant = "globex", period = yearly.period, finalized = at(2026, 3, 15),
    subtotal = "1200.00", lines = yearly.lines }
  rows = revenue.ledger({ yearly, other }, nil, { tenant = "acme", from = "2026-06", to = "2026-07" })
  t.is(#rows, 2, "from..to: two months")
  -- March 15 .. June 1 is 78 days: round(1200 * 78 / 365) = 256.44 earned, 943.56 left
  t.is(decimal.string(rows[1].deferred_opening), "943.56", "June opens with what March..May left deferred (acme only)")
  t.is(decimal.string(rows[2].deferred_closing), decimal.string(rows[1].deferred_opening - rows[1].recognized - rows[2].recognized),
    "July closes after two months earned")
  t.is(rows[1].currency, "USD", "rows carry their currency")

  -- Months in the billing timezone: a Paris calendar month (midnight local = 23:00 or 22:00
  -- UTC) is one month there, and a sliver of the previous one in UTC.
  local paris = invoice { id = "paris", period = { from = at(2026, 2, 28) + 23 * 3600, to = at(2026, 3, 31) + 22 * 3600 },
    finalized = at(2026, 4, 1), subtotal = "31.00", lines = { { id = "fee", kind = "subscription", amount = D("31.00"),
      from = at(2026, 2, 28) + 23 * 3600, to = at(2026, 3, 31) + 22 * 3600 } } }
  t.is_deeply(by_month(revenue.schedule(paris, { timezone = "Europe/Paris" }).recognized), { ["2026-03"] = "31" },
    "Europe/Paris: March (DST starts on the 29th) is one month, all of it in March")
  local utc = by_month(revenue.schedule(paris, { timezone = "UTC" }).recognized)
  t.is(utc["2026-02"], "0.04", "UTC: the hour of February 28th takes its share (31 / 743 h)")
  t.is(revenue.month_of(at(2026, 3, 31) + 22 * 3600 + 1, "Europe/Paris"), "2026-04", "month_of in a zone")
  t.raises(function() revenue.schedule(paris, { timezone = "Mars/Olympus" }) end, "timezone", "an unknown zone names timezone")

  -- Misuse names the argument.
  t.raises(function() revenue.schedule("x") end, "argument #1", "schedule of a string")
  t.raises(function() revenue.schedule(yearly, { basis = "cash" }) end, "basis", "an unknown basis")
  t.raises(function() revenue.ledger({}, nil, { from = "2026-13" }) end, "from", "a bad month")
  t.raises(function()
    revenue.schedule(invoice { finalized = 1, subtotal = "1", lines = { { kind = "charge", amount = 1.5 } } })
  end, "lines%[1%]%.amount", "a Lua number with a fraction as an amount")
  t.is(revenue.check_config({ basis = "paid" }, "billing.revenue").basis, "paid", "check_config: basis paid")
  local ok, err = revenue.check_config({ basis = "cash" }, "billing.revenue")
  t.ok(not ok and err:match("^billing%.revenue%.basis: "), "check_config names billing.revenue.basis: " .. tostring(err))
  ok, err = revenue.check_config({ rate = 1 }, "billing.revenue")
  t.ok(not ok and err:match("^billing%.revenue%.rate: unknown field"), "check_config: unknown field named")
  -- through the billing key's checker (steward.billing.config), as steward.lua is checked
  local bcfg = require "steward.billing.config"
  local checked, cerr = bcfg.check({ revenue = { basis = "cash" } })
  t.ok(not checked and tostring(cerr):match("revenue%.basis: \"invoiced\" or \"paid\" expected, got cash"),
    "billing = {revenue = {basis = \"cash\"}} is refused naming revenue.basis: " .. tostring(cerr))
  checked = bcfg.check({ revenue = { basis = "paid" } })
  t.is(checked and checked.revenue.basis, "paid", "billing.revenue.basis = \"paid\" is taken")

  -- Property: a line's schedule sums to its amount exactly, each month at the currency's scale,
  -- never negative, for random periods and amounts (JPY, USD and BHD scales).
  local seed = tonumber(os.getenv("SEED") or "") or os.time()
  t.diag("seed " .. seed .. " (SEED=" .. seed .. " replays)")
  math.randomseed(seed)
  local bad
  for i = 1, 300 do
    local cur = ({ "USD", "JPY", "BHD" })[math.random(3)]
    local scale = decimal.scale(cur)
    local from = at(2025, 1, 1) + math.random(0, 800) * DAY + math.random(0, 3) * 3600
    local to = from + math.random(1, 800) * DAY
    local amt = D(tostring(math.random(0, 10000000))) / D(tostring(10 ^ scale))
    local inv = invoice { id = "p" .. i, currency = cur, period = { from = from, to = to }, finalized = from,
      subtotal = decimal.string(amt), lines = { { id = "fee", kind = "subscription", amount = amt, from = from, to = to } } }
    local sch = revenue.schedule(inv)
    if total(sch.recognized) ~= amt then bad = "sum " .. i; break end
    for _, e in ipairs(sch.recognized) do
      if e.amount < decimal.zero or e.amount:round(scale, "down") ~= e.amount then bad = "part " .. i; break end
    end
    if bad then break end
  end
  t.ok(not bad, "300 random schedules sum exactly, at scale, never negative" .. (bad and (": " .. bad) or ""))

  -- Property: random invoice sets (fees, usage, discounts, voids, credit notes, both bases)
  -- reconcile month by month and over the life.
  bad = nil
  for round = 1, 40 do
    local invs, cns = {}, {}
    for i = 1, math.random(1, 12) do
      local from = at(2026, 1, 1) + math.random(0, 300) * DAY
      local to = from + math.random(1, 120) * DAY
      local fee = D(tostring(math.random(1, 500000))) / D("100")
      local use = D(tostring(math.random(0, 90000))) / D("100")
      local sub = fee + use
      local dsc = D(tostring(math.random(0, 100))) / D("100")
      local inv = invoice { id = "r" .. round .. "-" .. i, period = { from = from, to = to },
        finalized = to + math.random(0, 5) * DAY, subtotal = decimal.string(sub), discount_total = decimal.string(dsc),
        lines = { { id = "fee", kind = "subscription", amount = fee, from = from, to = to },
                  { id = "use", kind = "charge", amount = use, from = from, to = to } } }
      if math.random(6) == 1 then inv.state, inv.voided = "voided", inv.finalized + math.random(0, 60) * DAY end
      if math.random(3) == 1 then inv.state, inv.paid = inv.state == "voided" and "voided" or "paid", inv.finalized + math.random(0, 40) * DAY end
      if inv.state ~= "voided" and math.random(4) == 1 then
        cns[#cns + 1] = { id = "cn" .. i, invoice = inv.id, amount = D(tostring(math.random(1, 1000))) / D("100"),
          issued = inv.finalized + math.random(0, 90) * DAY }
      end
      invs[#invs + 1] = inv
    end
    for _, basis in ipairs({ "invoiced", "paid" }) do
      local r = revenue.ledger(invs, cns, { basis = basis })
      local inv_sum, rec_sum = decimal.zero, decimal.zero
      for k, row in ipairs(r) do
        if row.deferred_closing ~= row.deferred_opening + row.invoiced - row.recognized then bad = "row " .. k end
        if k > 1 and row.deferred_opening ~= r[k - 1].deferred_closing then bad = "chain " .. k end
        inv_sum, rec_sum = inv_sum + row.invoiced, rec_sum + row.recognized
      end
      if inv_sum ~= rec_sum then bad = "life" end
      if #r > 0 and not r[#r].deferred_closing:is_zero() then bad = "closing " .. decimal.string(r[#r].deferred_closing) end
      -- the invoiced column reconciles with the invoices themselves
      local want = decimal.zero
      for _, inv in ipairs(invs) do
        local counted = basis == "invoiced" or inv.paid
        if counted and inv.state ~= "voided" then want = want + inv.subtotal - inv.discount_total end
      end
      for _, c in ipairs(cns) do
        for _, inv in ipairs(invs) do
          if inv.id == c.invoice and (basis == "invoiced" or inv.paid) then want = want - c.amount end
        end
      end
      if inv_sum ~= want then bad = "invoiced " .. decimal.string(inv_sum) .. " ~= " .. decimal.string(want) end
      if bad then bad = "round " .. round .. " " .. basis .. ": " .. bad; break end
    end
    if bad then break end
  end
  t.ok(not bad, "40 random invoice sets reconcile on both bases" .. (bad and (": " .. bad) or ""))
end

-- The page's Lua blocks, run as the reader would (tests/support/doc_examples.lua).
local function docs(path)
  local examples = assert(loadfile("tests/support/doc_examples.lua"))()
  examples(path, examples.checks(t, path))
end

local ok, err = xpcall(function() main(); docs("docs/billing/revenue.md") end, debug.traceback)
if not ok then t.fail("spec raised", err) end
t.done()
