#!/bin/bash
# Suspending a tenant (steward.tenants.suspension, docs/tenants.md "Suspension"): its tokens
# get 403 tenant_suspended on every route, its events are refused whoever posts them, the
# events already queued for its policies are held (across a kill -9) and handled in order
# after resumption; another tenant is untouched.
set -u
. "$(dirname "$0")/../support/daemon.sh"
mkdir -p "$D/handled"
cat > "$D/policies/work.lua" <<POL
local fs = require "steward.fs"
local time = require "steward.time"
local n = 0 -- the order of handling in this process
return { name = "work", on = { "work.*" }, capabilities = { "fs.read", "fs.write" },
  handle = function(ev)
    -- The gate holds the tenant's key (and so every later event of it) until the test opens it.
    if ev.type == "work.gate" then
      while not fs.exists("$D/gate") do time.sleep(0.02) end
    end
    n = n + 1
    fs.write("$D/handled/" .. ev.id, n .. "\n")
  end }
POL
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..16"
api() { # api TOKEN METHOD PATH [BODY] -> body in $D/body, status echoed
    local tok=$1 m=$2 p=$3; shift 3
    curl -s -o "$D/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $tok" \
        ${1:+-H 'Content-Type: application/json' -d "$1"} "http://127.0.0.1:$PORT$p"
}
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@"; }
handled() { [ -f "$D/handled/$1" ]; }
ACME=$(api "$TOKEN" POST /v1/tokens '{"role":"operator","tenant":"acme"}' >/dev/null; jx 'd["token"]' < "$D/body")
GLOBEX=$(api "$TOKEN" POST /v1/tokens '{"role":"operator","tenant":"globex"}' >/dev/null; jx 'd["token"]' < "$D/body")

# acme's key is held by the gate, with three events queued behind it.
s=$(api "$TOKEN" POST /v1/events '[{"id":"g1","type":"work.gate","tenant":"acme"},
  {"id":"a1","type":"work.x","tenant":"acme"},{"id":"a2","type":"work.x","tenant":"acme"},
  {"id":"a3","type":"work.x","tenant":"acme"}]')
ok $([ "$s" = 202 ]; echo $?) "acme's events accepted before the suspension ($s)"

ev 'return require("steward.tenants.suspension").apply("acme", true, "unpaid invoice")' > "$D/out" 2>&1
ok $? "suspension.apply(acme, true) in the daemon ($(head -c 200 "$D/out"))"

all403=0
for route in "GET /v1/events" "GET /v1/decisions" "GET /v1/routes" "GET /v1/tokens" "GET /v1/policies"; do
    s=$(api "$ACME" $route)
    code=$(jx 'd["error"]["code"]' < "$D/body")
    msg=$(jx 'd["error"]["message"]' < "$D/body")
    if [ "$s" != 403 ] || [ "$code" != tenant_suspended ] || [ "$msg" != "tenant acme is suspended: unpaid invoice" ]; then
        all403=1; echo "# $route: $s $(cat "$D/body")"
    fi
done
ok $all403 "acme's token: 403 tenant_suspended naming the tenant and the reason on every route tried"
s=$(api "$ACME" POST /v1/events '{"type":"work.x"}')
ok $([ "$s" = 403 ] && [ "$(jx 'd["error"]["code"]' < "$D/body")" = tenant_suspended ]; echo $?) "acme's token cannot ingest ($s)"
s=$(api "$TOKEN" POST /v1/events '[{"id":"gx","type":"work.x","tenant":"globex"},{"id":"ax","type":"work.x","tenant":"acme"}]')
ok $([ "$s" = 403 ] && jx '"tenant acme is suspended" in d["error"]["message"] and d["error"]["details"]["errors"][0]["index"] == 1' < "$D/body" >/dev/null; echo $?) \
    "the admin token posting an acme event: 403 naming acme, the batch refused whole ($s $(head -c 300 "$D/body"))"
s=$(api "$TOKEN" POST /v1/events '[{"id":"ay","type":"work.x","tenant":"\u0061cme"}]')
ok $([ "$s" = 403 ]; echo $?) "an escaped tenant name does not slip past ($s)"
s=$(api "$GLOBEX" GET /v1/events)
ok $([ "$s" = 200 ]; echo $?) "globex's token still works ($s)"

# Open the gate: g1 finishes, a1..a3 stay held; globex's marker, posted after, is handled.
touch "$D/gate"
wait_for 10 handled g1; ok $? "the gate's handler finished"
s=$(api "$GLOBEX" POST /v1/events '{"id":"m1","type":"work.x"}')
wait_for 10 handled m1; ok $? "globex's event is handled while acme is suspended ($s)"
ok $([ ! -e "$D/handled/a1" ] && [ ! -e "$D/handled/a2" ] && [ ! -e "$D/handled/a3" ]; echo $?) "acme's queued events are held, not handled"

# kill -9 while held: they are still held after the restart (durable), nothing lost.
daemon_stop KILL
daemon_start || { echo "# restart failed"; exit 1; }
s=$(api "$GLOBEX" POST /v1/events '{"id":"m2","type":"work.x"}')
wait_for 10 handled m2; ok $? "after kill -9 and a restart, globex is handled ($s)"
s=$(api "$ACME" GET /v1/events)
ok $([ "$s" = 403 ] && [ ! -e "$D/handled/a1" ]; echo $?) "after the restart acme is still suspended and its events still held ($s)"

ev 'return require("steward.tenants.suspension").apply("acme", false)' > "$D/out" 2>&1
ok $? "suspension.apply(acme, false) ($(head -c 200 "$D/out"))"
wait_for 10 handled a3; ok $? "after resumption the held events are handled"
order=$(cat "$D/handled/a1" "$D/handled/a2" "$D/handled/a3" 2>/dev/null | tr '\n' ' ')
ok $(set -- $order; [ $# = 3 ] && [ "$1" -lt "$2" ] && [ "$2" -lt "$3" ]; echo $?) "a1, a2, a3 handled in log order ($order)"
s=$(api "$ACME" GET /v1/events)
ok $([ "$s" = 200 ]; echo $?) "acme's token works again ($s)"
daemon_stop
exit $fail
