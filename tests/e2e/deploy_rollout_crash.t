#!/bin/bash
# kill -9 of steward in the middle of a canary, on SQLite and on PostgreSQL: the rollout resumes
# at the step it was at and repeats no side effect. A real HAProxy (runtime API behind
# tests/support/rollout_sockproxy.py, which logs every command steward sends) in front of
# instances of tests/support/rollout_app.py run by the supervisor (each start logged).
# The canary: set_weight 20, pause 2s, set_weight 50, pause until promoted. The daemon is
# killed during the timed pause, and again during the indefinite one; after each restart the
# commands and spawns are counted: exactly what the remaining steps need, nothing twice.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
PG_DIR=
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed (Debian package haproxy)"; exit 0; }
if [ ! -f "$here/scripts/steward/deploy/supervisor.lua" ] || [ ! -f "$here/scripts/steward/deploy/haproxy.lua" ]; then
    echo "1..0 # SKIP the supervisor and the HAProxy driver (issue 15 parts h1, h2) are not in this tree"
    exit 0
fi
PEERS=()
cleanup_all() {
    # The daemon first (its supervisor would start instances again), then the instances (they
    # live in sessions of their own and outlive the daemon), HAProxy and the proxies.
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=
    for f in "$D"/*/starts; do
        [ -f "$f" ] || continue
        while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$f"
    done
    for p in "${PEERS[@]}"; do kill "$p" 2>/dev/null; done
    pg_stop
    daemon_cleanup
}
trap cleanup_all EXIT
pg_start || { echo "1..0 # SKIP PostgreSQL could not be started"; exit 0; }
echo "1..32"
# Below the kernel's ephemeral range (32768-60999): a port a load's client connection holds
# cannot be bound by an instance, which then crash-loops.
PORT_BASE=$(( 10000 + RANDOM % 20000 ))
n=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; return 1; fi; }
# diag ROLLOUT: what the rollout and the daemon's log say, as TAP comments
diag() {
    api "http://127.0.0.1:$PORT/v1/rollouts/$1" | head -c 3000 | sed 's/^/# /'; echo
    grep -E 'level=(warn|error)' "$D/log.new" 2>/dev/null | tail -5 | sed 's/^/# /'
}
api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
# field ID EXPR: a Python expression over the rollout's JSON (d)
field() { api "http://127.0.0.1:$PORT/v1/rollouts/$1" | jx "$2"; }
at() { [ "$(field "$1" '"%s %s" % (d["phase"], d["step"])' 2>/dev/null)" = "$2" ]; }
# mutations: runtime API commands that change HAProxy (not `show stat`)
mutations() { grep -c -E '^(add|del|set|enable|disable) ' "$S/commands" 2>/dev/null || true; }
spawns() { grep -c " $1\$" "$S/starts" 2>/dev/null || true; }

scenario() { # scenario NAME STORE_URL
    local name=$1 store=$2
    S="$D/$name"; mkdir -p "$S/var"
    FRONT=$(pg_free_port)
    cat > "$S/haproxy.cfg" <<CFG
global
    stats socket $S/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend public
    bind 127.0.0.1:$FRONT
    default_backend web
backend web
    balance roundrobin
CFG
    haproxy -db -f "$S/haproxy.cfg" > "$S/halog" 2>&1 &
    PEERS+=($!)
    wait_for 10 test -S "$S/haproxy.sock"
    /usr/bin/python3 "$here/tests/support/rollout_sockproxy.py" "$S/proxy.sock" "$S/haproxy.sock" "$S/commands" > "$S/proxy.out" 2>&1 &
    PEERS+=($!)
    wait_for 10 test -S "$S/proxy.sock"
    ok $? "$name: HAProxy and the command-logging proxy run"

    # each scenario its own ports (the previous one's may still be in TIME_WAIT)
    local base=$(( PORT_BASE + ${#PEERS[@]} * 20 ))
    STEWARD_TEST_STORE=$store daemon_config "
  services = {
    web = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/rollout_app.py', '--port', '{port}', '--starts', '$S/starts' },
                    env = { VERSION = '{revision}' }, instances = 2, ports = '$base-$((base + 19))' },
            probes = { readiness = { http = '/healthz', interval = '100ms', timeout = '1s' } },
            stop = { grace = '2s' },
            haproxy = { socket = '$S/proxy.sock', backend = 'web' } },
  },
  grants = { ['deploy.*'] = { deploy = { 'web' } } },"
    rm -rf "$D/policies"; mkdir -p "$D/policies/deploy"
    cat > "$D/policies/deploy/web.lua" <<'EOF'
local deploy = require "steward.deploy"
return deploy.rollout_policy{
  name = "deploy.web", service = "web",
  strategy = deploy.canary{ steps = { { set_weight = 20 }, { pause = { duration = "2s" } }, { set_weight = 50 }, { pause = {} } },
                            scale_down_delay = "1s" },
}
EOF
    daemon_start || { ok 1 "$name: the daemon starts"; return; }

    local r1 r2
    r1=$(api -d '{"service":"web","revision":"v1"}' "http://127.0.0.1:$PORT/v1/rollouts" | jx 'd["rollout"]')
    wait_for 30 at "$r1" "Completed 1"
    ok $? "$name: the first revision v1 is rolled out whole" || diag "$r1"
    [ "$(curl -s -m 5 "http://127.0.0.1:$FRONT/")" = "v1" ]
    ok $? "$name: HAProxy serves v1"

    r2=$(api -d '{"service":"web","revision":"v2"}' "http://127.0.0.1:$PORT/v1/rollouts" | jx 'd["rollout"]')
    wait_for 30 at "$r2" "Paused 2"
    local paused=$?
    kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
    ok $paused "$name: v2 reached the 2 s pause (step 2); steward is killed there" || diag "$r2"
    local m1 s1 l1
    m1=$(mutations); s1=$(spawns v2); l1=$(wc -l < "$S/commands")
    [ "$s1" = 1 ]
    ok $? "$name: one canary instance was started for 20% (spawns of v2: $s1)"

    daemon_start || { ok 1 "$name: the daemon restarts"; return; }
    wait_for 30 at "$r2" "Paused 4"
    ok $? "$name: after the restart the pause ended and set_weight 50 ran: paused at step 4" || diag "$r2"
    local m2 s2 added
    m2=$(mutations); s2=$(spawns v2)
    added=$(tail -n +"$((l1 + 1))" "$S/commands" | grep -E '^(add|del|set|enable|disable) ' | grep -c -v ' weight ' || true)
    [ "$s2" = 1 ] && [ "$added" = 0 ]
    ok $? "$name: no instance started and no server added again (spawns $s2, other commands $added)"
    [ "$(tail -n +"$((l1 + 1))" "$S/commands" | grep -c ' weight ')" = 3 ]
    ok $? "$name: set_weight 50 sent one weight per server (3), once"

    kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
    daemon_start || { ok 1 "$name: the daemon restarts again"; return; }
    wait_for 5 at "$r2" "Paused 4"
    ok $? "$name: killed and restarted in the indefinite pause: still at step 4"
    local m3
    m3=$(api "http://127.0.0.1:$PORT/v1/rollouts/$r2" >/dev/null; mutations)
    [ "$m3" = "$m2" ]
    ok $? "$name: the restart sent HAProxy nothing ($m2 commands before, $m3 after)"

    "$BIN" eval --socket "$D/var/steward.sock" "promote('$r2')" > "$S/promote.out" 2>&1
    wait_for 30 at "$r2" "Completed 4"
    ok $? "$name: promote from the REPL completes the rollout" || { diag "$r2"; sed 's/^/# /' "$S/promote.out"; }
    [ "$(spawns v2)" = 2 ]
    ok $? "$name: v2 runs at full scale (2 starts in all)"
    local dup
    dup=$(field "$r2" 'sorted(k for k, v in __import__("collections").Counter(h["data"]["effect"] for h in d["history"] if h["kind"] == "effect_done").items() if v > 1)')
    [ "$dup" = "[]" ]
    ok $? "$name: every side effect is done once in the history (repeated: $dup)"
    wait_for 20 sh -c "for i in 1 2 3 4 5 6 7 8 9 10; do [ \"\$(curl -s -m 5 http://127.0.0.1:$FRONT/)\" = v2 ] || exit 1; done"
    ok $? "$name: HAProxy serves v2 only"
    "$BIN" audit export -c "$D/steward.lua" -o "$S/audit.jsonl" >/dev/null 2>&1
    /usr/bin/python3 -c '
import json, sys
cmds = [json.loads(l).get("command") for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if cmds.count("rollout.completed") == 2 and cmds.count("rollout.promoted") == 2 else 1)' "$S/audit.jsonl"
    ok $? "$name: the audit log has each rollout's promotion and completion once"

    # The next scenario starts from nothing: this one's instances stop, its state files go.
    # Its instances are running: SIGTERM must still end it (it kept a wait on each instance).
    daemon_stop_within 20 && [ "$DSTATUS" -eq 0 ]
    ok $? "$name: SIGTERM ends the daemon, status 0 ($DSTATUS)"
    while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$S/starts"
    rm -rf "$D/var"
}

scenario sqlite "sqlite:$D/steward.db"
scenario postgres "$PG_URL"
