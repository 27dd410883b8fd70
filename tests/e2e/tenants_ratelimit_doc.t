#!/bin/bash
# docs/tenants.md "Isolation and limits", block by block: the page's `tenants` config lines go
# into a daemon's steward.lua, its flood loop and its 429 request run as written (only the
# port changed) with a token of tenant acme, and what they print is what the page shows.
set -u
. "$(dirname "$0")/../support/daemon.sh"
echo "1..6"
# block NAME: the code block after "<!-- walkthrough: NAME -->" in docs/tenants.md
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/tenants.md"
}
cfg=$(block limits-config)
[ -n "$cfg" ]; ok $? "the page has its config block"
daemon_config "$cfg"
daemon_start; ok $? "a daemon starts with the page's tenants config"
ACME_TOKEN=$(curl -s -H "Authorization: Bearer $TOKEN" -d '{"role":"ingest","tenant":"acme","name":"doc"}' \
    "http://127.0.0.1:$PORT/v1/tokens" | jx 'd["token"]')
export ACME_TOKEN
run_block() { block "$1" | sed "s/localhost:8080/127.0.0.1:$PORT/g" > "$D/$1.sh"; bash "$D/$1.sh"; }
flood=$(run_block limits-flood)
out=$(run_block limits-429 | tr -d '\r') # at once: the bucket refills one token in 2 s
want=$(block limits-flood | sed -n 's/^# //p')
echo "# got: $flood"
[ "$flood" = "$want " ] || [ "$flood" = "$want" ]; ok $? "the flood loop prints what the page shows ($want)"
echo "$out" | head -1 | grep -q '^HTTP/1.1 429'; ok $? "the next request: HTTP/1.1 429 ($(echo "$out" | head -1))"
ra=$(echo "$out" | sed -n 's/^[Rr]etry-[Aa]fter: *//p')
[ -n "$ra" ] && [ "$ra" -ge 1 ]; ok $? "with Retry-After ($ra)"
echo "$out" | tail -1 | jx 'd["error"]["code"] == "rate_limited" and d["error"]["details"]["tenant"] == "acme" and d["error"]["details"]["limit"]["ingest"] == 0.5 and d["error"]["details"]["limit"]["burst"] == 10 and "ingest rate limit of 0.5 events/s (burst 10)" in d["error"]["message"]' >/dev/null
ok $? "and the body the page shows: $(echo "$out" | tail -1 | head -c 300)"
daemon_stop
exit $fail
