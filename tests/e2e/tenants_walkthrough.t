#!/bin/bash
# docs/tenants.md followed block by block on a real PostgreSQL: the page's steward.lua lines,
# its curl commands (create, the saga, the tenant's token, a PATCH), its psql row-level security
# check and its steward eval commands, run in a directory laid out as the page assumes (var/
# beside the files). Only the ports change (localhost:8080 and localhost:5432 become ours).
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$(dirname "$0")/../support/pg.sh"
pg_start || exit 1
trap 'daemon_cleanup; pg_stop' EXIT
echo "1..9"
# block NAME: the code block after "<!-- walkthrough: NAME -->" in docs/tenants.md
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/tenants.md"
}
ports() { sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s/localhost:5432/127.0.0.1:$PG_PORT/g"; }
# sh_block NAME: runs a shell block in the page's directory, on our ports, with our binaries
sh_block() {
    block "$1" | ports | sed -e "s#^steward #\"$BIN\" #" -e "s#^psql #$PG_BIN/psql #" > "$W/$1.sh"
    (cd "$W" && bash "$W/$1.sh" 2>&1)
}
W="$D/run"
mkdir -p "$D/var" "$W" && ln -s "$D/var" "$W/var"

daemon_config "$(block steward.lua | sed -e "s/localhost:5432/127.0.0.1:$PG_PORT/g")"
daemon_start || exit 1
export TOKEN

out=$(sh_block create)
echo "$out" | jx 'd["state"] == "requested" and d["plan"] == "gold"' >/dev/null
ok $? "create: the record in state requested"
ACME_TOKEN=$(echo "$out" | jx 'd["admin_token"]["token"]')
export ACME_TOKEN
is_active() { curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/tenants/acme" | jx 'd["state"] == "active"' >/dev/null 2>&1; }
wait_for 30 is_active
ok $? "the saga takes acme to active"
out=$(sh_block saga)
[ "$(echo "$out" | jx '"%s %d %s" % (d["state"], len(d["steps"]), d["steps"][1]["result"]["role"])')" = "done 6 tenant_acme" ]
ok $? "saga: done, six steps, the role tenant_acme"
out=$(sh_block token)
echo "$out" | jx 'd["id"] == "acme" and d["state"] == "active"' >/dev/null
ok $? "the tenant's token reads its record"
# globex, for the page's row-level security check
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"id":"globex","name":"Globex"}' "http://127.0.0.1:$PORT/v1/tenants"
out=$(sh_block rls)
echo "$out" | grep -qx 'acme|plan' && ! echo "$out" | grep -q 'globex|'
ok $? "rls: as tenant_acme only acme's row is visible"
echo "$out" | grep -q 'new row violates row-level security policy for table "steward_tenant_data"'
ok $? "rls: writing globex's row is refused, as the page says"
out=$(sh_block patch)
echo "$out" | jx 'd["version"] == 4 and d["limits"]["rate"]["ingest"] == 500' >/dev/null
ok $? "patch with version 3 applies (version 4)"
out=$(sh_block patch)
echo "$out" | jx 'd["error"]["code"] == "conflict"' >/dev/null
ok $? "the same patch again is a conflict"
out=$(sh_block repl)
echo "$out" | grep -q acme && echo "$out" | grep -q gold && echo "$out" | tail -1 | grep -q done
ok $? "repl: tenants() and tenant(id).saga.state"
daemon_stop
exit $fail
