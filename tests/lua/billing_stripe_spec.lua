-- steward.billing.stripe and steward.billing.payments against the Stripe-compatible peer
-- (tests/support/stripe_peer.py): the billing.payments config check, secrets by reference,
-- Stripe's form encoding, the errors mapped to kinds (declined, refused, unavailable),
-- Idempotency-Key replay and mismatch, and collect(): the customer made once, the invoice's
-- total in minor units, the attempt recorded once and the invoice paid once, a decline
-- announced (billing.payment.failed), and a collection re-run after a crash between the
-- provider's answer and our record sending the same key (the peer replays: one charge).
local t = require "steward.tap"
local json = require "steward.json"
local http = require "steward.http"
local proc = require "steward.proc"
local time = require "steward.time"
local decimal = require "steward.decimal"
local stripe = require "steward.billing.stripe"
local payments = require "steward.billing.payments"

local spec = assert(loadfile("tests/support/billing_payments_spec.lua"))()
local st, invoices = spec.st, spec.invoices

local KEY = "sk_test_spec_4eC39HqLyjWDarjtT1zdp7dc"

local function start_peer()
  local out = spec.dir .. "/peer.port"
  local child = assert(proc.spawn({ cmd = { "/usr/bin/python3", "tests/support/stripe_peer.py", KEY }, stdout = out,
    stderr = spec.dir .. "/peer.err" }))
  local fs = require "steward.fs"
  local deadline = time.now() + 10
  while time.now() < deadline do
    local txt = fs.exists(out) and fs.read(out) or ""
    local port = txt:match("^(%d+)\n")
    if port then return child, "http://127.0.0.1:" .. port end
    time.sleep(0.05)
  end
  error("the peer did not start")
end

local function peer_get(base, path)
  local res = assert(http.request({ url = base .. path }))
  return json.decode(res.body)
end

local function peer_post(base, path, body)
  local res = assert(http.request({ url = base .. path, method = "POST", body = json.encode(body),
    headers = { ["content-type"] = "application/json" } }))
  return json.decode(res.body)
end

local function config_checks()
  local c = assert(stripe.check_config({ secret_key = "env:STRIPE_KEY", webhook_secret = "file:/etc/whsec" }))
  t.is(c.url, "https://api.stripe.com", "the url defaults to Stripe's")
  t.is(c.tolerance, 300, "the tolerance defaults to 300 s")
  t.is(assert(stripe.check_config({ secret_key = "x", webhook_secret = "y", tolerance = "2m" })).tolerance, 120,
    "a tolerance is a duration")
  local function refused(v, pattern, name)
    local ok, err = stripe.check_config(v, "billing.payments")
    t.ok(ok == nil and tostring(err):find(pattern, 1, true), name .. " (" .. tostring(err) .. ")")
  end
  refused({ secret_key = "x", webhook_secret = "y", colour = 1 }, "billing.payments.colour: unknown field", "an unknown field is named")
  refused({ webhook_secret = "y" }, "billing.payments.secret_key: a secret expected", "a missing secret_key is named")
  refused({ secret_key = "x", webhook_secret = "y", url = "ftp://x" }, "billing.payments.url", "a bad url is named")
  refused({ secret_key = "env:", webhook_secret = "y" }, "billing.payments.secret_key: env:NAME", "env: without a name")
  refused({ secret_key = "x", webhook_secret = "file:relative" }, "billing.payments.webhook_secret: file: needs an absolute path",
    "file: with a relative path")
  refused({ secret_key = "x", webhook_secret = "y", tolerance = "soon" }, "billing.payments.tolerance", "a bad tolerance")
  refused({ secret_key = "x", webhook_secret = "y", provider = "paypal" }, "billing.payments.provider", "another provider")
  refused({ secret_key = "x", webhook_secret = "y", payment_method = "card" }, "billing.payments.payment_method", "a bad payment method")
  t.is(stripe.secret("sk_live_x"), "sk_live_x", "a literal secret is itself")
  local v, err = stripe.secret("env:STEWARD_NO_SUCH_VARIABLE_H7")
  t.ok(v == nil and err:find("STEWARD_NO_SUCH_VARIABLE_H7", 1, true), "an unset variable is named")
  require("steward.fs").write(spec.dir .. "/key", "sk_test_file\n")
  t.is(stripe.secret("file:" .. spec.dir .. "/key"), "sk_test_file", "file: reads the file, without its newline")
end

