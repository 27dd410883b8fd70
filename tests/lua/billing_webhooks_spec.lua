-- steward.billing.webhooks: Stripe's signature scheme (t=, one or several v1=, HMAC-SHA256 of
-- "<t>.<body>", a tolerance both ways) checked against vectors computed here with Python's hmac
-- (another implementation), and handle(): a succeeded intent pays its invoice, a failed one is
-- announced, a replayed event id is a duplicate applied once, an intent that is not steward's
-- is recorded and ignored.
local t = require "steward.tap"
local json = require "steward.json"
local proc = require "steward.proc"
local webhooks = require "steward.billing.webhooks"
local payments = require "steward.billing.payments"

local spec = assert(loadfile("tests/support/billing_payments_spec.lua"))()
local st, invoices = spec.st, spec.invoices

local SECRET = "whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH"
local BODY = '{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}'

-- Python's hmac as the reference: the signature Stripe's libraries compute
local function python_sig(t_, body, secret)
  local r = assert(proc.run({ cmd = { "/usr/bin/python3", "-c",
    "import hmac,hashlib,sys; print(hmac.new(sys.argv[3].encode(), (sys.argv[1]+'.'+sys.argv[2]).encode(), hashlib.sha256).hexdigest())",
    tostring(t_), body, secret } }))
  return (r.stdout:gsub("%s+$", ""))
end

local function verify_checks()
  local now = 1700000000
  local v1 = python_sig(now, BODY, SECRET)
  t.is(webhooks.sign(BODY, SECRET, now), "t=1700000000,v1=" .. v1, "sign() is what Python's hmac computes")
  t.ok(webhooks.verify(BODY, "t=1700000000,v1=" .. v1, SECRET, 300, now), "a good signature verifies")
  t.ok(webhooks.verify(BODY, "t=1700000000,v1=" .. string.rep("0", 64) .. ",v1=" .. v1 .. ",v0=abc", SECRET, 300, now),
    "one matching v1 among several (a secret being rolled) is enough; other schemes are ignored")
  t.ok(webhooks.verify(BODY, "t=1700000000,v1=" .. v1:upper(), SECRET, 300, now), "hex in either case")
  local function refused(header, pattern, name, body, at)
    local ok, reason = webhooks.verify(body or BODY, header, SECRET, 300, at or now)
    t.ok(ok == nil and tostring(reason):find(pattern, 1, true), name .. " (" .. tostring(reason) .. ")")
  end
  refused("t=1700000000,v1=" .. v1, "no v1 signature matches", "a changed body", BODY .. " ")
  refused("t=1700000001,v1=" .. v1, "no v1 signature matches", "a changed timestamp")
  refused("t=1700000000,v1=" .. python_sig(now, BODY, "whsec_other"), "no v1 signature matches", "another secret")
  refused("t=1700000000,v1=" .. v1, "tolerance 300 s", "a stale signature (a replay, 301 s later)", nil, now + 301)
  refused("t=1700000000,v1=" .. v1, "tolerance 300 s", "a timestamp from the future", nil, now - 301)
  refused(nil, "no Stripe-Signature header", "no header")
  refused("v1=" .. v1, "no timestamp", "no t=")
  refused("t=1700000000", "no v1 signature", "no v1=")
  refused("t=1700000000,t=1700000000,v1=" .. v1, "one Unix time", "two timestamps")
  refused("t=soon,v1=" .. v1, "one Unix time", "a timestamp that is not a number")
  t.raises(function() webhooks.verify(BODY, "t=1", "", 300) end, "secret", "an empty secret raises naming it")
  t.raises(function() webhooks.verify(nil, "t=1", SECRET, 300) end, "payload", "a missing payload raises naming it")
end

