#!/bin/bash
# Dunning end to end on a real daemon with the Stripe-compatible peer: a declined collection
# starts it (billing.payment.failed -> the policy billing.dunning), the retries run on durable
# timers that survive a kill -9 of the daemon, the card is declined three times in all, the
# tenant hears of each failure (its branding) and is then suspended through steward.tenants
# (billing.dunning.exhausted); paying the invoice resumes it.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_payments.sh"
echo "1..14"
peer_start || exit 1
billing_secrets
billing_config '{ retries = { "1s", "2s" }, suspend = true, notify = { channel = "log" } }'
mkdir -p "$D/policies/billing"
cp "$here/policies/billing/dunning.lua" "$D/policies/billing/dunning.lua"
daemon_start || exit 1
peer_webhook

billing_catalog
INV=$(invoices_for acme 1)
tenant_is() { api GET /v1/tenants/acme >/dev/null; jx 'd["state"] == arg[0]' "$1" <"$D/body" >/dev/null; }
tenant_is active && [ -n "$INV" ]
ok $? "the tenant acme is active, its invoice of last month finalized ($INV)"
NUM=$(ev "return require('steward.billing.invoices').get('$INV').number" | tr -d '"')
ATOK=$(jx 'd["admin_token"]["token"]' <"$D/tenant.out")

peer POST /_peer/outcomes '{"outcomes":["generic_decline","insufficient_funds","generic_decline"]}' >/dev/null
code=$(api POST /v1/billing/payments "{\"invoice\":\"$INV\"}")
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "failed" and d["payment"]["decline_code"] == "generic_decline"' <"$D/body" >/dev/null
ok $? "the first collection is declined: failed, generic_decline ($(cat "$D/body"))"
dunning_is() { [ "$(api GET "/v1/billing/dunning/$INV")" = 200 ] && jx 'd["dunning"]["state"] == arg[0]' "$1" <"$D/body" >/dev/null; }
wait_for 10 dunning_is retrying
ok $? "the policy armed the retry: GET /v1/billing/dunning/{invoice} is retrying"

kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
cat "$D/log.new" >> "$D/log" # daemon_start starts a new one
daemon_start || exit 1
ok $? "the daemon is killed (-9) and started again"
peer_webhook
wait_for 30 tenant_is suspended
ok $? "after the retries the tenant is suspended"
api GET /v1/tenants/acme >/dev/null
jx 'd["reason"] == "unpaid invoice " + arg[0]' "$NUM" <"$D/body" >/dev/null
ok $? "the suspension's reason names the invoice ($(jx 'd.get("reason")' <"$D/body"))"
peer GET /_peer/intents | jx 'sorted([i["metadata"]["attempt"], i["status"]] for i in d["intents"] if i["metadata"]["invoice"] == arg[0]) == [["1", "requires_payment_method"], ["2", "requires_payment_method"], ["3", "requires_payment_method"]]' "$INV" >/dev/null
ok $? "three PaymentIntents, attempts 1 to 3, all declined"
[ "$(events_of billing.dunning.retry)" = 2 ] && [ "$(events_of billing.payment.failed)" = 3 ] && [ "$(events_of billing.dunning.exhausted)" = 1 ]
ok $? "events: billing.payment.failed x3, billing.dunning.retry x2 (the timers, one across the restart), billing.dunning.exhausted x1"
cat "$D/log" "$D/log.new" > "$D/all.log"
[ "$(grep -o "msg=notification channel=billing-dunning key=billing.dunning:$INV:[0-9]*" "$D/all.log" | sed 's/.*://' | sort -u | tr '\n' ' ')" = "1 2 3 " ]
ok $? "one notification per failed attempt"
grep 'channel=billing-dunning' "$D/all.log" | grep 'attempt=3' | grep -q 'acme Cloud billing, 1 Main St' &&
    grep 'channel=billing-dunning' "$D/all.log" | grep 'attempt=3' | grep -q 'the account is suspended'
ok $? "branded with the tenant's footer; the last one says the account is suspended"
code=$(curl -s -o "$D/body" -w '%{http_code}' -H "Authorization: Bearer $ATOK" "http://127.0.0.1:$PORT/v1/tenants/acme")
[ "$code" = 403 ] && jx 'd["error"]["code"] == "tenant_suspended"' <"$D/body" >/dev/null
ok $? "the tenant's token is refused while suspended ($code)"

code=$(api POST /v1/billing/payments "{\"invoice\":\"$INV\"}")
[ "$code" = 200 ] && jx 'd["payment"]["status"] == "succeeded" and d["payment"]["attempt"] == 4' <"$D/body" >/dev/null
ok $? "the invoice is paid (attempt 4, the card now good) ($(cat "$D/body"))"
wait_for 10 tenant_is active
ok $? "the tenant is resumed"
dunning_is paid && [ "$(invoice_state "$INV")" = paid ]
ok $? "the invoice is paid and its dunning over"
daemon_stop
exit $fail
