#!/bin/bash
# Collecting real invoices (steward.billing.invoices: a tenant subscribed to a plan of 100 EUR a
# month, three months built and finalized) through the Stripe-compatible peer: POST
# /v1/billing/payments charges the tenant's customer (made once) with a PaymentIntent for the
# total in minor units and pays the invoice; the peer's webhook for it is verified and answered
# 200; a kill -9 of the daemon while the peer holds its answer to the PaymentIntent request,
# then a restart and a new collection, sends the same Idempotency-Key and gets the first result
# back: one charge, the invoice paid once; the attempts are listed with exact amounts.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_payments.sh"
echo "1..16"
peer_start || exit 1
billing_secrets
billing_config
daemon_start || exit 1
peer_webhook
billing_catalog
invoices_for acme 3 > "$D/invoices"
I1=$(sed -n 1p "$D/invoices"); I2=$(sed -n 2p "$D/invoices"); I3=$(sed -n 3p "$D/invoices")

code=$(api POST /v1/billing/payments "{\"invoice\":\"$I1\"}")
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded" and d["payment"]["attempt"] == 1' <"$D/body" >/dev/null
ok $? "POST /v1/billing/payments: 200, succeeded ($code $(cat "$D/body"))"
[ "$(invoice_state "$I1")" = paid ] && [ "$(invoice_payment "$I1")" = "$(jx 'd["payment"]["payment_intent"]' <"$D/body")" ]
ok $? "the invoice ($I1, $(invoice_total "$I1") EUR) is paid by the intent"
peer GET /_peer/intents > "$D/intents"
jx '[[i["amount"], i["currency"], i["metadata"]["invoice"], i["metadata"]["attempt"]] for i in d["intents"]] == [[10000, "eur", arg[0], "1"]]' "$I1" <"$D/intents" >/dev/null
ok $? "one PaymentIntent: 10000 eur (100 EUR in cents), metadata[invoice] and [attempt]"
peer GET /_peer/requests > "$D/reqs"
jx '[r["idempotency_key"] for r in d["requests"]] == ["steward-customer-acme", "steward-%s-1" % arg[0]]' "$I1" <"$D/reqs" >/dev/null
ok $? "the customer, then the intent, each with its Idempotency-Key"
delivered() { peer GET /_peer/events | jx 'len(d["events"]) == 1 and d["events"][0]["deliveries"] == [200]' >/dev/null; }
wait_for 10 delivered
ok $? "the peer's payment_intent.succeeded webhook was verified and answered 200"

code=$(api POST /v1/billing/payments "{\"invoice\":\"$I2\"}")
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded"' <"$D/body" >/dev/null
ok $? "a second invoice of the tenant: succeeded"
peer GET /_peer/requests | jx 'sum(1 for r in d["requests"] if r["path"] == "/v1/customers") == 1' >/dev/null
ok $? "the tenant's customer was made once and kept"

# kill -9 between the request and its answer: the peer has charged, the daemon never hears
peer POST /_peer/webhook '{"url":null}' >/dev/null
peer POST /_peer/hold '{"path":"/v1/payment_intents"}' >/dev/null
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -d "{\"invoice\":\"$I3\"}" "http://127.0.0.1:$PORT/v1/billing/payments" &
CPID=$!
held() { peer GET /_peer/held | jx 'd["held"] == 1' >/dev/null; }
wait_for 10 held
ok $? "the peer holds its answer to the PaymentIntent request"
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
peer POST /_peer/release >/dev/null
wait "$CPID" 2>/dev/null
daemon_start || exit 1
[ "$(invoice_state "$I3")" = finalized ]
ok $? "after the kill the invoice is still unpaid (the answer never arrived)"
code=$(api POST /v1/billing/payments "{\"invoice\":\"$I3\"}")
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded" and d["payment"]["attempt"] == 1' <"$D/body" >/dev/null
ok $? "collecting again after the restart: attempt 1 again, succeeded ($(cat "$D/body"))"
peer GET /_peer/intents | jx 'sum(1 for i in d["intents"] if i["metadata"]["invoice"] == arg[0]) == 1' "$I3" >/dev/null
ok $? "one PaymentIntent for the third invoice: charged once"
peer GET /_peer/requests | jx '[r["replayed"] for r in d["requests"] if r["idempotency_key"] == "steward-%s-1" % arg[0]] == [False, True]' "$I3" >/dev/null
ok $? "the same Idempotency-Key went twice; the peer replayed the first answer"
[ "$(invoice_state "$I3")" = paid ] && [ "$(events_of billing.invoice.paid)" = 3 ] && [ "$(events_of billing.payment.succeeded)" = 3 ]
ok $? "the invoice is paid, once (billing.invoice.paid and billing.payment.succeeded: one per invoice)"

code=$(api GET "/v1/billing/payments?tenant=acme")
[ "$code" = 200 ] && jx 'sorted([p["invoice"], p["attempt"], p["status"], p["amount"], p["currency"]] for p in d["payments"]) == sorted([i, 1, "succeeded", "100", "EUR"] for i in arg)' "$I1" "$I2" "$I3" <"$D/body" >/dev/null
ok $? "GET /v1/billing/payments lists the attempts, amounts as exact strings"
ev "return billing.payments{tenant = 'acme'}" > "$D/repl"
[ "$(grep -c ' succeeded  *100 EUR' "$D/repl")" = 3 ]
ok $? "the REPL's billing.payments{tenant=} lists the three attempts"
ev "return billing.collect('$I1').status" | grep -q paid
ok $? "billing.collect in the REPL: a paid invoice is left alone"
daemon_stop
exit $fail
