#!/bin/bash
# Cluster mode on one PostgreSQL (docs/operations.md): durable ingest with one and with three
# instances (batches of 100 events, wrk against every instance at once), handler throughput
# through a trivial keyed policy, p99 of the POSTs, and leader failover time after SIGKILL.
# Prints rows in bench/daemon's format. Needs Debian's postgresql and wrk.
set -u
cd "$(dirname "$0")/.."
here=$PWD
BIN=${STEWARD_BIN:-build/steward}
SECS=${SECS:-5}
. tests/support/pg.sh
tmp=$(mktemp -d /tmp/steward-clubench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; pg_stop; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2" | head -1; }
pg_start >/dev/null || { echo "bench/cluster_pg: PostgreSQL did not start" >&2; exit 1; }
TOKEN=cluster-bench-admin-token-0123456789
export TOKEN
mkdir -p "$tmp/policies"
cat > "$tmp/policies/count.lua" <<'POL'
return { name = "bench.count", on = { "bench.*" }, key = function(ev) return ev.data.k end,
         handle = function(ev) end }
POL
# A batch of 100 events over 50 keys; wrk_post.lua sends the same body, so the ids carry a
# per-request counter from wrk's Lua (see below) — duplicates would not be dispatched.
cat > "$tmp/post.lua" <<'LUA'
dofile(os.getenv("WRK_POST")) -- headers, status counts and the summary line
local n, tid = 0, tostring(math.random(1e9))
request = function()
  n = n + 1
  local parts = {}
  for i = 1, 100 do
    parts[i] = string.format('{"id":"%s-%d-%d","type":"bench.e","data":{"k":"k%d"}}', tid, n, i, i % 50)
  end
  return wrk.format("POST", nil, nil, "[" .. table.concat(parts, ",") .. "]")
end
LUA
echo '[]' > "$tmp/empty.json"

start() { # start NAME -> sets PORT_<NAME>, PID_<NAME>
    local i=$1 port
    port=$(pg_free_port)
    mkdir -p "$tmp/$i"
    cat > "$tmp/$i/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "$PG_URL?pool_size=8", policies = "$tmp/policies",
  var_dir = "$tmp/$i/var", admin_socket = "$tmp/$i/var/steward.sock", admin_token = "$TOKEN",
  metrics_public = true, log_level = "warn", limits = { max_connections = 2000 } }
CFG
    "$BIN" run -c "$tmp/$i/steward.lua" 2>>"$tmp/$i/log" &
    pids+=($!)
    eval "PID_$i=$!"
    for _ in $(seq 400); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.025
    done
    eval "PORT_$i=$port"
}
runs() { curl -fs "http://127.0.0.1:$1/metrics" | awk '/^steward_handler_runs_total/ {s += $2} END {print s + 0}'; }
# load NAME...: wrk on each instance at once for SECS; prints "events/s p99_ms handled/s"
load() {
    local before=0 after=0 i p
    for i in "$@"; do p=$(eval echo "\$PORT_$i"); before=$((before + $(runs "$p"))); done
    local w=()
    for i in "$@"; do
        p=$(eval echo "\$PORT_$i")
        WRK_POST=$here/bench/wrk_post.lua BODY=$tmp/empty.json wrk -t1 -c16 -d"${SECS}s" -s "$tmp/post.lua" \
            "http://127.0.0.1:$p/v1/events" > "$tmp/w_$i" 2>&1 &
        w+=($!)
    done
    wait "${w[@]}"
    sleep 1   # handlers catch up
    for i in "$@"; do p=$(eval echo "\$PORT_$i"); after=$((after + $(runs "$p"))); done
    local rps=0 p99=0
    for i in "$@"; do
        # awk does the arithmetic: it is on every Debian machine
        rps=$(awk -v a="$rps" -v b="$(val rps "$tmp/w_$i")" 'BEGIN { printf "%.2f", a + b }')
        p99=$(awk -v a="$p99" -v b="$(val p99_ms "$tmp/w_$i")" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "$(awk -v a="$rps" 'BEGIN { printf "%.0f", a * 100 }') $p99 $(( (after - before) / (SECS + 1) ))"
}

start a
sleep 1
read -r ev p99 hd <<<"$(load a)"
row "cluster ingest, 1 instance, batches of 100" "$ev" "events/s (durable, PostgreSQL)"
row "cluster ingest p99, 1 instance" "$p99" "ms per POST of 100"
row "cluster handler throughput, 1 instance" "$hd" "handlings/s"
start b; start c
sleep 2
read -r ev p99 hd <<<"$(load a b c)"
row "cluster ingest, 3 instances, batches of 100" "$ev" "events/s (durable, PostgreSQL)"
row "cluster ingest p99, 3 instances" "$p99" "ms per POST of 100"
row "cluster handler throughput, 3 instances" "$hd" "handlings/s"
leader() { curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/v1/cluster" |
    /usr/bin/python3 -c 'import json,sys; print(([i["pid"] for i in json.load(sys.stdin)["instances"] if i["leader"]] + [""])[0])'; }
L=$(leader "$PORT_a")
t0=$(date +%s.%N); kill -9 "$L"
for _ in $(seq 400); do
    for i in a b c; do
        p=$(eval echo "\$PORT_$i"); pid=$(eval echo "\$PID_$i")
        [ "$pid" = "$L" ] && continue
        nl=$(leader "$p" 2>/dev/null); [ -n "$nl" ] && [ "$nl" != "$L" ] && break 2
    done
    sleep 0.05
done
row "cluster leader failover after SIGKILL" "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')" "s (SIGKILL to a new leader in /v1/cluster)"
