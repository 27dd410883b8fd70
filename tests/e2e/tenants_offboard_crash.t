#!/bin/bash
# An offboarding cut short by kill -9 (after the export, after the erasure) carries on at the
# next start: the tenant ends erased, its archive verifies, the audit log holds one proof.
set -u
. "$(dirname "$0")/../support/daemon.sh"
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..8"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@" | tr -d '"'; }
phase() { [ "$(ev "local s = require('steward.tenants.offboard').status('$1'); return s and s.phase")" = "$2" ]; }
for t in acme initech; do
    api "$TOKEN" POST /v1/events "[{\"id\":\"$t-1\",\"type\":\"work.x\",\"tenant\":\"$t\"},{\"id\":\"$t-2\",\"type\":\"work.x\",\"tenant\":\"$t\"}]" >/dev/null
done
# The fault hook stops a run (its task sleeps) right after the phase commits; kill -9 then.
for stop in "acme exported" "initech erased"; do
    set -- $stop
    ev "local o = require('steward.tenants.offboard')
        o.fault = function(phase, id) if id == '$1' and phase == '$2' then require('steward.time').sleep(3600) end end
        require('steward.task').spawn(function() o.run('$1') end)
        return true" >/dev/null
    wait_for 10 phase "$1" "$2"; ok $? "$1 stopped after phase $2"
    daemon_stop KILL
    daemon_start || { echo "# restart failed"; sed 's/^/# /' "$D/log.new" | tail -5; exit 1; }
done
wait_for 10 phase acme done; ok $? "acme's offboarding resumed after kill -9 and finished"
wait_for 10 phase initech done; ok $? "initech's offboarding resumed after kill -9 and finished"
for t in acme initech; do
    a=$(ev "return require('steward.tenants.offboard').status('$t').archive")
    "$BIN" tenants verify-export "$a" -c "$D/steward.lua" > "$D/v" 2>&1
    ok $([ $? = 0 ] && grep -q "events 2" "$D/v"; echo $?) "$t's archive verifies with both events ($(cat "$D/v"))"
done
left=$(ev "return (require('steward.runtime.store').default():sql(\"SELECT COUNT(*) AS n FROM events WHERE tenant IN ('acme', 'initech')\"))[1].n")
ok $([ "$left" = 0 ]; echo $?) "no event of either tenant is left ($left)"
"$BIN" audit --json -c "$D/steward.lua" > "$D/audit"
proofs=$(grep -c '"tenant.offboard"' "$D/audit")
ok $([ "$proofs" = 2 ]; echo $?) "one proof entry per tenant in the audit log ($proofs)"
daemon_stop
exit $fail
