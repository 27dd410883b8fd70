#!/bin/sh
# The daemon's durable ingest on PostgreSQL: single events and batches of 100 per POST, one
# daemon instance, latency. Starts a throwaway PostgreSQL (Debian's server binaries) with
# fsync=on and synchronous_commit=on: an acknowledged event is on disk, as on SQLite.
# Prints table rows for bench/run. Daemon pinned to core 0, wrk to core 1 (as bench/daemon);
# PostgreSQL is not pinned (PG_CPUS to pin it). SKIPs (one row) without PostgreSQL.
# PERF=1 adds a row per load: where both cores' time went (perf record -a, by command:
# postgres, steward, idle, everything else).
set -eu
BIN=${STEWARD_BIN:-build/steward}
SECS=${SECS:-10}
SHARED=${SHARED:-../shared/bench}
CONNS=${CONNS:-64}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
    row "ingest on PostgreSQL" "skipped" "(Debian package postgresql not installed)"
    exit 0
fi
tmp=$(mktemp -d /tmp/steward-bench-pg.XXXXXX)
pid=""
pg_up=""
pg_as() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    [ -n "$pg_up" ] && pg_as "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL: durable (fsync, synchronous_commit and full_page_writes on, the defaults), with
# room for the WAL so that no checkpoint is forced inside a short run.
mkdir -p "$tmp/pg"
chmod 755 "$tmp" "$tmp/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$tmp/pg"
pg_as "$PG_BIN/initdb" -D "$tmp/pg/data" -A trust -U postgres -E UTF8 --locale=C >"$tmp/pg/initdb.log" 2>&1 ||
    { cat "$tmp/pg/initdb.log" >&2; exit 1; }
pg_port=$(free_port)
pg_as ${PG_CPUS:+taskset -c "$PG_CPUS"} "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/log" -w -t 60 start -o "-p $pg_port -k $tmp/pg \
  -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
  -c shared_buffers=256MB -c wal_buffers=16MB -c max_wal_size=8GB -c checkpoint_timeout=30min \
  -c max_connections=100" >/dev/null || { cat "$tmp/pg/log" >&2; exit 1; }
pg_up=1
pg_as "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres steward
PG_URL="postgres://postgres@127.0.0.1:$pg_port/steward${POOL:+?pool_size=$POOL}"

port=$(free_port)
mkdir -p "$tmp/policies"
cat > "$tmp/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "$PG_URL", policies = "$tmp/policies",
         var_dir = "$tmp/var", admin_socket = "$tmp/var/steward.sock", metrics_public = true,
         log_level = "warn", limits = { max_connections = 2000 } }
CFG
"$BIN" script bench/make_events.lua "$SHARED/events100.json" "$tmp/batch100.json" "$tmp/single.json"

taskset -c "${DAEMON_CPUS:-0}" "$BIN" run -c "$tmp/steward.lua" 2>>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "bench/daemon_pg.sh: the daemon did not start" >&2; cat "$tmp/daemon.log" >&2; exit 1; }
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2" | head -1; }
metric() { curl -fs "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2 + 0}'; }
export TOKEN
TOKEN=$(cat "$tmp/var/admin.token")

# Over one run: the group commit's batching, and how much of the time a write group was
# running (BEGIN to the end of COMMIT). Write groups run one at a time, so near 100% the
# serial group is the bound.
mark() { c0=$(metric steward_store_commits_total); u0=$(metric steward_store_units_total); s0=$(metric steward_store_commit_seconds_total); }
commit_row() {
    c=$(( $(metric steward_store_commits_total) - c0 )); u=$(( $(metric steward_store_units_total) - u0 ))
    s=$(awk "BEGIN {print $(metric steward_store_commit_seconds_total) - $s0}")
    row "  commits/s, units per commit" "$(awk "BEGIN {printf \"%.0f; %.1f\", $c / $SECS, ($c ? $u / $c : 0)}")" ""
    row "  mean write group, writer busy" "$(awk "BEGIN {printf \"%.1f ms; %.0f%%\", ($c ? $s / $c * 1000 : 0), $s / $SECS * 100}")" ""
}
# perf record -a over most of a load, then one row of shares by command.
prof_start() {
    [ -n "${PERF:-}" ] || return 0
    perf record -a -q -o "$tmp/perf.$1" -- sleep $((SECS > 2 ? SECS - 1 : 1)) >/dev/null 2>&1 &
    perf_pid=$!
}
prof_row() {
    [ -n "${PERF:-}" ] || return 0
    wait "$perf_pid" 2>/dev/null
    row "  CPU of both cores (perf)" "$(perf report -i "$tmp/perf.$1" --sort comm --stdio -q 2>/dev/null |
        awk '{ gsub("%", "", $1); s[$2] += $1; t += $1 }
             END { printf "postgres %.0f%%, steward %.0f%%, idle %.0f%%, other %.0f%%",
                   s["postgres"], s["steward"], s["swapper"], t - s["postgres"] - s["steward"] - s["swapper"] }')" ""
}

mark
prof_start single
BODY="$tmp/single.json" taskset -c "${WRK_CPUS:-1}" wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/wrk_post.lua "http://127.0.0.1:$port/v1/events" > "$tmp/w1"
row "ingest on PostgreSQL, 1 event per POST, $CONNS conns" "$(val rps "$tmp/w1")" "events/s (durable)"
row "  latency p50 / p99" "$(val p50_ms "$tmp/w1") / $(val p99_ms "$tmp/w1")" "ms"
commit_row
prof_row single
grep -q "errors=0 " "$tmp/w1" || row "  (non-2xx or socket errors)" "$(sed -n 's/.*\(errors=[0-9]*\).*\(statuses=.*\)/\1 \2/p' "$tmp/w1")" ""

mark
prof_start batch
BODY="$tmp/batch100.json" taskset -c "${WRK_CPUS:-1}" wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/wrk_post.lua "http://127.0.0.1:$port/v1/events" > "$tmp/w100"
rps=$(val rps "$tmp/w100")
row "ingest on PostgreSQL, batches of 100, $CONNS conns" "$(awk "BEGIN {printf \"%.0f\", $rps * 100}")" "events/s (durable)"
row "  requests/s, latency p50 / p99" "$rps; $(val p50_ms "$tmp/w100") / $(val p99_ms "$tmp/w100")" "req/s; ms"
commit_row
prof_row batch
grep -q "errors=0 " "$tmp/w100" || row "  (non-2xx or socket errors)" "$(sed -n 's/.*\(errors=[0-9]*\).*\(statuses=.*\)/\1 \2/p' "$tmp/w100")" ""

kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
