#!/bin/bash
# Suspension across worker processes: the worker that suspends sees it at once, the others
# within a second (steward.tenants.suspension.REFRESH); every request then gets the 403,
# whichever worker the kernel hands the connection to, and resumption reaches them all.
set -u
export STEWARD_WORKERS=2
. "$(dirname "$0")/../support/daemon.sh"
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..3"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"Acme","contact":{"email":"ops@acme.test"}}' >/dev/null
ACME=$(jx 'd["admin_token"]["token"]' < "$D/body")
all() { # all STATUS: 20 fresh connections in a row all answer STATUS
    local i; for i in $(seq 20); do [ "$(api "$ACME" GET /v1/events)" = "$1" ] || return 1; done
}
wait_for 20 all 200; ok $? "the tenant's token works on every worker"
api "$TOKEN" POST /v1/tenants/acme/suspend '{"reason":"audit hold"}' >/dev/null
wait_for 10 all 403; ok $? "suspended: every worker answers 403 ($(head -c 200 "$D/body"))"
api "$TOKEN" POST /v1/tenants/acme/resume >/dev/null
wait_for 10 all 200; ok $? "resumed: every worker serves it again"
daemon_stop
exit $fail
