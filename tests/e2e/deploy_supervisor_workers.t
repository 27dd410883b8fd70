#!/bin/bash
# The supervisor with worker processes (workers = 2): it runs on the leader only, and a verb a
# policy calls on the other worker is forwarded to it through the store. Decisions land on
# either worker (SO_REUSEPORT): each start is answered, the instances are started once, every
# worker's GET /v1/services shows the same instances, stop drains them. A policy cannot reach
# the runtime's kv namespace the forwarded calls go through.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
export STEWARD_WORKERS=2
. "$here/tests/support/daemon.sh"
worker_pids() { [ -n "${DPID:-}" ] && ps -o pid= --ppid "$DPID" 2>/dev/null | tr -d ' '; }
cleanup_all() {
    [ -f "$D/api.starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/api.starts"
    for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..7"
api() { curl -s -m 60 -H "Authorization: Bearer $TOKEN" "$@"; }
decide() { api -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/v1/decide/ops.svc"; }

base=$(( 10000 + RANDOM % 20000 ))
daemon_config "
  services = { api = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/api.starts' },
                               instances = 2, ports = '$base-$((base + 9))' },
                       probes = { readiness = { http = '/healthz', interval = '100ms' } } } },
  grants = { ['ops.svc'] = { deploy = { 'api' } } },"
mkdir -p "$D/policies/ops"
cat > "$D/policies/ops/svc.lua" <<'EOP'
local supervisor = require "steward.deploy.supervisor"
local kv = require "steward.kv"
return {
  capabilities = { deploy = { "api" } },
  decide = function(input)
    if input.verb == "kv" then return { ok = pcall(kv.ns, "steward:deploy.supervisor") } end
    local r, err = supervisor[input.verb](input.service, input.revision, input.n, input.timeout)
    return { ok = r ~= nil, result = r, error = err }
  end,
}
EOP
daemon_start || exit 1

all=0
for i in 1 2 3 4 5 6; do
    decide '{"verb":"start","service":"api","revision":"v1"}' > "$D/start.$i.json"
    jx 'd["result"]["ok"] and len(d["result"]["result"]) == 2' < "$D/start.$i.json" >/dev/null || all=1
done
ok $all "six starts, answered whichever worker took them ($(head -c 200 "$D/start.6.json"))"
decide '{"verb":"wait_ready","service":"api","revision":"v1","n":2,"timeout":"30s"}' | jx 'd["result"]["ok"]' >/dev/null
ok $? "wait_ready answers true"
[ "$(wc -l < "$D/api.starts")" -eq 2 ]
ok $? "the instances were started once: 2 processes ($(wc -l < "$D/api.starts") starts)"
same=0
first=$(api "http://127.0.0.1:$PORT/v1/services" | jx 'sorted(i["pid"] for i in d["services"][0]["instances"])')
for i in 1 2 3 4 5 6; do
    [ "$(api "http://127.0.0.1:$PORT/v1/services" | jx 'sorted(i["pid"] for i in d["services"][0]["instances"])')" = "$first" ] || same=1
done
ok $same "every worker's GET /v1/services shows the leader's instances ($first)"
decide '{"verb":"stop","service":"api","revision":"v1"}' | jx 'd["result"]["ok"]' >/dev/null &&
    api "http://127.0.0.1:$PORT/v1/services" | jx 'd["services"][0]["instances"] == []' >/dev/null
ok $? "stop drains them"
decide '{"verb":"kv"}' | jx 'd["result"]["ok"] == False' >/dev/null
ok $? "a policy cannot open the runtime's kv namespace steward:*"
daemon_stop_within 20 && [ "$DSTATUS" -eq 0 ]
ok $? "SIGTERM ends the daemon and its workers, status 0 ($DSTATUS)"
