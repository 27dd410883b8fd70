#!/bin/bash
# issue 15 §1, local processes: a daemon supervises instances of a small HTTP service
# (tests/support/svc_app.py) that a policy starts through the `deploy` capability. N instances
# become ready behind their probes; kill -9 of one is restarted within its backoff; a crash
# loop stops at the burst limit (state failed, a service.failed event, a ServiceFailed alert
# through deploy.alerts); kill -9 of steward: the next daemon re-adopts the live instances
# (same pids, none started twice) and replaces the one that died meanwhile; stop drains
# (SIGTERM, the service finishes, no SIGKILL) and a service that ignores SIGTERM is killed
# after its grace.
set -u
. "$(dirname "$0")/../support/daemon.sh"
HOLDER=
cleanup_all() {
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
    # The instances live in sessions of their own: they outlive the daemon, so stop them here.
    for f in "$D"/*.starts; do
        [ -f "$f" ] || continue
        while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$f"
    done
    [ -n "${KEEP_SERVICES:-}" ] && cp "$D/services.out" "$KEEP_SERVICES" 2>/dev/null
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..28"
api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
decide() { api -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/v1/decide/ops.svc"; }
services() { api "http://127.0.0.1:$PORT/v1/services"; }
# inst SERVICE INDEX FIELD: a field of one instance in GET /v1/services
inst() { services | tee -a "$D/services.out" | jx '[i for s in d["services"] if s["name"] == arg[0] for i in s["instances"] if i["index"] == int(arg[1])][0][arg[2]]' "$1" "$2" "$3"; }
events_of() { api "http://127.0.0.1:$PORT/v1/events?type=$1&limit=1000"; }

# Below the ephemeral range (32768-): no client connection of another program holds them.
base=$(( 10000 + RANDOM % 20000 ))
app="$here/tests/support/svc_app.py"
daemon_config "
  services = {
    api = { run = { cmd = { '/usr/bin/python3', '$app', '--port', '{port}', '--term-delay', '0.3', '--starts', '$D/api.starts' },
                    env = { VERSION = '{revision}' }, instances = 2, ports = '$base-$((base + 9))' },
            probes = { readiness = { http = '/healthz', interval = '100ms', timeout = '1s' },
                       liveness = { tcp = true, interval = '500ms', timeout = '1s', failure_threshold = 3 } },
            restart = { delay = '200ms', burst = 5, interval = '10s' }, stop = { grace = '20s' } },
    crashy = { run = { cmd = { '/usr/bin/python3', '$app', '--mode', 'crash', '--port', '{port}', '--starts', '$D/crashy.starts' },
                       ports = '$((base + 10))-$((base + 19))' },
               restart = { delay = '50ms', delay_max = '200ms', burst = 3, interval = '60s' } },
    stubborn = { run = { cmd = { '/usr/bin/python3', '$app', '--mode', 'ignore-term', '--port', '{port}', '--starts', '$D/stubborn.starts' },
                         ports = '$((base + 20))-$((base + 29))' },
                 probes = { readiness = { tcp = true, interval = '100ms' } }, stop = { grace = '300ms' } },
    unhealthy = { run = { cmd = { '/usr/bin/python3', '$app', '--port', '{port}', '--starts', '$D/unhealthy.starts' },
                          ports = '$((base + 40))-$((base + 49))' },
                  probes = { liveness = { exec = { '/bin/sh', '-c', 'exit 1' }, interval = '100ms', failure_threshold = 2 } },
                  restart = { delay = '50ms', burst = 2, interval = '60s' } },
  },
  grants = { ['ops.svc'] = { deploy = { 'api', 'crashy', 'stubborn', 'unhealthy' } }, ['deploy.alerts'] = { alerting = true } },"
mkdir -p "$D/policies/ops" "$D/policies/deploy"
cp "$here/policies/deploy/alerts.lua" "$D/policies/deploy/alerts.lua"
cat > "$D/policies/ops/svc.lua" <<'EOF'
-- The verbs of steward.deploy.supervisor, called as a policy calls them.
local supervisor = require "steward.deploy.supervisor"
return {
  capabilities = { deploy = { "api", "crashy", "stubborn", "unhealthy" } },
  decide = function(input)
    local r, err = supervisor[input.verb](input.service, input.revision, input.n, input.timeout)
    return { ok = r ~= nil, result = r, error = err }
  end,
}
EOF
daemon_start || exit 1
# Another program listens on the first port of api's range.
/usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("listening", flush=True); time.sleep(600)' "$base" > "$D/holder.out" &
HOLDER=$!
wait_for 10 grep -q listening "$D/holder.out"

# 1. Two instances of api v1 become ready.
decide '{"verb":"start","service":"api","revision":"v1"}' > "$D/start.json"
jx 'd["result"]["ok"] and len(d["result"]["result"]) == 2' < "$D/start.json" >/dev/null
ok $? "a policy starts api v1: run.instances = 2 instances ($(head -c 300 "$D/start.json"))"
decide '{"verb":"wait_ready","service":"api","revision":"v1","n":2,"timeout":"20s"}' | jx 'd["result"]["ok"]' >/dev/null
ok $? "wait_ready: both instances pass their readiness probe"
p1=$(inst api 1 port); p2=$(inst api 2 port)
[ "$(curl -s -m 5 "http://127.0.0.1:$p1/")" = "v1" ] && [ "$(curl -s -m 5 "http://127.0.0.1:$p2/")" = "v1" ] && [ "$p1" != "$p2" ] &&
    [ "$p1" != "$base" ] && [ "$p2" != "$base" ]
ok $? "each instance serves on a port of its own from run.ports ($p1, $p2; $base, held by another program, skipped) with {revision} in its env"
decide '{"verb":"endpoints","service":"api","revision":"v1"}' | jx 'sorted(e["port"] for e in d["result"]["result"]) == sorted([int(arg[0]), int(arg[1])])' "$p1" "$p2" >/dev/null
ok $? "endpoints lists the two ready instances"
events_of service.instance.ready | jx 'len([e for e in d["events"] if e["data"]["service"] == "api"]) == 2' >/dev/null
ok $? "two service.instance.ready events"
decide '{"verb":"start","service":"other","revision":"v1"}' | jx 'not d["result"]["ok"] and d["result"]["error"] == arg[0]' "capability 'deploy' not granted to ops.svc (service other)" >/dev/null
ok $? "a service outside the policy's deploy scope is refused, naming the capability and the service"

# 2. kill -9 of an instance: restarted within its backoff, ready again.
pid1=$(inst api 1 pid)
kill -9 "$pid1"
restarted() { [ "$(inst api 1 restarts)" = "1" ] && [ "$(inst api 1 ready)" = "true" ] && [ "$(inst api 1 pid)" != "$pid1" ]; }
wait_for 20 restarted
ok $? "kill -9 of instance 1 (pid $pid1): restarted (new pid $(inst api 1 pid)), ready again"
events_of service.instance.exited | jx 'any(e["data"]["service"] == "api" and e["data"].get("signal") == 9 for e in d["events"])' >/dev/null
ok $? "a service.instance.exited event with signal 9"
api "http://127.0.0.1:$PORT/metrics" | grep -q '^steward_service_restarts_total{service="api",revision="v1"} 1$'
ok $? "steward_service_restarts_total counts the restart"
api "http://127.0.0.1:$PORT/metrics" | grep -q '^steward_service_instances{service="api",revision="v1",state="running"} 2$'
ok $? "steward_service_instances shows 2 running"

# 3. A crash loop stops at the burst limit: failed, service.failed, an alert.
decide '{"verb":"start","service":"crashy","revision":"v1","n":1}' >/dev/null
wait_for 30 sh -c "[ \"\$(curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/v1/services | /usr/bin/python3 $here/tests/support/jx.py '[i for s in d[\"services\"] if s[\"name\"] == \"crashy\" for i in s[\"instances\"]][0][\"state\"]')\" = failed ]"
ok $? "a crash loop ends in state failed"
[ "$(wc -l < "$D/crashy.starts")" -eq 3 ]
ok $? "restart.burst = 3: started exactly 3 times ($(wc -l < "$D/crashy.starts"))"
events_of service.failed | jx 'len(d["events"]) == 1 and d["events"][0]["data"]["service"] == "crashy" and d["events"][0]["data"]["last_exit"]["code"] == 1' >/dev/null
ok $? "one service.failed event naming the service and its last exit"
wait_for 20 sh -c "curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/api/v2/alerts | /usr/bin/python3 $here/tests/support/jx.py 'any(a[\"labels\"][\"alertname\"] == \"ServiceFailed\" and a[\"labels\"][\"service\"] == \"crashy\" and a[\"status\"][\"state\"] == \"active\" for a in d)' >/dev/null"
ok $? "deploy.alerts raised a ServiceFailed alert in the alerting pipeline"
sleep_check=$(wc -l < "$D/crashy.starts")

# 4. kill -9 of steward: live instances are re-adopted, the dead one replaced.
pid1=$(inst api 1 pid); pid2=$(inst api 2 pid)
starts_before=$(wc -l < "$D/api.starts")
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
kill -0 "$pid1" && kill -0 "$pid2"
ok $? "the instances outlive kill -9 of the daemon"
kill -9 "$pid2" # dies while nobody supervises it
daemon_start || exit 1
adopted() { [ "$(inst api 1 pid)" = "$pid1" ] && [ "$(inst api 1 adopted)" = "true" ] && [ "$(inst api 1 ready)" = "true" ]; }
wait_for 20 adopted
ok $? "after the restart instance 1 is re-adopted: same pid $pid1, ready"
replaced() { [ "$(inst api 2 ready)" = "true" ] && [ "$(inst api 2 pid)" != "$pid2" ]; }
wait_for 20 replaced
ok $? "instance 2, killed while the daemon was down, is replaced (pid $(inst api 2 pid))"
[ "$(wc -l < "$D/api.starts")" -eq $((starts_before + 1)) ]
ok $? "one start in all across the restart (the replacement): none duplicated"
[ "$(inst crashy 1 state)" = "failed" ] && [ "$(wc -l < "$D/crashy.starts")" -eq "$sleep_check" ]
ok $? "the failed instance stays failed: not restarted by the new daemon"
kill -9 "$pid1"
wait_for 20 sh -c "[ \"\$(curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/v1/services | /usr/bin/python3 $here/tests/support/jx.py '[i for s in d[\"services\"] if s[\"name\"] == \"api\" for i in s[\"instances\"] if i[\"index\"] == 1][0][\"ready\"]')\" = true ]" &&
    [ "$(inst api 1 pid)" != "$pid1" ]
ok $? "an adopted instance (not our child: watched through its pidfd) is restarted when it dies"

# 5. Drain: SIGTERM, the service finishes within its grace; no SIGKILL.
p1=$(inst api 1 pid); p2=$(inst api 2 pid)
decide '{"verb":"stop","service":"api","revision":"v1"}' | jx 'd["result"]["ok"]' >/dev/null
ok $? "stop api v1 returns once both instances have exited"
! kill -0 "$p1" 2>/dev/null && ! kill -0 "$p2" 2>/dev/null && services | jx '[s for s in d["services"] if s["name"] == "api"][0]["instances"] == []' >/dev/null &&
    grep -q drained "$D/var/services/api/v1-1.log"
ok $? "both processes are gone, the instances forgotten, and the service drained itself (its log says so)"
events_of service.instance.exited | jx '[e["data"].get("code") for e in d["events"] if e["data"]["service"] == "api" and e["data"].get("stopped")] == [0, 0]' >/dev/null
ok $? "both exits were clean (code 0 after SIGTERM): no SIGKILL was needed"

# 6. A service that ignores SIGTERM is killed after its grace.
decide '{"verb":"start","service":"stubborn","revision":"v1","n":1}' >/dev/null
decide '{"verb":"wait_ready","service":"stubborn","revision":"v1","n":1,"timeout":"20s"}' >/dev/null
decide '{"verb":"stop","service":"stubborn","revision":"v1"}' >/dev/null
events_of service.instance.exited | jx 'any(e["data"]["service"] == "stubborn" and e["data"].get("signal") == 9 for e in d["events"])' >/dev/null &&
    grep -q "ignoring SIGTERM" "$D/var/services/stubborn/v1-1.log"
ok $? "stop.grace = 300ms: the instance that ignored SIGTERM got SIGKILL"

# 7. A failing liveness probe stops the instance; the restart policy counts it as a failure.
decide '{"verb":"start","service":"unhealthy","revision":"v1","n":1}' >/dev/null
wait_for 30 sh -c "[ \"\$(curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/v1/services | /usr/bin/python3 $here/tests/support/jx.py '[i for s in d[\"services\"] if s[\"name\"] == \"unhealthy\" for i in s[\"instances\"]][0][\"state\"]')\" = failed ]"
ok $? "an instance failing its liveness probe is stopped and restarted until the start limit: failed"
# (counted in events: the first SIGTERM may come before python has written its starts line)
events_of service.instance.exited | jx 'len([e for e in d["events"] if e["data"]["service"] == "unhealthy" and e["data"].get("liveness")]) == 2' >/dev/null &&
    events_of service.instance.started | jx 'len([e for e in d["events"] if e["data"]["service"] == "unhealthy"]) == 2' >/dev/null
ok $? "two starts (burst = 2), each exit marked liveness"

# 8. A reload applies a changed services table.
sed -i "s|^  services = {|  services = { late = { run = { cmd = { '/usr/bin/python3', '$app', '--port', '{port}' }, ports = '$((base + 30))-$((base + 39))' } },|" "$D/steward.lua"
kill -HUP "$DPID"
wait_for 20 sh -c "curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/v1/services | /usr/bin/python3 $here/tests/support/jx.py 'any(s[\"name\"] == \"late\" for s in d[\"services\"])' >/dev/null"
ok $? "SIGHUP: a service added to steward.lua is supervised without a restart"
daemon_stop_within 20 && [ "$DSTATUS" -eq 0 ]
ok $? "SIGTERM ends the daemon, status 0 ($DSTATUS)"
