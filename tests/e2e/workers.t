#!/bin/bash
# Worker processes (workers = 2) on one SQLite store, under one supervisor: connections reach
# both workers, each worker has its admin socket, a load generator posts per-key numbered
# events while worker 1 and then worker 2 are SIGKILLed (the supervisor restarts them), and
# durable timers fall due meanwhile. Afterwards (tests/support/cluster_check.py, the checks
# of tests/e2e/cluster_pg.t): every acknowledged event was handled, never by two runs at once
# for one key, in order per key, and every timer fired exactly once. Then: SIGHUP and a
# changed policy file reach every worker; SIGTERM drains both (a running handler finishes);
# SIGKILL of the supervisor leaves no worker behind.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
export STEWARD_WORKERS=2
. "$here/tests/support/daemon.sh"
PY=/usr/bin/python3
LOADPID=
cleanup_workers() {
    [ -n "$LOADPID" ] && kill "$LOADPID" 2>/dev/null
    # the supervisor's SIGKILL takes its workers down (that is tested below); these are a net
    for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    [ -n "${DPID:-}" ] && cat "$D/log.new" >> "$D/log" 2>/dev/null
    daemon_cleanup
    [ -n "${WORKERS_PG:-}" ] && pg_stop
}
trap cleanup_workers EXIT
# tests/e2e/workers_pg.t: the same on a throwaway PostgreSQL (tests/support/pg.sh)
if [ -n "${WORKERS_PG:-}" ]; then
    . "$here/tests/support/pg.sh"
    pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
    export STEWARD_TEST_STORE=$PG_URL
fi

n=0
fail=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
now() { date +%s.%N; }
# the live workers' pids: children of the supervisor
worker_pids() { [ -n "${DPID:-}" ] && ps -o pid= --ppid "$DPID" 2>/dev/null | tr -d ' '; }
# worker_pid I: the pid of worker I's latest start
worker_pid() { sed -n "s/.*msg=\"worker serving\" worker=$1 pid=\([0-9]*\).*/\1/p" "$D/log.new" | tail -1; }
NTIMERS=12
export RECORD_FILE="$D/record.txt"
: > "$RECORD_FILE"; : > "$D/kills"; : > "$D/acked"
# The instance tag of a record line is the worker's pid (a policy does not see STEWARD_*
# variables), so a restarted worker's runs are told apart from those its predecessor cut.
cat > "$D/policies/record.lua" <<'POL'
local fs, time = require "steward.fs", require "steward.time"
local inst
local function rec(tag, ev)
  inst = inst or assert(fs.read("/proc/self/stat")):match("^(%d+)")
  assert(fs.write(os.getenv("RECORD_FILE"), string.format("%s %s %s %d %d %.6f\n", tag,
    inst, ev.data.key, ev.data.n, ev.seq, time.now()), { append = true }))
end
return { capabilities = { "fs.read", "fs.write" }, name = "cl.record", on = { "cl.ev" }, key = function(ev) return ev.data.key end,
  handle = function(ev)
    rec("S", ev)
    time.sleep(ev.data.slow or (0.002 + math.random() * 0.008))
    rec("E", ev)
  end }
POL
cat > "$D/policies/timers.lua" <<'POL'
local fs, time = require "steward.fs", require "steward.time"
local inst
return { capabilities = { "fs.read", "fs.write" }, name = "cl.timers", on = { "cl.arm", "cl.fired" }, key = function(ev) return ev.type end,
  handle = function(ev)
    if ev.type == "cl.arm" then
      for i = 1, ev.data.count do
        local n = i + (ev.data.base or 0)
        assert(time.after(ev.data.first + (i - 1) * ev.data.step, { type = "cl.fired", data = { i = n } }, { key = "t" .. n }))
      end
    else
      inst = inst or assert(fs.read("/proc/self/stat")):match("^(%d+)")
      assert(fs.write(os.getenv("RECORD_FILE"), string.format("F %s %d %.6f\n", inst, ev.data.i, time.now()), { append = true }))
    end
  end }
POL
# decide answers with its version tag and its configured setting: reloads are visible there
cat > "$D/policies/which.lua" <<'POL'
return { name = "cl.which", config = { tag = "cfg1" },
  decide = function(input, ctx) return { v = "v1", tag = ctx.config.tag } end }
