#!/bin/bash
# Noisy neighbours (issue 17 §2): the quiet tenant's ingest and decide latency (p50, p99),
# alone and while another tenant floods POST /v1/events far above its plan's rate. One daemon
# process pinned to core 0 (SQLite, the decision log on, a tenant policy per tenant that
# handles every event); the quiet tenant (bench/tenants_load.py quiet, paced at QRATE
# requests/s, half ingest, half decide) and the flooder share core 1: (a) paced at 10x its
# limit (bench/tenants_load.py flood), (b) as fast as wrk -t1 -c16 goes (at nice 19, so the
# quiet client keeps its share of core 1), which saturates the daemon's core. Prints table rows for bench/run; wrap a run in
# `flock /tmp/steward-bench.lock` on a shared machine.
set -u
export STEWARD_ALLOW_ROOT=${STEWARD_ALLOW_ROOT-true}
export STEWARD_WORKERS=1
cd "$(dirname "$0")/.." || exit 1
BIN=${STEWARD_BIN:-build/steward}
SECS=${SECS:-${BENCH_SECONDS:-6}}
QRATE=${QRATE:-200}        # the quiet tenant's requests/s, half of them events (within its limit)
LIMIT=${LIMIT:-200}        # each tenant's plan: events/s (burst the same)
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
val() { sed -n "s/.*$1=\([0-9.a-z]*\).*/\1/p" "$2" | head -1; }
if ! command -v wrk >/dev/null; then row "noisy neighbours: wrk not installed" "-" ""; exit 0; fi
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for t in quiet noisy; do
    mkdir -p "$tmp/policies/tenants/$t"
    cat > "$tmp/policies/tenants/$t/work.lua" <<'POL'
return { on = { "bench.*" },
  handle = function(ev) return ev.data.i end,
  decide = function(input) return { ok = true, i = input.i } end }
POL
done
cat > "$tmp/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "sqlite:$tmp/steward.db", policies = "$tmp/policies",
         var_dir = "$tmp/var", admin_socket = "$tmp/var/steward.sock", log_level = "warn",
         limits = { max_connections = 2000 },
         tenants = { plans = { basic = { rate = { ingest = $LIMIT, burst = $LIMIT } } } } }
CFG
taskset -c 0 "$BIN" run -c "$tmp/steward.lua" 2>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
if ! kill -0 "$pid" 2>/dev/null; then cat "$tmp/daemon.log" >&2; exit 1; fi
admin=$(cat "$tmp/var/admin.token")
mk() {
    curl -s -H "Authorization: Bearer $admin" -d "{\"role\":\"admin\",\"tenant\":\"$1\",\"name\":\"$1\"}" \
        "http://127.0.0.1:$port/v1/tokens" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
QT=$(mk quiet); NT=$(mk noisy)
printf '{"type":"bench.flood","data":{"i":1}}' > "$tmp/one.json"

quiet() { taskset -c 1 /usr/bin/python3 bench/tenants_load.py quiet "$port" "$QT" tenants.quiet.work "$QRATE" "$SECS" > "$1"; }
report() { # report LABEL FILE-ALONE FILE-FLOODED
    for k in ingest decide; do
        a50=$(val "${k}_p50_ms" "$2"); a99=$(val "${k}_p99_ms" "$2")
        n50=$(val "${k}_p50_ms" "$3"); n99=$(val "${k}_p99_ms" "$3")
        row "$1: quiet $k p50 alone / flooded" "$a50 / $n50" "ms"
        row "$1: quiet $k p99 alone / flooded" "$a99 / $n99" \
            "ms ($(awk -v a="$a99" -v b="$n99" 'BEGIN { printf "%+.0f%%", (b / a - 1) * 100 }'))"
    done
    row "$1: quiet requests (errors)" "$(val n "$3")($(val errors "$3"))" "at $QRATE/s, half events"
}
quiet "$tmp/warm"                                   # warm-up, not reported
quiet "$tmp/alone"

# (a) The flooder at 10x its limit, paced (tenants_load.py flood, 4 connections).
taskset -c 1 /usr/bin/python3 bench/tenants_load.py flood "$port" "$NT" "$((LIMIT * 10))" "$((SECS + 1))" 4 > "$tmp/flood10" &
fpid=$!
quiet "$tmp/noisy10"
wait "$fpid"
row "noisy 10x: flooder (limit $LIMIT/s)" "$(val rps "$tmp/flood10")" \
    "req/s offered $((LIMIT * 10))/s: $(val accepted "$tmp/flood10") accepted, $(val limited "$tmp/flood10") refused 429"
report "noisy 10x" "$tmp/alone" "$tmp/noisy10"

# (c) Control: no flood, a busy loop beside the quiet client on core 1 (what the clients
# sharing one core cost by themselves; the daemon's core is idle but for the quiet tenant).
taskset -c 1 /usr/bin/python3 -c 'import time
end = time.monotonic() + '"$((SECS + 1))"'
while time.monotonic() < end: pass' &
bpid=$!
quiet "$tmp/burn"
wait "$bpid"
report "control, core 1 busy, no flood" "$tmp/alone" "$tmp/burn"

# (b) The flooder as fast as wrk goes (-t1 -c16, nice 19): the daemon's core saturated.
BODY="$tmp/one.json" TOKEN="$NT" nice -n 19 taskset -c 1 wrk -t1 -c16 -d "$((SECS + 1))s" -s bench/wrk_post.lua \
    "http://127.0.0.1:$port/v1/events" > "$tmp/flood" 2>&1 &
wpid=$!
quiet "$tmp/noisy"
wait "$wpid"
row "noisy wrk: flooder (limit $LIMIT/s)" "$(val rps "$tmp/flood")" \
    "req/s, $(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp/flood") refused 429"
report "noisy wrk" "$tmp/alone" "$tmp/noisy"
