#!/bin/bash
# docs/billing.md followed block by block against one daemon: its steward.lua lines (the Stripe
# URL pointed at tests/support/stripe_peer.py, the webhook secret's file at ours), then each
# shell block run in one shell, in the page's order, in the daemon's directory, as a reader
# would paste them; what the page says each block prints is checked. A block of the page that
# this test does not run (or a name it runs that the page lacks) fails the first test.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_payments.sh"
for c in weasyprint pdftotext; do
    command -v $c >/dev/null || { echo "1..0 # SKIP $c is not installed (deps/packages.txt)"; exit 0; }
done
echo "1..24"
PAGE="$here/docs/billing.md"
# the page's blocks, in the order they are run here
NAMES="env config plan tenant subscribe usage duplicate usage-read invoicing draft finalize pdf pay forged revenue mrr declined dunning dunning-state"
# block NAME: the code block after "<!-- billing: NAME -->" in the page
block() {
    awk -v m="<!-- billing: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' "$PAGE"
}
# every sh or lua block comes right after its marker (the unmarked ones are outputs), and the
# markers are NAMES, in this order
marked=$(awk '/^<!-- billing: / { m = $3; next } /^```(sh|lua)$/ { print (m == "" ? "UNMARKED" : m) } { if ($0 != "") m = "" }' "$PAGE" | tr '\n' ' ')
[ "$marked" = "$NAMES " ]
ok $? "every block of the page is run by this test, in order (page: $marked)"

peer_start || exit 1
billing_secrets
export STRIPE_SECRET_KEY=$STRIPE_KEY
block config | sed -e "s#https://api.stripe.com#$PEER#" -e "s#/etc/steward/stripe-whsec#$D/whsec#" > "$D/config.lua"
daemon_config "$(cat "$D/config.lua")"
billing_policies
daemon_start
ok $? "the daemon starts with the page's configuration and the shipped policies/billing"
peer_webhook

# run NAME: the block in this shell (its variables stay for the next ones), in the daemon's
# directory, on our port; its output in $D/NAME.out
run() {
    block "$1" | sed -e "s#localhost:8080#127.0.0.1:$PORT#g" > "$D/$1.sh"
    [ -s "$D/$1.sh" ] || { echo "# no block $1"; return 1; }
    local back=$PWD
    cd "$D" && . "$D/$1.sh" > "$D/$1.out" 2>&1
    local rc=$?
    cd "$back"
    return $rc
}
out() { cat "$D/$1.out"; }

run env && [ "$TOKEN" = "$(cat "$D/var/admin.token")" ] && [ "$STEWARD" = "http://127.0.0.1:$PORT" ] &&
    [ "$MONTH" = "$(date -u -d "$(date -u +%Y-%m-01) -1 month" +%Y-%m)" ]
ok $? "env: the token, the address and last month"

run plan && [ "$(out plan | sed -n 3p | jx '"%s %d %s %s" % (d["plan"]["code"], d["plan"]["version"], d["plan"]["amount"], d["plan"]["currency"])')" = "pro 1 49 EUR" ]
ok $? "plan: two metrics, then pro version 1 at 49 EUR ($(out plan | tail -1 | cut -c1-200))"

run tenant
is_active() { curl -s -H "Authorization: Bearer $TOKEN" "$STEWARD/v1/tenants/acme" | jx 'd["state"] == "active"' >/dev/null 2>&1; }
out tenant | jx 'd["id"] == "acme"' >/dev/null && wait_for 30 is_active
ok $? "tenant: acme created, active once its saga is done"

run subscribe && [ "$(out subscribe)" = "pro active $FIRST" ]
ok $? "subscribe: prints pro active <first of last month> ($(out subscribe))"

run usage && [ "$(out usage)" = "252 0 0" ]
ok $? "usage: prints 252 0 0 ($(out usage | cut -c1-200))"

run duplicate && out duplicate | jx 'd["accepted"] == 0 and d["duplicates"] == 1 and d["events"][0]["status"] == "duplicate" and d["events"][0]["transaction_id"] == "call-1"' >/dev/null
ok $? "duplicate: the re-sent call-1 is reported as a duplicate"

recorded() { run usage-read && [ "$(out usage-read)" = "252" ]; }
wait_for 30 recorded
ok $? "usage-read: the policy recorded 252 events ($(out usage-read))"

run invoicing
has_invoice() { curl -s -H "Authorization: Bearer $TOKEN" "$STEWARD/v1/billing/invoices?subscription=$SUB" | jx 'len(d["invoices"]) == 1' >/dev/null 2>&1; }
wait_for 30 has_invoice
ok $? "invoicing: the policy built last month's invoice"

