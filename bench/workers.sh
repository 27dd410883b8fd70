#!/bin/sh
# Worker processes (issue 14, target 4): POST /v1/decide and durable ingest with workers = 1
# and workers = 2 on this machine, same config, same store (SQLite), the decision log on.
# A 2-core machine cannot give wrk a core of its own while two workers use both, so both
# runs leave everything unpinned: daemon and wrk (-t2) share both cores, and the ratio
# compares like with like. For reference the pinned layout of bench/decide (one worker on
# core 0, wrk on core 1) is measured too. Prints table rows for bench/run; wrap a run in
# `flock /tmp/steward-bench.lock` on a shared machine.
set -eu
# Started as root (a bench machine), the daemon would switch to the steward user, who cannot
# write this root-owned temporary directory.
export STEWARD_ALLOW_ROOT=${STEWARD_ALLOW_ROOT-true}
cd "$(dirname "$0")/.."
BIN=${STEWARD_BIN:-build/steward}
SECS=${SECS:-${BENCH_SECONDS:-6}}
SHARED=$(cd "${SHARED:-../shared/bench}" && pwd)
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2" | head -1; }
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/policies"
cp bench/policies/threshold.lua "$tmp/policies/"
cat > "$tmp/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "sqlite:$tmp/steward.db", policies = "$tmp/policies",
         var_dir = "$tmp/var", admin_socket = "$tmp/var/steward.sock", log_level = "warn",
         limits = { max_connections = 2000 } }
CFG
"$BIN" script bench/make_events.lua "$SHARED/events100.json" "$tmp/batch100.json" "$tmp/single.json"

# start WORKERS [taskset cpus]: a daemon with that many workers; waits until each serves.
start() {
    : > "$tmp/daemon.log"
    STEWARD_WORKERS=$1 STEWARD_LOG_LEVEL=info taskset -c "${2:-0,1}" "$BIN" run -c "$tmp/steward.lua" 2>>"$tmp/daemon.log" &
    pid=$!
    for _ in $(seq 200); do
        if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            [ "$1" = 1 ] && return 0
            [ "$(grep -c 'msg="worker serving"' "$tmp/daemon.log")" -ge "$1" ] && return 0
        fi
        sleep 0.05
    done
    echo "bench/workers.sh: the daemon did not start" >&2; cat "$tmp/daemon.log" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""; rm -f "$tmp/steward.db"*; }
# CPU seconds the daemon's processes (the supervisor and its workers) have used so far.
cpu_s() {
    for p in $pid $(ps -o pid= --ppid "$pid"); do cat "/proc/$p/stat" 2>/dev/null; done |
        awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.3f", s / hz }'
}
# load NAME BODY PATH CONNS [cpus]: wrk against the daemon, two threads unless pinned to one
# core; NAME.cpu gets the daemon's CPU microseconds per request (load-independent: on a busy
# shared machine the throughput is noise, the CPU one request costs much less so).
load() {
    t=2; [ -n "${5:-}" ] && t=1
    c0=$(cpu_s)
    BODY="$2" taskset -c "${5:-0,1}" wrk -t$t -c"$4" -d"${SECS}s" -s bench/wrk_post.lua \
        "http://127.0.0.1:$port$3" > "$tmp/$1"
    c1=$(cpu_s)
    awk -v a="$c0" -v b="$c1" -v r="$(val rps "$tmp/$1")" -v s="$SECS" \
        'BEGIN { printf "%.1f", (b - a) * 1e6 / (r * s) }' > "$tmp/$1.cpu"
}
export TOKEN

for w in 1 2; do
    start "$w"
    TOKEN=$(cat "$tmp/var/admin.token")
    for c in 16 64; do load "d$w.$c" "$SHARED/decide.json" /v1/decide/bench.threshold "$c"; done
    load "s$w" "$tmp/single.json" /v1/events 64
    load "b$w" "$tmp/batch100.json" /v1/events 64
    stop
done
for c in 16 64; do
    r1=$(val rps "$tmp/d1.$c"); r2=$(val rps "$tmp/d2.$c")
    row "decide, $c conns, 1 worker (unpinned)" "$r1" "req/s (p99 $(val p99_ms "$tmp/d1.$c") ms, $(cat "$tmp/d1.$c.cpu") us CPU/req)"
    row "decide, $c conns, 2 workers (unpinned)" "$r2" "req/s (p99 $(val p99_ms "$tmp/d2.$c") ms, $(cat "$tmp/d2.$c.cpu") us CPU/req)"
    row "  2 workers / 1 worker" "$(awk "BEGIN {printf \"%.2f\", $r2 / $r1}")" "x"
done
s1=$(val rps "$tmp/s1"); s2=$(val rps "$tmp/s2")
row "ingest 1 event/POST, 1 worker" "$s1" "req/s (p99 $(val p99_ms "$tmp/s1") ms, $(cat "$tmp/s1.cpu") us CPU/req)"
row "ingest 1 event/POST, 2 workers" "$s2" "req/s (p99 $(val p99_ms "$tmp/s2") ms, $(cat "$tmp/s2.cpu") us CPU/req)"
row "  2 workers / 1 worker" "$(awk "BEGIN {printf \"%.2f\", $s2 / $s1}")" "x"
b1=$(awk "BEGIN {printf \"%.0f\", $(val rps "$tmp/b1") * 100}"); b2=$(awk "BEGIN {printf \"%.0f\", $(val rps "$tmp/b2") * 100}")
row "ingest batches of 100, 1 worker" "$b1" "events/s ($(cat "$tmp/b1.cpu") us CPU/batch)"
row "ingest batches of 100, 2 workers" "$b2" "events/s ($(cat "$tmp/b2.cpu") us CPU/batch)"
row "  2 workers / 1 worker" "$(awk "BEGIN {printf \"%.2f\", $b2 / $b1}")" "x"

# The layout of bench/decide: one worker on core 0, wrk alone on core 1.
start 1 0
TOKEN=$(cat "$tmp/var/admin.token")
load p64 "$SHARED/decide.json" /v1/decide/bench.threshold 64 1
stop
row "decide, 64 conns, 1 worker core 0, wrk core 1" "$(val rps "$tmp/p64")" "req/s (p99 $(val p99_ms "$tmp/p64") ms)"
for f in "$tmp"/d[12].* "$tmp"/s[12] "$tmp"/b[12] "$tmp"/p64; do
    case "$f" in *.cpu) continue ;; esac
    grep -q "errors=0 " "$f" || row "  $(basename "$f"): errors" "$(sed -n 's/.*\(errors=[0-9]*\).*\(statuses=.*\)/\1 \2/p' "$f")" ""
done
