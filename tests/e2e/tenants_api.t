#!/bin/bash
# The tenants' HTTP API on a real daemon (SQLite, no PostgreSQL): POST /v1/tenants answers the
# record in state requested and the admin token once, the saga takes it to active, the token
# then reads its own record and nothing else (another tenant's is a 404, the list a 403);
# refusals name the field; PATCH is optimistic (409 on a stale version); suspend, resume and
# offboard move the state (409 from the wrong one) and are tenant.* events; every change is in
# the audit log; a restart keeps everything; the REPL shows tenants() and tenant(id).
. "$(dirname "$0")/../support/daemon.sh"
echo "1..28"
daemon_config 'tenants = { plans = { basic = {}, gold = { rate = { ingest = 1000 }, quotas = { instances = 3 } } } },'
daemon_start || exit 1
U="http://127.0.0.1:$PORT"
H="Authorization: Bearer $TOKEN"
req() { curl -s -o "$D/body" -w '%{http_code}' -H "$1" -X "$2" ${4:+-d "$4"} "$U$3"; }

code=$(req "$H" POST /v1/tenants '{"id":"acme","name":"Acme","plan":"gold","contact":{"email":"ops@acme.test"},"branding":{"color":"#112233","footer":"Acme Ops"}}')
[ "$code" = 201 ] && jx 'd["state"] == "requested" and d["version"] == 1' <"$D/body" >/dev/null
ok $? "POST /v1/tenants: 201, state requested ($code)"
ATOK=$(jx 'd["admin_token"]["token"]' <"$D/body")
[ -n "$ATOK" ] && [ "$(jx 'd["admin_token"]["id"]' <"$D/body")" = tenant-acme-admin ]
ok $? "the answer carries the tenant's admin token, once"
is_active() { req "$H" GET /v1/tenants/$1 >/dev/null; jx 'd["state"] == "active"' <"$D/body" >/dev/null; }
wait_for 20 is_active acme
ok $? "the provisioning saga takes acme to active"
req "$H" GET /v1/tenants/acme/saga >/dev/null
[ "$(jx '",".join(s["step"] + ":" + s["status"] for s in d["steps"])' <"$D/body")" = \
  "tokens:done,postgres:done,limits:done,config:done,branding:done,welcome:done" ]
ok $? "GET /v1/tenants/acme/saga: every step done, in order"
grep -q 'msg=notification channel=tenant-welcome' "$D/log.new" && grep -q 'Welcome to Acme' "$D/log.new"
ok $? "the welcome notification went out (log channel by default) with the branding"
! grep -rq "$ATOK" "$D/log.new"
ok $? "the token's secret is not in the log"

code=$(req "Authorization: Bearer $ATOK" GET /v1/tenants/acme)
[ "$code" = 200 ] && jx 'd["id"] == "acme"' <"$D/body" >/dev/null
ok $? "the tenant's token reads its own record ($code)"
req "$H" POST /v1/tenants '{"id":"globex","name":"Globex"}' >/dev/null
wait_for 20 is_active globex
code=$(req "Authorization: Bearer $ATOK" GET /v1/tenants/globex)
[ "$code" = 404 ] && ! grep -q Globex "$D/body"
ok $? "another tenant's record is a 404 without its data ($code)"
code=$(req "Authorization: Bearer $ATOK" GET /v1/tenants)
[ "$code" = 403 ]
ok $? "the list is not for tenant tokens: 403 ($code)"
code=$(req "Authorization: Bearer $ATOK" POST /v1/tenants/globex/suspend '{}')
[ "$code" = 403 ]
ok $? "a tenant's token cannot suspend: 403 ($code)"

code=$(req "$H" POST /v1/tenants '{"id":"Bad Id","name":"x"}')
[ "$code" = 400 ] && [ "$(jx 'd["error"]["details"]["errors"][0]["field"]' <"$D/body")" = id ]
ok $? "a bad id: 400 naming the field"
code=$(req "$H" POST /v1/tenants '{"id":"x1","name":"x","plan":"platinum"}')
[ "$code" = 400 ] && [ "$(jx 'd["error"]["details"]["errors"][0]["field"]' <"$D/body")" = plan ] && grep -q "basic, gold" "$D/body"
ok $? "an unknown plan: 400 naming the field and the plans"
code=$(req "$H" POST /v1/tenants '{"id":"x2","name":"x","branding":{"colour":"#000000"}}')
[ "$code" = 400 ] && [ "$(jx 'd["error"]["details"]["errors"][0]["field"]' <"$D/body")" = branding.colour ]
ok $? "an unknown branding field: 400 naming it"
code=$(req "$H" POST /v1/tenants '{"id":"acme","name":"Again"}')
[ "$code" = 409 ]
ok $? "an existing id: 409 ($code)"

