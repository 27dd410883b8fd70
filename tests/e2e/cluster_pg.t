#!/bin/bash
# Cluster mode: three steward instances on loopback share one PostgreSQL (a throwaway 15,
# tests/support/pg.sh; skipped when it is not installed). A load generator posts per-key
# numbered events to all three; a policy records the start and end of every handling; a
# policy arms durable timers due during the test. The leader is SIGKILLed, then the new
# leader. Afterwards (tests/support/cluster_check.py): every acknowledged event was handled
# at least once, never by two runs at once for one key, in order per key, and every timer
# fired exactly once. The takeover times are printed as diagnostics.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"
PY=/usr/bin/python3
T=$(mktemp -d /tmp/steward-clu.XXXXXX)
declare -A PID PORTS
LOADPID=
cleanup() {
    [ -n "$LOADPID" ] && kill "$LOADPID" 2>/dev/null
    for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -9 "${PID[$i]}" 2>/dev/null; done
    wait 2>/dev/null
    pg_stop
    rm -rf "$T"
}
trap cleanup EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }

TOKEN=cluster-test-admin-token-0123456789
NTIMERS=24
export RECORD_FILE="$T/record.txt"
LEASE=${CLUSTER_LEASE:-3}
: > "$RECORD_FILE"; : > "$T/kills"; : > "$T/acked"
mkdir -p "$T/policies"
cat > "$T/policies/record.lua" <<'POL'
local fs, time = require "steward.fs", require "steward.time"
local function rec(tag, ev)
  assert(fs.write(os.getenv("RECORD_FILE"), string.format("%s %s %s %d %d %.6f\n", tag,
    os.getenv("INSTANCE"), ev.data.key, ev.data.n, ev.seq, time.now()), { append = true }))
end
return { capabilities = { "fs.read", "fs.write" }, name = "cl.record", on = { "cl.ev" }, key = function(ev) return ev.data.key end,
  handle = function(ev)
    rec("S", ev)
    time.sleep(0.002 + math.random() * 0.008)
    rec("E", ev)
  end }
POL
cat > "$T/policies/timers.lua" <<'POL'
local fs, time = require "steward.fs", require "steward.time"
return { capabilities = { "fs.read", "fs.write" }, name = "cl.timers", on = { "cl.arm", "cl.fired" }, key = function(ev) return ev.type end,
  handle = function(ev)
    if ev.type == "cl.arm" then
      for i = 1, ev.data.count do
        assert(time.after(ev.data.first + (i - 1) * ev.data.step, { type = "cl.fired", data = { i = i } }, { key = "t" .. i }))
      end
    else
      assert(fs.write(os.getenv("RECORD_FILE"), string.format("F %s %d %.6f\n", os.getenv("INSTANCE"),
        ev.data.i, time.now()), { append = true }))
    end
  end }
POL

# start NAME: one instance (tests/support/pg.sh's instance_start) whose policy records under
# INSTANCE=NAME.
start() {
    INSTANCE=$1 instance_start "$1" "grants = { [\"cl.*\"] = { [\"fs.read\"] = { \"$T\" }, [\"fs.write\"] = { \"$T\" } } },
  cluster = { lease = $LEASE }"
}
cluster() { curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORTS[$1]}/v1/cluster"; }
# leader_of NAME: the leader's instance name (a, b, c) as seen by NAME, or nothing.
leader_of() {
    cluster "$1" | $PY -c '
import json, sys
v = json.load(sys.stdin)
for i in v["instances"]:
    if i["leader"] and i["state"] == "alive": print(i["pid"])' 2>/dev/null | while read -r p; do
        for i in a b c; do [ "${PID[$i]:-}" = "$p" ] && echo "$i"; done
    done
}
now() { date +%s.%N; }
# since T0: seconds from T0 to now (awk does the arithmetic: it is on every Debian machine)
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

n=0
fail=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

for i in a b c; do start "$i" & done
wait
for i in a b c; do
    PORTS[$i]=$(sed -n 's/.*msg=listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$T/$i/log" | tail -1)
    PID[$i]=$(sed -n 's/.*msg="cluster: instance registered".* instance=[^ ]*-\([0-9]*\)-[0-9a-f]*.*/\1/p' "$T/$i/log" | tail -1)
done
ok=0; for i in a b c; do [ -n "${PORTS[$i]}" ] && [ -n "${PID[$i]}" ] || ok=1; done
tap $ok "three instances start on one database"
[ $ok = 0 ] || { for i in a b c; do sed 's/^/# /' "$T/$i/log"; done; echo "1..$n"; exit 1; }

# A leader is elected and every instance sees the same one.
L=
for _ in $(seq 200); do L=$(leader_of a); [ -n "$L" ] && break; sleep 0.05; done
ok=1; [ -n "$L" ] && [ "$(leader_of b)" = "$L" ] && [ "$(leader_of c)" = "$L" ] && ok=0
tap $ok "one leader ($L), seen by all three"
body=$(cluster a)
echo "$body" | $PY -c 'import json,sys; v=json.load(sys.stdin); assert v["mode"]=="cluster" and len(v["instances"])==3 and all("load" in i for i in v["instances"])' 2>/dev/null
tap $? "GET /v1/cluster lists the three instances with their load"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORTS[a]}/v1/cluster")
[ "$code" = 401 ]; tap $? "GET /v1/cluster needs a token"

