#!/bin/bash
# The REPL's figures: attach time (a whole `steward eval` process, and the socket's connect +
# greeting alone) and the eval round trip on one attached session, with the daemon idle and
# under durable ingest load (wrk, bench/wrk_post.lua). Prints table rows for bench/run.
# Placement as bench/daemon: the daemon on core 0 (DAEMON_CPUS), wrk and the clients on core 1.
set -eu
cd "$(dirname "$0")/.."
BIN=${STEWARD_BIN:-build/steward}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
SECS=${SECS:-10}
SHARED=${SHARED:-../shared/bench}
N_EXEC=${N_EXEC:-200}
N_RTT=${N_RTT:-2000}
PY=/usr/bin/python3
tmp=$(mktemp -d)
pid="" wpid=""
cleanup() {
    [ -n "$wpid" ] && kill "$wpid" 2> /dev/null
    [ -n "$pid" ] && kill "$pid" 2> /dev/null
    wait 2> /dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2" | head -1; }
client() { taskset -c "${CLIENT_CPUS:-1}" "$PY" bench/repl_rtt.py "$@"; }

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sock=$tmp/var/steward.sock
mkdir -p "$tmp/policies"
cat > "$tmp/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "sqlite:$tmp/steward.db", policies = "$tmp/policies",
         var_dir = "$tmp/var", admin_socket = "$sock", metrics_public = true,
         log_level = "warn", limits = { max_connections = 2000 } }
CFG
"$BIN" script bench/make_events.lua "$SHARED/events100.json" "$tmp/batch100.json" "$tmp/single.json"

taskset -c "${DAEMON_CPUS:-0}" "$BIN" run -c "$tmp/steward.lua" 2>> "$tmp/daemon.log" &
pid=$!
for _ in $(seq 200); do
    [ -S "$sock" ] && curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
    sleep 0.05
done
[ -S "$sock" ] || { echo "bench/repl.sh: the daemon did not start" >&2; cat "$tmp/daemon.log" >&2; exit 1; }

# (a) attach: a whole client process, then the socket alone.
client exec "$N_EXEC" "$BIN" eval --socket "$sock" 'return 1' > "$tmp/exec"
row "repl: steward eval 'return 1', whole process" "$(val exec_p50_ms "$tmp/exec") / $(val exec_p99_ms "$tmp/exec")" "ms p50 / p99"
client exec "$N_EXEC" "$BIN" eval --local 'return 1' > "$tmp/local"
row "  the same with --local (no daemon)" "$(val exec_p50_ms "$tmp/local") / $(val exec_p99_ms "$tmp/local")" "ms p50 / p99"
client attach "$N_EXEC" "$sock" > "$tmp/attach"
row "repl: attach (connect + greeting)" "$(val attach_p50_ms "$tmp/attach") / $(val attach_p99_ms "$tmp/attach")" "ms p50 / p99"

# (b) eval round trips on one session: idle, then under ingest load.
client rtt "$N_RTT" "$sock" > "$tmp/idle"
row "repl: eval round trip, daemon idle" "$(val rtt_p50_us "$tmp/idle") / $(val rtt_p99_us "$tmp/idle")" "µs p50 / p99"
client complete "$N_RTT" "$sock" > "$tmp/complete"
row "  completion round trip (no eval, no audit)" "$(val rtt_p50_us "$tmp/complete") / $(val rtt_p99_us "$tmp/complete")" "µs p50 / p99"

accepted() { curl -fs "http://127.0.0.1:$port/metrics" | awk '/^steward_events_accepted_total/ {s += $2} END {print s + 0}'; }
a0=$(accepted)
TOKEN=$(cat "$tmp/var/admin.token") BODY="$tmp/single.json" taskset -c "${CLIENT_CPUS:-1}" \
    wrk -t1 -c64 -d"${SECS}s" -s bench/wrk_post.lua "http://127.0.0.1:$port/v1/events" > "$tmp/wrk" &
wpid=$!
# Measure once the load is on (events are being accepted), and stop before wrk does.
for _ in $(seq 200); do [ "$(accepted)" -gt "$a0" ] && break; sleep 0.02; done
client rtt "$N_RTT" "$sock" $((SECS > 3 ? SECS - 2 : 1)) > "$tmp/load"
wait "$wpid"
wpid=""
row "repl: eval round trip, under ingest load" "$(val rtt_p50_us "$tmp/load") / $(val rtt_p99_us "$tmp/load")" "µs p50 / p99 ($(val rtt_n "$tmp/load") evals)"
row "  the load: 1 event per POST, 64 conns" "$(val rps "$tmp/wrk"); $(val p50_ms "$tmp/wrk") / $(val p99_ms "$tmp/wrk")" "req/s (durable); ms p50 / p99"
grep -q "errors=0 " "$tmp/wrk" || row "  (non-2xx or socket errors)" "$(sed -n 's/.*\(errors=[0-9]*\).*\(statuses=.*\)/\1 \2/p' "$tmp/wrk")" ""
kill -TERM "$pid"
wait "$pid" 2> /dev/null || true
pid=""