run draft
cat > "$D/draft.want" <<'EOF'
draft EUR
subscription 1 49.00
charge:calls 250 7.50
charge:storage 120.5 12.05
TVA 20 13.71
subtotal 68.55 tax 13.71 total 82.26
EOF
diff "$D/draft.want" "$D/draft.out" >/dev/null
ok $? "draft: the lines, the tax and the total the page shows"
# the page's output block is what the test compares with
awk '$0 == "<!-- billing: draft -->" { f = 1; next } f && /^```/ { n++; next } n == 3 { print } n == 4 { exit }' "$PAGE" |
    diff - "$D/draft.want" >/dev/null
ok $? "draft: the page's printed output is the one checked"

run finalize && [ "$(out finalize)" = "INV-000001 finalized 82.26 Acme SAS" ]
ok $? "finalize: prints INV-000001 finalized 82.26 Acme SAS ($(out finalize))"

run pdf && grep -q 'Acme Cloud' "$D/pdf.out" && grep -q 'INV-000001' "$D/pdf.out" && grep -Eq 'Total due.*EUR 82\.26' "$D/pdf.out"
ok $? "pdf: pdftotext shows the brand, the number and Total due EUR 82.26 ($(tr '\n' '|' < "$D/pdf.out"))"

run pay && [ "$(out pay | tr '\n' ' ')" = "succeeded pi_ paid stripe " ]
ok $? "pay: succeeded, the invoice paid through stripe ($(out pay | tr '\n' ' '))"
curl -s -H "Authorization: Bearer $TOKEN" "$STEWARD/v1/billing/payments?invoice=$INVOICE" |
    jx 'len(d["payments"]) == 1 and d["payments"][0]["amount_minor"] == 8226 and d["payments"][0]["amount"] == "82.26" and d["payments"][0]["currency"] == "EUR"' >/dev/null
ok $? "pay: one PaymentIntent of 8226 cents, as the page says"
# the peer's signed payment_intent.succeeded webhook came through the signature check
webhooked() {
    [ "$(ev "return #require('steward.runtime.store').default().db:query(\"SELECT id FROM billing_webhook_events WHERE type = 'payment_intent.succeeded' AND invoice = '$INVOICE'\")")" = "1" ]
}
wait_for 30 webhooked
ok $? "the signed payment_intent.succeeded webhook was verified and recorded once"

run forged && out forged | jx 'd["error"]["code"] == "bad_signature"' >/dev/null
ok $? "forged: an unsigned webhook is refused, bad_signature ($(out forged | cut -c1-200))"

run revenue && [ "$(out revenue | tr '\n' '|')" = "$MONTH 0 68.55 0 -68.55|$(date -u +%Y-%m) 68.55 0 -68.55 0|" ]
ok $? "revenue: last month earned, this month invoiced, deferred back to 0 ($(out revenue | tr '\n' '|' | cut -c1-300))"
# the page's output block, months named
awk '$0 == "<!-- billing: revenue -->" { f = 1; next } f && /^```/ { n++; next } n == 3 { print } n == 4 { exit }' "$PAGE" |
    sed -e "s/<last month>/$MONTH/" -e "s/<this month>/$(date -u +%Y-%m)/" | diff - "$D/revenue.out" >/dev/null
ok $? "revenue: the page's printed output is the one checked"

run mrr && [ "$(out mrr)" = "0.00 49.00 49.00 1" ]
ok $? "mrr: prints 0.00 49.00 49.00 1 ($(out mrr | tr '\n' ' ' | cut -c1-300))"
run declined
globex_invoice() { curl -s -H "Authorization: Bearer $TOKEN" "$STEWARD/v1/billing/invoices?subscription=$GLOBEX" | jx 'len(d["invoices"]) == 1' >/dev/null 2>&1; }
wait_for 30 globex_invoice
ok $? "declined: globex, its subscription, its invoice built"
run dunning && [ "$(out dunning | tr '\n' '|')" = "INV-000002 58.80|failed generic_decline|" ]
ok $? "dunning: INV-000002 58.80, failed generic_decline ($(out dunning | tr '\n' '|' | cut -c1-300))"
# the policy billing.dunning answers the failure: the state block (a GET) polled until it does
dunned() { run dunning-state && [ "$(out dunning-state)" = "retrying 1 False" ]; }
wait_for 20 dunned
ok $? "dunning-state: retrying 1 False ($(out dunning-state | cut -c1-300))"
daemon_stop
exit $fail
