#!/bin/bash
# A daemon that supervises instances stops on SIGTERM and on SIGINT (Ctrl-C on `make run`):
# it exits 0 promptly, its instances keep running (they outlive the daemon by design) and the
# next daemon re-adopts them, same pids. Then the same with workers = 2 (the supervisor runs on
# the leader worker). Before the fix the daemon logged "stopped" and never exited: a task still
# waited on each instance (a child's exit, an adopted one's pidfd) and a probe slept out its
# interval, which kept the event loop running. A policy's stop() in progress at SIGTERM ends
# when its process has exited, not at the end of its grace period (it waited for a monitor
# the shutdown had cancelled: grace + 10 s).
# The bound of 15 s is generous (a stop takes well under a second here): waiting for it is the bug.
set -u
. "$(dirname "$0")/../support/daemon.sh"
worker_pids() { [ -n "${DPID:-}" ] && ps -o pid= --ppid "$DPID" 2>/dev/null | tr -d ' '; }
cleanup_all() {
    for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    # The instances live in sessions of their own: they outlive the daemon, so stop them here.
    for f in "$D"/*.starts; do
        [ -f "$f" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$f"
    done
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..20"
api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
decide() { api -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/v1/decide/ops.svc"; }
pids() { api "http://127.0.0.1:$PORT/v1/services" | jx '" ".join(str(i["pid"]) for i in sorted(d["services"][0]["instances"], key=lambda i: i["index"]))'; }

base=$(( 10000 + RANDOM % 20000 ))
# liveness every hour: a probe task sleeps through the whole stop, as a long interval would.
daemon_config "
  services = { api = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/api.starts' },
                               instances = 2, ports = '$base-$((base + 9))' },
                       probes = { readiness = { http = '/healthz', interval = '100ms' },
                                  liveness = { tcp = true, interval = '1h' } } },
               slow = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--term-delay', '2', '--starts', '$D/slow.starts' },
                                ports = '$((base + 10))-$((base + 19))' },
                        probes = { readiness = { tcp = true, interval = '100ms' } }, stop = { grace = '60s' } } },
  grants = { ['ops.svc'] = { deploy = { 'api', 'slow' } } },"
mkdir -p "$D/policies/ops"
cat > "$D/policies/ops/svc.lua" <<'EOP'
local supervisor = require "steward.deploy.supervisor"
return {
  capabilities = { deploy = { "api", "slow" } },
  decide = function(input)
    local r, err = supervisor[input.verb](input.service, input.revision, input.n, input.timeout)
    return { ok = r ~= nil, result = r, error = err }
  end,
}
EOP

# stop_ok SIGNAL WHAT: the signal ends the daemon within the bound, with status 0.
stop_ok() {
    daemon_stop_within 15 "$1"
    ok $? "$2: SIG$1 ends the daemon"
    [ "$DSTATUS" -eq 0 ] && tail -n 1 "$D/log.new" | grep -q 'msg=stopped'
    ok $? "$2: exit status 0 ($DSTATUS), stopped is the last line"
}
alive() { for p in $1; do kill -0 "$p" 2>/dev/null || return 1; done; }
# adopted PIDS: the new daemon shows both instances with the same pids, adopted and ready.
adopted() {
    [ "$(pids)" = "$1" ] &&
        api "http://127.0.0.1:$PORT/v1/services" | jx 'all(i["adopted"] and i["ready"] for i in d["services"][0]["instances"]) and len(d["services"][0]["instances"]) == 2' >/dev/null
}

# 1. Our own children (the daemon waits for their exit through their process handles).
daemon_start || exit 1
decide '{"verb":"start","service":"api","revision":"v1"}' | jx 'd["result"]["ok"]' >/dev/null &&
    decide '{"verb":"wait_ready","service":"api","revision":"v1","n":2,"timeout":"20s"}' | jx 'd["result"]["ok"]' >/dev/null
ok $? "two instances of api run and are ready"
P=$(pids)
stop_ok TERM "instances the daemon started"
alive "$P"
ok $? "the instances ($P) outlive the daemon"

# 2. Adopted instances (watched through their pidfds), stopped by SIGINT.
daemon_start || exit 1
wait_for 20 adopted "$P"
ok $? "the next daemon re-adopts them: same pids, ready"
stop_ok INT "adopted instances"
alive "$P"
ok $? "the instances still run"

# 3. A policy's stop() is draining an instance (2 s to finish its requests, 60 s of grace)
# when SIGTERM comes: the daemon exits once that process has, with the stop answered.
daemon_start || exit 1
wait_for 20 adopted "$P"
decide '{"verb":"start","service":"slow","revision":"v1","n":1}' | jx 'd["result"]["ok"]' >/dev/null &&
    decide '{"verb":"wait_ready","service":"slow","revision":"v1","n":1,"timeout":"20s"}' | jx 'd["result"]["ok"]' >/dev/null
ok $? "the adopted instances are back and an instance of slow is ready"
S=$(api "http://127.0.0.1:$PORT/v1/services" | jx '[i["pid"] for s in d["services"] if s["name"] == "slow" for i in s["instances"]][0]')
decide '{"verb":"stop","service":"slow","revision":"v1"}' > "$D/stop.json" &
CURL=$!
stopping() { api "http://127.0.0.1:$PORT/v1/services" | jx '[i["state"] for s in d["services"] if s["name"] == "slow" for i in s["instances"]] == ["stopping"]' >/dev/null; }
wait_for 20 stopping
stop_ok TERM "a stop in progress"
wait "$CURL"
jx 'd["result"]["ok"] and d["result"]["result"] is True' < "$D/stop.json" >/dev/null && ! alive "$S" && alive "$P"
ok $? "the stop was answered true ($(head -c 120 "$D/stop.json")), slow's process ($S) is gone, api's still run"

# 4. workers = 2: the leader worker supervises; SIGTERM, then SIGINT, to the supervisor.
export STEWARD_WORKERS=2
for sig in TERM INT; do
    daemon_start || exit 1
    wait_for 20 adopted "$P"
    ok $? "workers = 2: the leader re-adopts the instances"
    W=$(worker_pids | tr "\n" " ")
    stop_ok "$sig" "workers = 2"
done
! alive "$W" && alive "$P"
ok $? "no worker is left ($W), the instances still run"
[ "$(wc -l < "$D/api.starts")" -eq 2 ] && [ "$(wc -l < "$D/slow.starts")" -eq 1 ]
ok $? "none was started again across the restarts (nor slow, stopped)"