# Timers due from 2 s to 2 + 23 * 0.5 = 13.5 s from now, through the kills.
curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"id\":\"arm-1\",\"type\":\"cl.arm\",\"data\":{\"count\":$NTIMERS,\"first\":2,\"step\":0.5}}" \
    "http://127.0.0.1:${PORTS[a]}/v1/events" >/dev/null
tap $? "the timers are armed through an event"

$PY "$here/tests/support/cluster_load.py" "$TOKEN" "$T/acked" "$T/stop" 6 24 "${PORTS[a]}" "${PORTS[b]}" "${PORTS[c]}" \
    2>"$T/load.err" &
LOADPID=$!
sleep 3   # load runs on all three before the first kill
wait_new_leader() { # wait_new_leader OLD T0 SURVIVOR: sets NL (the new leader) and TK (seconds)
    NL=
    for _ in $(seq 300); do
        NL=$(leader_of "$3")
        [ -n "$NL" ] && [ "$NL" != "$1" ] && break
        NL=; sleep 0.05
    done
    TK=$(since "$2")
}
kill1() {
    kill -9 "${PID[$1]}"
    while kill -0 "${PID[$1]}" 2>/dev/null; do sleep 0.01; done
    echo "$1 $(now)" >> "$T/kills"   # after death: a run cut by the kill ended by then
    PID[$1]=
}

t_kill=$(now); kill1 "$L"
S=$(for i in a b c; do [ "$i" != "$L" ] && echo "$i"; done | head -1)
wait_new_leader "$L" "$t_kill" "$S"; L2=$NL
echo "# leader $L SIGKILLed; $L2 leads after ${TK}s"
ok=1; [ -n "$L2" ] && below "$TK" 10 && ok=0
tap $ok "after SIGKILL of the leader another instance leads within 10 s"
sleep 3
t_kill=$(now); kill1 "$L2"
S=$(for i in a b c; do [ "$i" != "$L" ] && [ "$i" != "$L2" ] && echo "$i"; done)
wait_new_leader "$L2" "$t_kill" "$S"; L3=$NL
echo "# leader $L2 SIGKILLed; $L3 leads after ${TK}s"
ok=1; [ "$L3" = "$S" ] && below "$TK" 10 && ok=0
tap $ok "after SIGKILL of the second leader the last instance leads within 10 s"
# Bucket takeover: the survivor holds all 64 buckets.
t0=$(now)
for _ in $(seq 300); do
    b=$(cluster "$S" | $PY -c 'import json,sys; v=json.load(sys.stdin); print([i["buckets"] for i in v["instances"] if i.get("self")][0])' 2>/dev/null)
    [ "$b" = 64 ] && break; sleep 0.05
done
echo "# the survivor holds ${b:-?}/64 buckets $(since "$t_kill")s after the second kill"
sleep 2
touch "$T/stop"; wait "$LOADPID"; lrc=$?; LOADPID=
[ $lrc = 0 ]; tap $? "the load generator saw only 202 and 503 answers and lost connections"
sed 's/^/# /' "$T/load.err"

# Wait for the handlings of every acknowledged event and for every timer (60 s at most).
acked=$(wc -l < "$T/acked")
echo "# $acked events acknowledged"
for _ in $(seq 600); do
    h=$($PY "$here/tests/support/cluster_settled.py" "$RECORD_FILE" "$T/acked" "$NTIMERS")
    [ "$h" = yes ] && break
    sleep 0.1
done
sleep 1   # a second firing of a timer, or a late duplicate, would show now
# (The instances are not this shell's children: they were started from subshells.)
kill -TERM "${PID[$S]}"
for _ in $(seq 400); do kill -0 "${PID[$S]}" 2>/dev/null || break; sleep 0.05; done
PID[$S]=
tail -1 "$T/$S/log" | grep -q 'msg=stopped'
tap $? "the last instance stops cleanly"
$PY "$here/tests/support/cluster_check.py" "$RECORD_FILE" "$T/acked" "$T/kills" "$NTIMERS" "$n" > "$T/check"
crc=$?
grep -v '^1\.\.' "$T/check"
n=$(sed -n 's/^1\.\.//p' "$T/check")
if [ $crc != 0 ] || [ $fail != 0 ]; then
    for i in a b c; do echo "# --- $i"; grep -E 'level=(warn|error)|cluster' "$T/$i/log" | tail -15 | sed 's/^/# /'; done
fi
echo "1..$n"
[ $crc = 0 ] && [ $fail = 0 ]
