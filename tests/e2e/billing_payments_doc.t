#!/bin/bash
# docs/billing/payments.md, block by block, on a real daemon: its steward.lua lines (the URL
# pointed at the Stripe-compatible peer and the secret file at ours), its curl commands for a
# collection, the list of attempts, a hand-signed webhook (openssl, as the page says) and an
# invoice's dunning state, each answer checked against what the page says it answers.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_payments.sh"
command -v openssl >/dev/null || { echo "1..0 # SKIP openssl (Debian package openssl) is not installed"; exit 0; }
echo "1..10"
PAGE="$here/docs/billing/payments.md"
# block NAME: the code block after "<!-- walkthrough: NAME -->" in the page
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' "$PAGE"
}
# run_block NAME: a shell block on our daemon, with our secret file; its output in $D/out
run_block() {
    block "$1" | sed -e "s#localhost:8080#127.0.0.1:$PORT#g" -e "s#/etc/steward/stripe-whsec#$D/whsec#g" > "$D/$1.sh"
    TOKEN=$TOKEN INVOICE=$INVOICE bash "$D/$1.sh" > "$D/out" 2>&1
}

peer_start || exit 1
billing_secrets
export STRIPE_SECRET_KEY=$STRIPE_KEY
block config | sed -e "s#https://api.stripe.com#$PEER#" -e "s#/etc/steward/stripe-whsec#$D/whsec#" -e '/^-- /d' > "$D/config.lua"
[ -s "$D/config.lua" ] && grep -q 'env:STRIPE_SECRET_KEY' "$D/config.lua"
ok $? "the page's config block"
daemon_config "tenants = { plans = { basic = {} } }, $(cat "$D/config.lua")"
mkdir -p "$D/policies/billing"
cp "$here/policies/billing/dunning.lua" "$D/policies/billing/dunning.lua"
daemon_start
ok $? "the daemon starts with it"
peer_webhook
ev "return require('steward.billing.payments').settings() and true" | grep -q true
ok $? "billing.payments is in force"
billing_catalog
invoices_for acme 2 > "$D/invoices"
I1=$(sed -n 1p "$D/invoices"); I2=$(sed -n 2p "$D/invoices")

block card | sed -e "s#https://api.stripe.com#$PEER#" -e "s#localhost:8080#127.0.0.1:$PORT#g" > "$D/card.sh"
TOKEN=$TOKEN bash "$D/card.sh" > "$D/out" 2>&1
jx 'd["object"] == "customer" and d["metadata"]["tenant"] == "acme" and d["invoice_settings"]["default_payment_method"] == "pm_card_visa"' <"$D/out" >/dev/null
ok $? "card: steward made the tenant's customer, the checkout set its card ($(cat "$D/out"))"
INVOICE=$I1
run_block collect
jx 'd["payment"]["status"] == "succeeded" and d["payment"]["invoice"] == arg[0] and d["payment"]["attempt"] == 1 and d["payment"]["payment_intent"].startswith("pi_") and d["payment"]["decline_code"] is None' "$I1" <"$D/out" >/dev/null
ok $? "collect: the answer the page shows ($(cat "$D/out"))"
run_block list
jx 'len(d["payments"]) == 1 and d["payments"][0]["amount"] == "100" and d["payments"][0]["amount_minor"] == 10000 and d["payments"][0]["idempotency_key"] == "steward-%s-1" % arg[0] and set(["invoice","attempt","tenant","provider","idempotency_key","amount","amount_minor","currency","payment_intent","status","created","updated"]) <= set(d["payments"][0])' "$I1" <"$D/out" >/dev/null
ok $? "list: the attempt with the fields the page names"
run_block webhook
jx 'd == {"received": True, "id": "evt_test_1", "type": "customer.created", "duplicate": False, "outcome": "ignored", "invoice": None}' <"$D/out" >/dev/null
ok $? "the hand-signed webhook is answered as the page says ($(cat "$D/out"))"
run_block webhook
jx 'd["duplicate"] == True' <"$D/out" >/dev/null
ok $? "the same command again: a duplicate"

peer POST /_peer/outcomes '{"outcomes":["generic_decline"]}' >/dev/null
INVOICE=$I2
api POST /v1/billing/payments "{\"invoice\":\"$I2\"}" >/dev/null
retrying() { run_block dunning && jx 'd["dunning"]["state"] == "retrying"' <"$D/out" >/dev/null; }
wait_for 10 retrying
ok $? "dunning: the second invoice declined, the block shows it retrying ($(cat "$D/out"))"
jx 'd["dunning"]["invoice"] == arg[0] and d["dunning"]["tenant"] == "acme" and d["dunning"]["attempts"] == 1 and d["dunning"]["suspended"] == False and d["dunning"]["next_retry"]' "$I2" <"$D/out" >/dev/null
ok $? "with the fields the page names"
daemon_stop
exit $fail
