# The HTTP side of the billing API tests (source after tests/support/daemon.sh, once the daemon
# has started): U, the daemon's URL; H, the administrator's header; req HEADER METHOD PATH [JSON]
# (the body into $D/body, prints the status); is_active ID; billing_two_tenants: the tenants acme
# and globex, created and active, their own tokens in ATOK and GTOK.
U="http://127.0.0.1:$PORT"
H="Authorization: Bearer $TOKEN"
req() { curl -s -o "$D/body" -w '%{http_code}' -H "$1" -X "$2" ${4:+-H 'Content-Type: application/json' -d "$4"} "$U$3"; }
is_active() { req "$H" GET /v1/tenants/$1 >/dev/null; jx 'd["state"] == "active"' <"$D/body" >/dev/null; }

billing_two_tenants() {
    req "$H" POST /v1/tenants '{"id":"acme","name":"Acme"}' >/dev/null
    ATOK=$(jx 'd["admin_token"]["token"]' <"$D/body")
    req "$H" POST /v1/tenants '{"id":"globex","name":"Globex"}' >/dev/null
    GTOK=$(jx 'd["admin_token"]["token"]' <"$D/body")
    wait_for 20 is_active acme && wait_for 20 is_active globex
}