local function form_checks()
  t.is(stripe.form({ amount = 1999, currency = "usd", confirm = true, metadata = { invoice = "inv 1", tenant = "acme" } }),
    "amount=1999&confirm=true&currency=usd&metadata%5Binvoice%5D=inv%201&metadata%5Btenant%5D=acme",
    "nested keys in brackets, sorted, escaped")
  t.is(stripe.form({ b = "é&=" }), "b=%C3%A9%26%3D", "values are percent-encoded byte by byte")
end

local function client_checks(base)
  local cfg = assert(stripe.check_config({ url = base, secret_key = KEY, webhook_secret = "whsec_x" }))
  local c = assert(stripe.create_customer(cfg, { email = "billing@acme.test", metadata = { tenant = "acme" } }, "k-cus"))
  t.like(c.id, "^cus_", "a customer")
  t.is(c.metadata.tenant, "acme", "its metadata went as metadata[tenant]")
  local again = assert(stripe.create_customer(cfg, { email = "billing@acme.test", metadata = { tenant = "acme" } }, "k-cus"))
  t.is(again.id, c.id, "the same Idempotency-Key and parameters: the same customer")
  local _, err, info = stripe.create_customer(cfg, { email = "other@acme.test" }, "k-cus")
  t.is(info.kind, "refused", "the same key with other parameters is refused")
  t.is(info.type, "idempotency_error", "as Stripe's idempotency_error (" .. tostring(err) .. ")")
  local pi = assert(stripe.create_payment_intent(cfg, { amount = 1999, currency = "usd", customer = c.id,
    payment_method = "pm_card_visa", confirm = true }, "k-pi-1"))
  t.is(pi.status, "succeeded", "pm_card_visa succeeds")
  t.is(pi.amount, 1999, "the amount in minor units")
  local nopi
  nopi, err, info = stripe.create_payment_intent(cfg, { amount = 500, currency = "usd", customer = c.id,
    payment_method = "pm_card_chargeDeclinedInsufficientFunds", confirm = true }, "k-pi-2")
  t.ok(nopi == nil and info.kind == "declined", "a decline is kind declined")
  t.is(info.decline_code, "insufficient_funds", "with Stripe's decline code")
  t.is(info.object and info.object.status, "requires_payment_method", "and the intent from the error object")
  t.like(err, "402 Your card has insufficient funds", "the message names the status and Stripe's message")
  local bad = assert(stripe.check_config({ url = base, secret_key = "sk_test_wrong", webhook_secret = "whsec_x" }))
  _, err, info = stripe.create_customer(bad, { email = "x@y.z" })
  t.is(info.status, 401, "a wrong API key is a 401")
  t.is(info.kind, "refused", "refused, not retried")
  local down = assert(stripe.check_config({ url = "http://127.0.0.1:1", secret_key = KEY, webhook_secret = "w", timeout = 2 }))
  _, err, info = stripe.create_customer(down, {})
  t.is(info.kind, "unavailable", "no answer is kind unavailable (" .. tostring(err) .. ")")
end

