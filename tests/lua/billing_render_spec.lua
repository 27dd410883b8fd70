-- steward.billing.render: the invoice page (every field escaped, white-label from the tenant's
-- branding, amounts exact at the currency's scale, refusing Lua numbers), and the PDF made by
-- WeasyPrint in a child process, read back with pdftotext; each failure of the renderer named.
local t = require "steward.tap"
local decimal = require "steward.decimal"
local proc = require "steward.proc"
local render = require "steward.billing.render"

local D = decimal.new

local function fixture()
  return {
    id = "inv_acme_2026_11", number = "ACME-000042", series = "ACME", tenant = "acme", subscription = "sub_1",
    currency = "USD", state = "finalized", period = { from = 1793491200, to = 1796083200 }, -- 2026-11-01 .. 2026-12-01
    issued = 1796083200, due = 1798675200, finalized = 1796083200,
    lines = {
      { id = "l1", kind = "subscription", description = "Pro plan <monthly>", units = D("1"), unit_amount = D("1200.00"),
        amount = D("1200.00"), from = 1793491200, to = 1796083200 },
      { id = "l2", kind = "charge", charge = "api_calls", metric = "api_calls", units = D("12000"), unit_amount = D("0.0125"),
        amount = D("150.00"), usage = { events = 12000 }, from = 1793491200, to = 1796083200,
        details = { tiers = { { from_value = D("0"), to_value = D("10000"), units = D("10000"), per_unit_amount = D("0.01"), flat_amount = D("0") },
          { from_value = "10000", units = "2000", per_unit_amount = "0.025", flat_amount = "0" } } } },
    },
    subtotal = D("1350.00"), discounts = { { coupon = "WELCOME10", amount = D("135.00") } }, discount_total = D("135.00"),
    taxes = { { name = "TVA", rate = D("20"), amount = D("243.00") } }, tax_total = D("243.00"),
    credits = { { kind = "wallet", ref = "wal_1", amount = D("58.00") } }, credit_total = D("58.00"),
    total = D("1400.00"),
    customer = { name = "Acme SAS", email = "billing@acme.test", country = "FR", address = "1 rue de la Paix\n75002 Paris",
      tax_id = "FR12345678901" },
  }
end

local TENANT = { id = "acme", name = "<script>alert(1)</script>",
  branding = { name = "Acme <Ops> & Co", logo_url = "https://cdn.acme.test/logo.png", color = "#ff6600",
    footer = "Acme SAS, capital 10 000 EUR, RCS Paris 123 456 789" },
  config = { billing = { country = "FR", email = "billing@acme.test" } } }

local function main()
  local html = render.html(fixture(), TENANT, { net_payment_days = 30, issuer = { name = "Steward Ops Ltd", legal = "Registered in England 0000001" } })
  t.like(html, "^<!DOCTYPE html>", "a whole HTML document")
  t.is(render.html(fixture(), TENANT, { net_payment_days = 30, issuer = { name = "Steward Ops Ltd", legal = "Registered in England 0000001" } }),
    html, "the same invoice renders to the same bytes")
  t.ok(html:find("Invoice ACME-000042", 1, true), "the number")
  t.ok(not html:find("<script>", 1, true), "no <script> anywhere: the tenant's name is escaped")
  t.ok(html:find("Acme &lt;Ops&gt; &amp; Co", 1, true), "the brand name, escaped")
  t.ok(html:find("Pro plan &lt;monthly&gt;", 1, true), "a line's description, escaped")
  t.ok(html:find("#ff6600", 1, true), "the brand colour in the stylesheet")
  t.ok(html:find('<img src="https://cdn.acme.test/logo.png"', 1, true), "the logo")
  t.ok(html:find("Acme SAS, capital 10 000 EUR", 1, true), "the tenant's legal text (footer)")
  t.ok(html:find("Registered in England 0000001", 1, true), "the issuer's legal text")
  t.ok(html:find("USD&nbsp;1,200.00", 1, true), "amounts at the currency's scale, grouped")
  t.ok(html:find("USD&nbsp;0.0125", 1, true), "a unit price keeps its digits")
  t.ok(html:find("12,000", 1, true), "units")
  t.ok(html:find("0–10,000: 10,000 × USD&nbsp;0.01 + USD&nbsp;0.00", 1, true), "a graduated tier: bounds, units, price, flat fee")
  t.ok(html:find("10,000–∞: 2,000 × USD&nbsp;0.025", 1, true), "the last tier, unbounded, from stored strings")
  local gp = fixture()
  gp.lines[2].details = { tiers = { { from_value = D("0"), to_value = D("100"), units = D(1) / D(3), rate = D("1.5"),
    flat_amount = D("0.10"), total_with_flat_amount = D(1) / D(3) } } }
  local gph = render.html(gp, TENANT)
  t.ok(gph:find("0–100: 1/3 × 1.5% + USD&nbsp;0.10 = USD&nbsp;1/3", 1, true),
    "a graduated-percentage tier: its rate; a figure without a decimal form shown as its fraction, the invoice still prints")
  t.ok(html:find("TVA 20%", 1, true) and html:find("USD&nbsp;243.00", 1, true), "taxes by rate")
  t.ok(html:find("WELCOME10", 1, true) and html:find("USD&nbsp;135.00", 1, true), "the discount")
  t.ok(html:find("Prepaid credits", 1, true) and html:find("USD&nbsp;58.00", 1, true), "the credits")
  t.ok(html:find("Total due</td><td class=\"num\">USD&nbsp;1,400.00", 1, true), "the total")
  t.ok(html:find("Payment due by 2026-12-31 (net 30 days)", 1, true), "payment terms")
  t.ok(html:find("2026-11-01 – 2026-11-30", 1, true), "the service period, last day included")
  t.ok(html:find("1 rue de la Paix<br>75002 Paris", 1, true), "the customer's address")
  t.ok(html:find("FR12345678901", 1, true), "the customer's tax id")

  -- a tenant whose own name is markup, with no brand name and no customer snapshot: its name
  -- heads the page and fills Bill to, escaped both times
  local bare = fixture()
  bare.customer = nil
  local nh = render.html(bare, { id = "evil", name = "<script>alert(1)</script>" })
  local _, n = nh:gsub("&lt;script&gt;alert%(1%)&lt;/script&gt;", "")
  t.ok(not nh:find("<script>", 1, true) and n == 3, "a tenant named <script>: escaped in the header, From and Bill to (" .. n .. ")")

  -- white-label falls back: no branding -> the issuer; bad colour and unsafe logo never reach the page
  local plain = render.html(fixture(), { id = "acme", name = "Acme", branding = { color = "red;}</style><script>x()</script>",
    logo_url = "javascript:alert(1)" } }, { issuer = { name = "Steward Ops Ltd" } })
  t.ok(not plain:find("<script>", 1, true) and not plain:find("javascript:", 1, true), "a hostile colour and logo URL are dropped")
  t.ok(plain:find('<div class="brand">Steward Ops Ltd</div>', 1, true), "no brand name: the issuer's")
  t.ok(not render.html(fixture(), { branding = { logo_url = "file:///etc/passwd" } }):find("<img", 1, true), "a file:// logo is not drawn")

  -- dates in the billing timezone: a Paris calendar month starts at 23:00 UTC the day before
  local paris = fixture()
  paris.period = { from = 1793487600, to = 1796079600 } -- 2026-10-31T23:00Z .. 2026-11-30T23:00Z
  local ph = render.html(paris, TENANT, { timezone = "Europe/Paris" })
  t.ok(ph:find("2026-11-01 – 2026-11-30", 1, true), "Europe/Paris: the service period is November")
  t.ok(render.html(paris, TENANT):find("2026-10-31 – 2026-11-30", 1, true), "UTC: it starts on October 31st")
  t.raises(function() render.html(paris, TENANT, { timezone = "Nowhere/Land" }) end, "timezone", "a bad zone names timezone")

  -- currencies: JPY has no minor unit, BHD three
  local jpy = fixture()
  jpy.currency = "JPY"
  jpy.lines = { { kind = "subscription", description = "Plan", amount = D("1500") } }
  jpy.subtotal, jpy.total, jpy.discounts, jpy.taxes, jpy.credits = D("1500"), D("1500"), nil, nil, nil
  t.ok(render.html(jpy, TENANT):find("JPY&nbsp;1,500<", 1, true), "JPY: no decimals")
  local bhd = fixture()
  bhd.currency = "BHD"
  t.ok(render.html(bhd, TENANT):find("BHD&nbsp;1,400.000", 1, true), "BHD: three decimals")

  -- never Lua numbers, never silent rounding; misuse names the field
  local bad = fixture()
  bad.lines[2].amount = 150.5
  t.raises(function() render.html(bad, TENANT) end, "lines%[2%]%.amount", "a Lua number as an amount raises naming the field")
  bad = fixture()
  bad.total = D(1) / D(3)
  t.raises(function() render.html(bad, TENANT) end, "total", "1/3 has no decimal form: raises naming total")
  bad = fixture()
  bad.currency = "XYZ"
  t.raises(function() render.html(bad, TENANT) end, "currency", "an unknown currency")
  t.raises(function() render.html("x", TENANT) end, "argument #1", "not an invoice")
  local draft = fixture()
  draft.number, draft.state = nil, "draft"
  t.ok(render.html(draft, TENANT):find("Invoice DRAFT", 1, true), "a draft says so")

  -- the PDF, read back
  local dir = assert(proc.run { cmd = { "mktemp", "-d" } }).stdout:gsub("%s+$", "")
  local pdf, err = render.pdf(fixture(), TENANT, { issuer = { name = "Steward Ops Ltd" } })
  t.ok(pdf and pdf:sub(1, 5) == "%PDF-", "a PDF: " .. tostring(err))
  if pdf then
    local f = assert(io.open(dir .. "/inv.pdf", "wb"))
    f:write(pdf)
    f:close()
    local txt = assert(proc.run { cmd = { "pdftotext", "-layout", dir .. "/inv.pdf", "-" } }).stdout
    t.ok(txt:find("ACME-000042", 1, true), "pdftotext finds the number")
    t.ok(txt:find("USD 1,400.00", 1, true), "... the total")
    t.ok(txt:find("RCS Paris 123 456 789", 1, true), "... the tenant's legal text")
    t.ok(txt:find("<script>alert(1)</script>", 1, true) == nil, "... and no markup leaked as text either way")
  end

  -- failures name their cause
  local _, e1 = render.pdf(fixture(), TENANT, { weasyprint = dir .. "/missing-weasyprint" })
  t.like(e1, "not installed", "a missing renderer: " .. tostring(e1))
  local fake = dir .. "/failing.sh"
  local f = assert(io.open(fake, "w"))
  f:write("#!/bin/sh\necho 'boom: cannot render' >&2\nexit 3\n")
  f:close()
  proc.run { cmd = { "chmod", "+x", fake } }
  local _, e2 = render.pdf(fixture(), TENANT, { weasyprint = fake })
  t.like(e2, "exited with status 3: boom: cannot render", "a failing renderer: its status and message")
  local slow = dir .. "/slow.sh"
  f = assert(io.open(slow, "w"))
  f:write("#!/bin/sh\nexec sleep 30\n")
  f:close()
  proc.run { cmd = { "chmod", "+x", slow } }
  local _, e3 = render.pdf(fixture(), TENANT, { weasyprint = slow, timeout = "300ms" })
  t.like(e3, "did not finish within", "a hung renderer is stopped: " .. tostring(e3))

  -- at most MAX_RUNNING renderers at once: one more is refused, not queued
  local task = require "steward.task"
  local limit = render.MAX_RUNNING
  render.MAX_RUNNING = 1
  local first = task.spawn(function() return render.pdf(fixture(), TENANT, { weasyprint = slow, timeout = "1s" }) end)
  local _, e4 = render.pdf(fixture(), TENANT, { weasyprint = slow, timeout = "1s" })
  t.like(e4, "^busy: 1 PDFs are being rendered", "a render past the bound is refused while one runs: " .. tostring(e4))
  local _, _, e5 = first:join()
  t.like(e5, "did not finish", "... the one running goes on")
  local again = render.pdf(fixture(), TENANT)
  t.ok(again and again:sub(1, 5) == "%PDF-", "after it, renders are taken again")
  render.MAX_RUNNING = limit
  proc.run { cmd = { "rm", "-rf", dir } }
end

-- The page's Lua blocks, run as the reader would (tests/support/doc_examples.lua).
local function docs(path)
  local examples = assert(loadfile("tests/support/doc_examples.lua"))()
  examples(path, examples.checks(t, path))
end

local ok, err = xpcall(function() main(); docs("docs/billing/rendering.md") end, debug.traceback)
if not ok then t.fail("spec raised", err) end
t.done()
