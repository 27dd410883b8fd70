#!/bin/bash
# Suspension and offboarding through steward.tenants' API (docs/tenants.md): POST
# /v1/tenants/{id}/suspend with a reason makes the tenant's own admin token answer 403
# tenant_suspended with that reason; resume restores it; offboard ends with the record
# removed and a signed archive that verifies.
set -u
. "$(dirname "$0")/../support/daemon.sh"
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..7"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@" | tr -d '"'; }
s=$(api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"Acme","contact":{"email":"ops@acme.test"}}')
ACME=$(jx 'd["admin_token"]["token"]' < "$D/body")
state() { api "$TOKEN" GET /v1/tenants/acme >/dev/null; [ "$(jx 'd["state"]' < "$D/body")" = "$1" ]; }
wait_for 20 state active; ok $? "tenant acme provisioned ($s)"
s=$(api "$ACME" GET /v1/events)
ok $([ "$s" = 200 ]; echo $?) "its admin token works ($s)"
api "$TOKEN" POST /v1/tenants/acme/suspend '{"reason":"dunning: invoice 42 unpaid"}' >/dev/null
s=$(api "$ACME" GET /v1/events)
ok $([ "$s" = 403 ] && [ "$(jx 'd["error"]["message"]' < "$D/body")" = "tenant acme is suspended: dunning: invoice 42 unpaid" ]; echo $?) \
    "suspended through the API: 403 with the reason ($s $(cat "$D/body"))"
api "$TOKEN" POST /v1/tenants/acme/resume >/dev/null
s=$(api "$ACME" GET /v1/events)
ok $([ "$s" = 200 ]; echo $?) "resumed: the token works again ($s)"
api "$TOKEN" POST /v1/events '{"id":"a1","type":"work.x","tenant":"acme"}' >/dev/null
s=$(api "$TOKEN" POST /v1/tenants/acme/offboard)
wait_for 20 state removed; ok $? "offboarded: the record ends removed ($s)"
a=$(ev "return require('steward.tenants.offboard').status('acme').archive")
"$BIN" tenants verify-export "$a" -c "$D/steward.lua" > "$D/v" 2>&1
ok $([ $? = 0 ] && grep -q "events [1-9]" "$D/v" && grep -q "tenant 1" "$D/v"; echo $?) "its archive verifies, with its events and record ($(cut -c1-300 "$D/v"))"
s=$(api "$ACME" GET /v1/events)
ok $([ "$s" = 401 ] || [ "$s" = 403 ]; echo $?) "the tenant's token no longer works ($s)"
daemon_stop
exit $fail