POL
daemon_config "cluster = { lease = \"2s\" }, workers = 2,
  grants = { [\"cl.*\"] = { [\"fs.read\"] = { \"$D\", \"/proc\" }, [\"fs.write\"] = { \"$D\" } } }, policy_config = { [\"cl.which\"] = { tag = \"cfg1\" } }"
daemon_start || { echo "1..1"; echo "not ok 1 - two workers start"; exit 1; }
ok=1; [ -n "$(worker_pid 1)" ] && [ -n "$(worker_pid 2)" ] && [ "$(worker_pid 1)" != "$(worker_pid 2)" ] && ok=0
tap $ok "the supervisor starts two workers that both serve on port $PORT (${STEWARD_TEST_STORE:-sqlite})"

# Each new connection is given to one worker by the kernel (SO_REUSEPORT): both answer.
selves=$(for _ in $(seq 40); do
    curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/cluster" | jx 'd["self"]'
done | sort -u | wc -l)
[ "$selves" = 2 ]; tap $? "connections to the one port reach both workers ($selves answered)"
a=$("$BIN" eval --socket "$D/var/steward.sock" 'return os.getenv("STEWARD_WORKER")' 2>&1)
b=$("$BIN" eval --socket "$D/var/steward.sock.2" 'return os.getenv("STEWARD_WORKER")' 2>&1)
[ "$a" = '"1"' ] && [ "$b" = '"2"' ]; tap $? "worker 1 serves admin_socket, worker 2 admin_socket.2 (got $a, $b)"
leaders=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/cluster" |
    jx 'len([i for i in d["instances"] if i["leader"]])')
for _ in $(seq 100); do
    [ "$leaders" = 1 ] && break; sleep 0.05
    leaders=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/cluster" |
        jx 'len([i for i in d["instances"] if i["leader"]])')
done
[ "$leaders" = 1 ]; tap $? "one worker leads (SQLite: the lease row; PostgreSQL: the advisory lock)"

curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"id\":\"arm-1\",\"type\":\"cl.arm\",\"data\":{\"count\":$NTIMERS,\"first\":2,\"step\":0.5}}" \
    "http://127.0.0.1:$PORT/v1/events" >/dev/null
tap $? "the timers are armed through an event"

$PY "$here/tests/support/cluster_load.py" "$TOKEN" "$D/acked" "$D/stop" 4 16 "$PORT" 2>"$D/load.err" &
LOADPID=$!
# wait_acked N: until N more events were acknowledged (load runs between the kills)
wait_acked() {
    local base; base=$(wc -l < "$D/acked")
    for _ in $(seq 400); do [ $(($(wc -l < "$D/acked") - base)) -ge "$1" ] && return 0; sleep 0.025; done
    return 1
}
# kill_worker I: SIGKILL worker I under load, wait for the supervisor to start it again
kill_worker() {
    local p; p=$(worker_pid "$1")
    kill -9 "$p"
    # gone once the supervisor reaped it (a zombie still answers kill -0): bounded
    local i; for i in $(seq 400); do kill -0 "$p" 2>/dev/null || break; sleep 0.01; done
    kill -0 "$p" 2>/dev/null && return 1
    echo "$p $(now)" >> "$D/kills"   # after death: a run cut by the kill ended by then
    for _ in $(seq 400); do
        [ "$(worker_pid "$1")" != "$p" ] && [ -n "$(worker_pid "$1")" ] && return 0
        sleep 0.025
    done
    return 1
}
wait_acked 100
kill_worker 1; tap $? "worker 1 SIGKILLed under load is started again by the supervisor"
wait_acked 100
kill_worker 2; tap $? "worker 2 SIGKILLed under load is started again by the supervisor"
wait_acked 100
touch "$D/stop"; wait "$LOADPID"; lrc=$?; LOADPID=
[ $lrc = 0 ]; tap $? "the load generator saw only 202 and 503 answers and lost connections"
sed 's/^/# /' "$D/load.err"

acked=$(wc -l < "$D/acked")
echo "# $acked events acknowledged"
for _ in $(seq 600); do
    h=$($PY "$here/tests/support/cluster_settled.py" "$RECORD_FILE" "$D/acked" "$NTIMERS")
    [ "$h" = yes ] && break
    sleep 0.1
