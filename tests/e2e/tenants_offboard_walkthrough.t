#!/bin/bash
# docs/tenants.md, the sections Suspension, Offboarding and White-label, block by block (the
# blocks marked "tenants-h9: NAME"), against a daemon: the page's curl and steward commands run
# in a directory laid out as the page assumes (var/ and steward.lua beside them). Only the port
# and the record's version in the PATCH (the page says 1; provisioning has moved it) change.
set -u
. "$(dirname "$0")/../support/daemon.sh"
W="$D/run"
mkdir -p "$D/var" "$W" && ln -s "$D/var" "$W/var"
block() {
    awk -v m="<!-- tenants-h9: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/tenants.md"
}
sh_block() {
    block "$1" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s#^steward #\"$BIN\" #" "${@:2}" > "$W/$1.sh"
    (cd "$W" && bash "$W/$1.sh")
}
cat > "$D/policies/limits.lua" <<'POL'
return { name = "limits", on = { "usage.*" },
  config = { max_units = { type = "number", default = 10, min = 1 } }, handle = function() end }
POL
daemon_config ""
cp "$D/steward.lua" "$W/steward.lua"
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..14"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"Acme","contact":{"email":"ops@acme.test"}}' >/dev/null
ACME_TOKEN=$(jx 'd["admin_token"]["token"]' < "$D/body")
export TOKEN ACME_TOKEN
state() { api "$TOKEN" GET /v1/tenants/acme >/dev/null; [ "$(jx 'd["state"]' < "$D/body")" = "$1" ]; }
wait_for 20 state active; ok $? "tenant acme is active"
api "$TOKEN" POST /v1/events '[{"id":"u1","type":"usage.recorded","tenant":"acme","data":{"units":1}},{"id":"u2","type":"usage.recorded","tenant":"acme","data":{"units":2}}]' >/dev/null

sh_block suspend > "$D/out"; state suspended; ok $? "block suspend: acme is suspended ($(head -c 200 "$D/out"))"
sh_block suspended-token > "$D/got"
block suspended-answer > "$D/want"
/usr/bin/python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(a != b)' "$D/got" "$D/want"
ok $? "block suspended-token answers the page's JSON ($(cat "$D/got"))"
sh_block suspended-ingest > "$D/got"
ok $([ "$(jx 'd["error"]["code"]' < "$D/got")" = tenant_suspended ]; echo $?) "block suspended-ingest is refused ($(head -c 200 "$D/got"))"
sh_block resume > /dev/null; s=$(api "$ACME_TOKEN" GET /v1/events)
ok $([ "$s" = 200 ]; echo $?) "block resume: the tenant's token works again ($s)"

block dunning > "$W/dunning.lua"
"$BIN" eval --local "local f = assert(io.open('$W/dunning.lua')) local p = assert(loadstring(f:read('*a')))() return p.name" > "$D/out" 2>&1
ok $(grep -q billing.dunning "$D/out"; echo $?) "the page's dunning policy compiles ($(head -c 200 "$D/out"))"

V=$(api "$TOKEN" GET /v1/tenants/acme >/dev/null; jx 'd["version"]' < "$D/body")
sh_block branding -e "s/\"version\": 1/\"version\": $V/" > "$D/got"
ok $([ "$(jx 'd["branding"]["color"]' < "$D/got")" = "#ff6600" ]; echo $?) "block branding sets the branding ($(head -c 200 "$D/got"))"
sh_block template > "$D/got" 2>&1
ok $(grep -q true "$D/got"; echo $?) "block template stores the tenant's template ($(head -c 200 "$D/got"))"
V=$(api "$TOKEN" GET /v1/tenants/acme >/dev/null; jx 'd["version"]' < "$D/body")
s=$(api "$TOKEN" PATCH /v1/tenants/acme "{\"version\":$V,\"config\":{\"limits\":{\"max_units\":\"many\"}}}")
ok $([ "$s" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "config.limits" and "max_units" in d["error"]["details"]["errors"][0]["reason"]' < "$D/body" >/dev/null; echo $?) "a config the policy's schema refuses is a 400 naming the field ($s $(head -c 200 "$D/body"))"

sh_block offboard > "$D/out" 2>&1
done_() { [ "$("$BIN" eval --socket "$D/var/steward.sock" 'return require("steward.tenants.offboard").status("acme").phase' 2>/dev/null)" = '"done"' ]; }
wait_for 20 done_; ok $? "block offboard: the offboarding finishes ($(head -c 300 "$D/out"))"
wait_for 10 state removed; ok $? "the record ends removed"
sh_block verify > "$D/out" 2>&1
ok $(grep -q '^ok: tenant acme' "$D/out" && grep -q 'events [1-9]' "$D/out" && grep -q 'kv 1' "$D/out"; echo $?) "block verify: the archive verifies, with the events and the template ($(head -c 300 "$D/out"))"
ok $(grep -q '"format":"steward-tenant-export' "$D/out"; echo $?) "block verify: cat-export prints the archive's header line"
sh_block audit > "$D/out" 2>&1
ok $(grep -q '"target":"acme"' "$D/out"; echo $?) "block audit shows the proof ($(head -c 200 "$D/out"))"
daemon_stop
exit $fail