local function handle_checks()
  assert(payments.configure({ payments = { url = "http://127.0.0.1:1", secret_key = "sk_test_x", webhook_secret = SECRET } }))
  assert(payments.ready(st))
  invoices.put({ id = "inv-w1", number = "INV-0101", tenant = "acme", currency = "USD", total = "19.99" })
  -- the attempt as collect() leaves it when the answer is lost: pending, its key recorded
  assert(st.db:exec("INSERT INTO billing_payment_attempts (invoice, attempt, tenant, provider, idempotency_key, amount, " ..
    "amount_minor, currency, request, status, created, updated) VALUES ('inv-w1', 1, 'acme', 'stripe', 'steward-inv-w1-1', '19.99', " ..
    "1999, 'USD', '{}', 'pending', 1, 1)"))
  local pi = { id = "pi_w1", object = "payment_intent", amount = 1999, currency = "usd", status = "succeeded",
               metadata = { invoice = "inv-w1", attempt = "1", tenant = "acme" } }
  local ev = { id = "evt_w1", object = "event", type = "payment_intent.succeeded", data = { object = pi } }
  local r = assert(webhooks.handle(ev))
  t.is(r.duplicate, false, "a new event is applied")
  t.is(r.outcome, "succeeded", "payment_intent.succeeded: the attempt succeeded")
  t.is(invoices.get("inv-w1").state, "paid", "the invoice is paid")
  r = assert(webhooks.handle(ev))
  t.is(r.duplicate, true, "the same event id again is a duplicate")
  t.is(invoices.get("inv-w1").paid_count, 1, "paid once")
  local ev2 = { id = "evt_w1b", type = "payment_intent.succeeded", data = { object = pi } }
  assert(webhooks.handle(ev2))
  t.is(invoices.get("inv-w1").paid_count, 1, "another delivery of the same outcome pays nothing more")
  local n = 0
  for _, e in ipairs(spec.dispatched) do if e.type == "billing.payment.succeeded" then n = n + 1 end end
  t.is(n, 1, "billing.payment.succeeded announced once")

  invoices.put({ id = "inv-w2", tenant = "acme", currency = "USD", total = "5" })
  assert(st.db:exec("INSERT INTO billing_payment_attempts (invoice, attempt, tenant, provider, idempotency_key, amount, " ..
    "amount_minor, currency, request, status, created, updated) VALUES ('inv-w2', 1, 'acme', 'stripe', 'steward-inv-w2-1', '5', " ..
    "500, 'USD', '{}', 'pending', 1, 1)"))
  local fpi = { id = "pi_w2", amount = 500, currency = "usd", status = "requires_payment_method",
                metadata = { invoice = "inv-w2", attempt = "1" },
                last_payment_error = { code = "card_declined", decline_code = "insufficient_funds", message = "Your card has insufficient funds." } }
  r = assert(webhooks.handle({ id = "evt_w2", type = "payment_intent.payment_failed", data = { object = fpi } }))
  t.is(r.outcome, "failed", "payment_intent.payment_failed: the attempt failed")
  local failed
  for _, e in ipairs(spec.dispatched) do if e.type == "billing.payment.failed" then failed = e end end
  t.is(failed and failed.data.decline_code, "insufficient_funds", "billing.payment.failed carries the decline code")
  t.is(failed and failed.tenant, "acme", "and the tenant")

  -- the answer and the webhook paying at the same moment: the other one's pay wins, ours is
  -- told "conflict", and the invoice is paid by this very intent all the same
  invoices.put({ id = "inv-w6", tenant = "acme", currency = "USD", total = "8" })
  assert(st.db:exec("INSERT INTO billing_payment_attempts (invoice, attempt, tenant, provider, idempotency_key, amount, " ..
    "amount_minor, currency, request, status, created, updated) VALUES ('inv-w6', 1, 'acme', 'stripe', 'steward-inv-w6-1', '8', " ..
    "800, 'USD', '{}', 'pending', 1, 1)"))
  local real_pay = invoices.pay
  invoices.pay = function(id, p) real_pay(id, p); return nil, "conflict: invoice " .. id .. " changed meanwhile" end
  r = webhooks.handle({ id = "evt_w6", type = "payment_intent.succeeded", data = { object = { id = "pi_w6", amount = 800,
    currency = "usd", status = "succeeded", metadata = { invoice = "inv-w6", attempt = "1" } } } })
  invoices.pay = real_pay
  t.is(r and r.outcome, "succeeded", "a lost race to pay with the same intent is a success")

  -- the same intent failing, then succeeding (confirmed again with another card): paid; a late
  -- word of the failure after that changes nothing
  invoices.put({ id = "inv-w7", tenant = "acme", currency = "USD", total = "6" })
  assert(st.db:exec("INSERT INTO billing_payment_attempts (invoice, attempt, tenant, provider, idempotency_key, amount, " ..
    "amount_minor, currency, request, status, created, updated) VALUES ('inv-w7', 1, 'acme', 'stripe', 'steward-inv-w7-1', '6', " ..
    "600, 'USD', '{}', 'pending', 1, 1)"))
  local p7 = { id = "pi_w7", amount = 600, currency = "usd", status = "requires_payment_method", metadata = { invoice = "inv-w7", attempt = "1" },
               last_payment_error = { code = "card_declined", decline_code = "generic_decline" } }
  t.is(assert(webhooks.handle({ id = "evt_w7a", type = "payment_intent.payment_failed", data = { object = p7 } })).outcome, "failed",
    "an intent's failure")
  local p7ok = { id = "pi_w7", amount = 600, currency = "usd", status = "succeeded", metadata = { invoice = "inv-w7", attempt = "1" } }
  t.is(assert(webhooks.handle({ id = "evt_w7b", type = "payment_intent.succeeded", data = { object = p7ok } })).outcome, "succeeded",
    "then its success")
  t.is(payments.attempts("inv-w7")[1].status, "succeeded", "the attempt is succeeded")
  t.is(invoices.get("inv-w7").state, "paid", "the invoice paid")
  t.is(assert(webhooks.handle({ id = "evt_w7c", type = "payment_intent.payment_failed", data = { object = p7 } })).outcome, "succeeded",
    "a failure heard after the success changes nothing")
  t.is(payments.attempts("inv-w7")[1].status, "succeeded", "the attempt stays succeeded")

  -- money for an invoice voided meanwhile: answered (not delivered again forever), logged
  invoices.put({ id = "inv-w8", tenant = "acme", currency = "USD", total = "4", state = "voided" })
  assert(st.db:exec("INSERT INTO billing_payment_attempts (invoice, attempt, tenant, provider, idempotency_key, amount, " ..
    "amount_minor, currency, request, status, created, updated) VALUES ('inv-w8', 1, 'acme', 'stripe', 'steward-inv-w8-1', '4', " ..
    "400, 'USD', '{}', 'pending', 1, 1)"))
  r = assert(webhooks.handle({ id = "evt_w8", type = "payment_intent.succeeded", data = { object = { id = "pi_w8", amount = 400,
    currency = "usd", status = "succeeded", metadata = { invoice = "inv-w8", attempt = "1" } } } }))
  t.like(r.outcome, "^unapplied: invoices.pay: invalid", "a payment for a voided invoice is recorded as unapplied")

  local wrong = { id = "pi_w3", amount = 1, currency = "usd", status = "succeeded", metadata = { invoice = "inv-w2", attempt = "1" } }
  local nope, err = webhooks.handle({ id = "evt_w3", type = "payment_intent.succeeded", data = { object = wrong } })
  t.ok(nope == nil and err:find("is not the attempt's", 1, true), "an intent whose amount is not the attempt's is refused")
  r = assert(webhooks.handle({ id = "evt_w4", type = "payment_intent.succeeded",
    data = { object = { id = "pi_other", amount = 100, currency = "usd", status = "succeeded", metadata = {} } } }))
  t.like(r.outcome, "^unknown", "another integration's intent is recorded and ignored")
  r = assert(webhooks.handle({ id = "evt_w5", type = "customer.created", data = { object = { id = "cus_1" } } }))
  t.is(r.outcome, "ignored", "an event type steward does not use is ignored")
  t.is(json.encode(assert(webhooks.handle({ id = "evt_w5", type = "customer.created", data = {} })).duplicate), "true",
    "and a duplicate too when replayed")
end

spec.run(function()
  verify_checks()
  handle_checks()
end)