done
# A second firing of a timer, or a late duplicate, would show by now: a sentinel timer (1001,
# armed now, due in 0.5 s) has fired after two more rounds of the leader's timer check.
curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"id":"arm-late","type":"cl.arm","data":{"count":1,"first":0.5,"step":0,"base":1000}}' \
    "http://127.0.0.1:$PORT/v1/events" >/dev/null
for _ in $(seq 200); do grep -q '^F [^ ]* 1001 ' "$RECORD_FILE" && break; sleep 0.05; done
$PY "$here/tests/support/cluster_check.py" "$RECORD_FILE" "$D/acked" "$D/kills" "$NTIMERS" "$n" > "$D/check" || fail=1
grep -v '^1\.\.' "$D/check"
n=$(sed -n 's/^1\.\.//p' "$D/check")

# SIGHUP to the supervisor reaches every worker: both re-read the configuration.
sed -i 's/tag = "cfg1"/tag = "cfg2"/' "$D/steward.lua"
kill -HUP "$DPID"
decide_all() { # decide_all: the distinct answers of 30 new connections
    for _ in $(seq 30); do
        curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}' \
            "http://127.0.0.1:$PORT/v1/decide/cl.which" | jx 'd["result"]["v"] + "/" + d["result"]["tag"]'
    done | sort -u | tr '\n' ' '
}
for _ in $(seq 100); do got=$(decide_all); [ "$got" = "v1/cfg2 " ] && break; sleep 0.05; done
hups=$(grep -c 'reason=SIGHUP' "$D/log.new")
[ "$got" = "v1/cfg2 " ] && [ "$hups" -ge 2 ]; tap $? "SIGHUP reaches both workers (answers: $got; $hups reloads logged)"
# A changed policy file reaches every worker too.
sed -i 's/v = "v1"/v = "v2"/' "$D/policies/which.lua"
for _ in $(seq 200); do got=$(decide_all); [ "$got" = "v2/cfg2 " ] && break; sleep 0.05; done
[ "$got" = "v2/cfg2 " ]; tap $? "a changed policy reaches both workers (answers: $got)"

# SIGTERM drains both workers: handlers running at the signal finish before they exit.
for i in 1 2 3 4; do
    curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"id\":\"slow-$i\",\"type\":\"cl.ev\",\"data\":{\"key\":\"slow$i\",\"n\":1,\"slow\":1}}" \
        "http://127.0.0.1:$PORT/v1/events" >/dev/null
done
for _ in $(seq 200); do [ "$(grep -c '^S [^ ]* slow' "$RECORD_FILE")" = 4 ] && break; sleep 0.025; done
W1=$(worker_pid 1); W2=$(worker_pid 2)
daemon_stop_within 20; late=$?
ends=$(grep -c '^E [^ ]* slow' "$RECORD_FILE")
stopped=$(grep -c 'msg=stopped' "$D/log.new")
[ $late = 0 ] && [ "$DSTATUS" = 0 ] && [ "$ends" = 4 ] && [ "$stopped" = 3 ]
tap $? "SIGTERM drains both workers: the running handlers finished ($ends/4), each worker and the supervisor logged stopped ($stopped), status $DSTATUS"
kill -0 "$W1" 2>/dev/null || kill -0 "$W2" 2>/dev/null; [ $? != 0 ]; tap $? "no worker outlives the supervisor's SIGTERM"

# SIGKILL of the supervisor: its workers stop (PR_SET_PDEATHSIG), nothing keeps serving.
daemon_start || { echo "not ok - restart"; fail=1; }
W1=$(worker_pid 1); W2=$(worker_pid 2)
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
gone=1
for _ in $(seq 400); do
    if ! kill -0 "$W1" 2>/dev/null && ! kill -0 "$W2" 2>/dev/null; then gone=0; break; fi
    sleep 0.05
done
tap $gone "SIGKILL of the supervisor stops both workers (no orphan keeps serving)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
[ "$code" = 000 ]; tap $? "nothing answers on the port afterwards"

if [ $fail != 0 ]; then grep -E 'level=(warn|error)|worker|cluster' "$D/log" | tail -40 | sed 's/^/# /'; fi
echo "1..$n"
[ $fail = 0 ]