code=$(req "$H" PATCH /v1/tenants/acme '{"name":"Acme Corp","version":3}')
[ "$code" = 200 ] && jx 'd["name"] == "Acme Corp" and d["version"] == 4' <"$D/body" >/dev/null
ok $? "PATCH with the current version: 200, version 4 ($code)"
code=$(req "$H" PATCH /v1/tenants/acme '{"name":"Stale","version":3}')
[ "$code" = 409 ] && jx 'd["error"]["details"]["version"] == 4' <"$D/body" >/dev/null
ok $? "PATCH with a stale version: 409 naming the current one ($code)"
code=$(req "$H" PATCH /v1/tenants/acme '{"name":"No version"}')
[ "$code" = 400 ] && grep -q '"field":"version"' "$D/body"
ok $? "PATCH without a version: 400 naming version"
code=$(req "$H" PATCH /v1/tenants/acme '{"state":"active","version":4}')
[ "$code" = 400 ] && grep -q '"field":"state"' "$D/body"
ok $? "the state cannot be patched: 400 naming it"

code=$(req "$H" POST /v1/tenants/acme/suspend '{"reason":"invoice 42 unpaid"}')
[ "$code" = 200 ] && jx 'd["state"] == "suspended" and d["reason"] == "invoice 42 unpaid"' <"$D/body" >/dev/null
ok $? "suspend: 200, suspended with the reason ($code)"
code=$(req "$H" POST /v1/tenants/acme/suspend '{}')
[ "$code" = 409 ] && grep -q 'invalid state: suspended' "$D/body"
ok $? "a second suspend: 409 naming the state ($code)"
code=$(req "$H" POST /v1/tenants/acme/resume '')
[ "$code" = 200 ] && jx 'd["state"] == "active"' <"$D/body" >/dev/null
ok $? "resume: 200, active ($code)"
code=$(req "$H" POST /v1/tenants/globex/offboard '')
[ "$code" = 202 ] && jx 'd["state"] == "offboarding"' <"$D/body" >/dev/null
ok $? "offboard: 202, offboarding ($code)"

req "$H" GET "/v1/events?tenant=acme&type=tenant.*" >/dev/null
[ "$(jx '",".join(e["type"] for e in d["events"])' <"$D/body")" = \
  "tenant.requested,tenant.provisioning,tenant.provisioned,tenant.updated,tenant.suspended,tenant.resumed" ]
ok $? "the tenant.* events of acme, in order"

daemon_stop
"$BIN" audit -c "$D/steward.lua" --json --limit 1000 > "$D/audit" 2>/dev/null
for a in tenant.create tenant.update tenant.suspend tenant.resume tenant.offboard; do
    grep "\"command\":\"$a\"" "$D/audit" | grep -q '"outcome":"ok"' || { echo "# no $a"; false; } || break
done
ok $? "every change is in the audit log"
grep '"command":"tenant.update"' "$D/audit" | grep -q '"outcome":"refused"'
ok $? "... refusals too"

daemon_start || exit 1
U="http://127.0.0.1:$PORT"
code=$(req "Authorization: Bearer $ATOK" GET /v1/tenants/acme)
[ "$code" = 200 ]
ok $? "after a restart the tenant's token still works ($code)"
out=$("$BIN" eval --socket "$D/var/steward.sock" 'return tenants()' 2>&1)
# (steward.tenants.offboard may have finished globex's offboarding by now: removed)
echo "$out" | grep -q acme && echo "$out" | grep -Eq 'offboarding|removed'
ok $? "REPL tenants() lists them"
out=$("$BIN" eval --socket "$D/var/steward.sock" 'return tenant("acme").saga.state' 2>&1)
[ "$out" = '"done"' ] || [ "$out" = done ]
ok $? "REPL tenant(id) shows the saga ($out)"
daemon_stop
exit $fail