local function collect_checks(base)
  assert(payments.configure({ payments = { url = base, secret_key = KEY, webhook_secret = "whsec_x",
    payment_method = "pm_card_visa" } }))
  invoices.put({ id = "inv-1", number = "INV-0001", tenant = "acme", currency = "EUR", total = "123.45",
    customer = { email = "billing@acme.test", name = "Acme" } })
  local r = assert(payments.collect("inv-1"))
  t.is(r.status, "succeeded", "collect: the invoice is charged")
  local inv = invoices.get("inv-1")
  t.is(inv.state, "paid", "and paid")
  t.is(inv.payment.id, r.payment_intent, "with the intent as its payment id")
  local intents = peer_get(base, "/_peer/intents").intents
  local mine
  for _, pi in ipairs(intents) do if pi.metadata.invoice == "inv-1" then mine = pi end end
  t.is(mine.amount, 12345, "the total in minor units (EUR: 2 digits)")
  t.is(mine.currency, "eur", "the currency in lower case")
  t.is(mine.metadata.attempt, "1", "metadata[attempt]")
  t.like(mine.customer, "^cus_", "for the tenant's customer")
  t.is(payments.customer_of("acme"), mine.customer, "whose id is kept")
  local ev = {}
  for _, e in ipairs(spec.dispatched) do if e.type == "billing.payment.succeeded" then ev[#ev + 1] = e end end
  t.is(#ev, 1, "billing.payment.succeeded once")
  t.is(ev[1] and ev[1].data.amount, "123.45", "its amount an exact string")
  t.is(payments.collect("inv-1").status, "paid", "collecting a paid invoice does nothing")

  -- a crash between the provider's answer and our record: the attempt is still pending
  invoices.put({ id = "inv-2", number = "INV-0002", tenant = "acme", currency = "JPY", total = "5000" })
  assert(payments.collect("inv-2"))
  local before = #peer_get(base, "/_peer/intents").intents
  assert(st.db:exec("UPDATE billing_payment_attempts SET status = 'pending' WHERE invoice = 'inv-2'"))
  local ns = require("steward.runtime.store.kv").ns(st, "billing-fixture-invoices")
  local raw = ns:get("inv-2"); raw.state = "finalized"; raw.paid_count = 0; assert(ns:put("inv-2", raw))
  -- the tenant's card changed meanwhile: the resent request is still the first one (its key is
  -- bound to its parameters; other ones would be refused as idempotency_error)
  assert(payments.configure({ payments = { url = base, secret_key = KEY, webhook_secret = "whsec_x",
    payment_method = "pm_card_chargeDeclined" } }))
  local again = assert(payments.collect("inv-2"))
  assert(payments.configure({ payments = { url = base, secret_key = KEY, webhook_secret = "whsec_x",
    payment_method = "pm_card_visa" } }))
  t.is(again.status, "succeeded", "the resent request is the one first sent, whatever the card now")
  t.is(again.attempt, 1, "the pending attempt is sent again, not a new one")
  t.is(#peer_get(base, "/_peer/intents").intents, before, "no second PaymentIntent: one charge")
  local replayed = 0
  for _, q in ipairs(peer_get(base, "/_peer/requests").requests) do
    if q.idempotency_key == "steward-inv-2-1" and q.replayed then replayed = replayed + 1 end
  end
  t.is(replayed, 1, "the peer replayed the first answer for steward-inv-2-1")
  t.is(invoices.get("inv-2").state, "paid", "and the invoice is paid from it")
  local pi2 = peer_get(base, "/_peer/intents").intents
  for _, pi in ipairs(pi2) do if pi.metadata.invoice == "inv-2" then t.is(pi.amount, 5000, "JPY: no minor digits") end end

  -- a decline
  peer_post(base, "/_peer/outcomes", { outcomes = { "generic_decline" } })
  invoices.put({ id = "inv-3", number = "INV-0003", tenant = "acme", currency = "USD", total = "10" })
  local f = assert(payments.collect("inv-3"))
  t.is(f.status, "failed", "a declined card: the attempt failed")
  t.is(f.decline_code, "generic_decline", "with the decline code")
  t.is(invoices.get("inv-3").state, "finalized", "the invoice stays unpaid")
  local failed = {}
  for _, e in ipairs(spec.dispatched) do if e.type == "billing.payment.failed" then failed[#failed + 1] = e end end
  t.is(#failed, 1, "billing.payment.failed announced")
  t.is(failed[1] and failed[1].id, "billing.payment.failed:inv-3:1", "its id names the invoice and attempt")
  local a = payments.attempts("inv-3")
  t.is(#a, 1, "one attempt recorded")
  t.is(a[1].status, "failed", "failed")
  t.ok(decimal.is(a[1].amount) and a[1].amount == decimal.new("10"), "the attempt's amount is a decimal")
  local s = assert(payments.collect("inv-3"))
  t.is(s.attempt, 2, "collecting again is attempt 2")
  t.is(s.status, "succeeded", "which succeeds")
  t.is(payments.attempts("inv-3")[2].idempotency_key, "steward-inv-3-2", "with its own key")
  invoices.put({ id = "inv-4", tenant = "acme", currency = "USD", total = "10.005" })
  local nope, err = payments.collect("inv-4")
  t.ok(nope == nil and err:find("more than 2 fraction digits", 1, true), "a total finer than the currency is refused, not rounded")
  invoices.put({ id = "inv-5", tenant = "acme", currency = "USD", total = "10", state = "draft" })
  nope, err = payments.collect("inv-5")
  t.ok(nope == nil and err:find("^invalid state"), "a draft is not collected")
  t.raises(function() payments.collect(42) end, "invoice", "a bad invoice id raises naming it")
end

spec.run(function()
  config_checks()
  form_checks()
  local child, base = start_peer()
  local ok, err = pcall(function()
    client_checks(base)
    collect_checks(base)
  end)
  child:kill("KILL")
  if not ok then error(err, 0) end
end)
