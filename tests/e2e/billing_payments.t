#!/bin/bash
# Collecting invoices through the Stripe-compatible peer on a real daemon: POST
# /v1/billing/payments charges the tenant's customer (made once) with a PaymentIntent for the
# total in minor units and pays the invoice; the peer's webhook for it is verified and answered
# 200; a kill -9 of the daemon while the peer holds its answer to the PaymentIntent request,
# then a restart and a new collection, sends the same Idempotency-Key and gets the first result
# back: one charge, the invoice paid once; the attempts are listed with exact amounts.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_payments.sh"
echo "1..14"
peer_start || exit 1
billing_lua
billing_config
daemon_start || exit 1
peer_webhook

invoice inv-1 acme 123.45 EUR
code=$(api POST /v1/billing/payments '{"invoice":"inv-1"}')
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded" and d["payment"]["attempt"] == 1' <"$D/body" >/dev/null
ok $? "POST /v1/billing/payments: 200, succeeded ($code $(cat "$D/body"))"
[ "$(invoice_state inv-1)" = paid ]
ok $? "the invoice is paid"
peer GET /_peer/intents > "$D/intents"
jx '[[i["amount"], i["currency"], i["metadata"]["invoice"], i["metadata"]["attempt"]] for i in d["intents"]] == [[12345, "eur", "inv-1", "1"]]' <"$D/intents" >/dev/null
ok $? "one PaymentIntent: 12345 eur, metadata[invoice] and [attempt]"
peer GET /_peer/requests > "$D/reqs"
jx '[r["idempotency_key"] for r in d["requests"]] == ["steward-customer-acme", "steward-inv-1-1"]' <"$D/reqs" >/dev/null
ok $? "the customer, then the intent, each with its Idempotency-Key"
delivered() { peer GET /_peer/events | jx 'len(d["events"]) == 1 and d["events"][0]["deliveries"] == [200]' >/dev/null; }
wait_for 10 delivered
ok $? "the peer's payment_intent.succeeded webhook was verified and answered 200"

invoice inv-2 acme 10 USD
code=$(api POST /v1/billing/payments '{"invoice":"inv-2"}')
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded"' <"$D/body" >/dev/null
ok $? "a second invoice of the tenant: succeeded"
peer GET /_peer/requests | jx 'sum(1 for r in d["requests"] if r["path"] == "/v1/customers") == 1' >/dev/null
ok $? "the tenant's customer was made once and kept"

# kill -9 between the request and its answer: the peer has charged, the daemon never hears
peer POST /_peer/webhook '{"url":null}' >/dev/null
invoice inv-3 acme 99.99 USD
peer POST /_peer/hold '{"path":"/v1/payment_intents"}' >/dev/null
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"invoice":"inv-3"}' "http://127.0.0.1:$PORT/v1/billing/payments" &
CPID=$!
held() { peer GET /_peer/held | jx 'd["held"] == 1' >/dev/null; }
wait_for 10 held
ok $? "the peer holds its answer to the PaymentIntent request"
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
peer POST /_peer/release >/dev/null
wait "$CPID" 2>/dev/null
daemon_start || exit 1
[ "$(invoice_state inv-3)" = finalized ]
ok $? "after the kill the invoice is still unpaid (the answer never arrived)"
code=$(api POST /v1/billing/payments '{"invoice":"inv-3"}')
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded" and d["payment"]["attempt"] == 1' <"$D/body" >/dev/null
ok $? "collecting again after the restart: attempt 1 again, succeeded ($(cat "$D/body"))"
peer GET /_peer/intents | jx 'sum(1 for i in d["intents"] if i["metadata"]["invoice"] == "inv-3") == 1' >/dev/null
ok $? "one PaymentIntent for inv-3: charged once"
peer GET /_peer/requests | jx '[r["replayed"] for r in d["requests"] if r["idempotency_key"] == "steward-inv-3-1"] == [False, True]' >/dev/null
ok $? "the same Idempotency-Key went twice; the peer replayed the first answer"
[ "$(invoice_state inv-3)" = paid ] && [ "$(ev "return require('steward.billing.invoices').get('inv-3').paid_count")" = 1 ]
ok $? "the invoice is paid, once"

code=$(api GET "/v1/billing/payments?tenant=acme")
[ "$code" = 200 ] && jx 'sorted([p["invoice"], p["attempt"], p["status"], p["amount"]] for p in d["payments"]) == [["inv-1", 1, "succeeded", "123.45"], ["inv-2", 1, "succeeded", "10"], ["inv-3", 1, "succeeded", "99.99"]]' <"$D/body" >/dev/null
ok $? "GET /v1/billing/payments lists the attempts, amounts as exact strings"
exit $fail
