#!/bin/sh
# The billing benchmark (issue 18): a month of usage aggregated into invoices, on SQLite and on
# PostgreSQL. BILLING_SUBS subscriptions (default 1,000; tenants, metrics and a plan made
# through the HTTP API) get BILLING_EVENTS usage events in all (default 10,000,000), posted to
# POST /v1/billing/usage in batches of 1,000 by bench/billing_load.py pinned to core 1, the
# daemon pinned to core 0. Measured: events/s acknowledged (durable), events/s recorded by the
# shipped policy billing.usage (billing_usage catching up), the daemon's RSS, then the time to
# invoice the month (every due invoice built, then finalized with its number) and invoices/s.
# Checked: as many finalized invoices as subscriptions, numbered without a gap, and the sum of
# their totals equal to what the load generator computed from the units it sent.
#
#   bench/billing.sh [sqlite|pg|both]       (default both; pg SKIPs without PostgreSQL)
#
# Prints table rows (as bench/run) and one machine line per store:
#   billing_<store>: events=... accepted_per_s=... recorded_per_s=... ... check=ok|FAILED
# Exit status 1 when a check failed. Wrap a measurement in flock /tmp/steward-bench.lock.
set -eu
cd "$(dirname "$0")/.."
BIN=${STEWARD_BIN:-build/steward}
EVENTS=${BILLING_EVENTS:-10000000}
SUBS=${BILLING_SUBS:-1000}
CONNS=${BILLING_CONNS:-4}
DAEMON_CPUS=${DAEMON_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
STORES=${1:-both}
# one daemon process, as every figure in docs/performance.md (bench/run does the same)
export STEWARD_WORKERS=${STEWARD_WORKERS-1}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
tmp=$(mktemp -d /tmp/steward-bench-billing.XXXXXX)
chmod 755 "$tmp"
pid=""
pg_up=""
failed=0
pg_as() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    [ -n "$pg_up" ] && pg_as "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { /usr/bin/python3 -c 'import time; print("%.3f" % time.monotonic())'; }
calc() { /usr/bin/python3 -c "print($1)"; }
kv() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
# month_start OFFSET: the Unix time of the first day (UTC) of this month + OFFSET months
month_start() {
    /usr/bin/python3 -c 'import sys,datetime as d
n=d.datetime.now(d.timezone.utc); m=n.year*12+n.month-1+int(sys.argv[1])
print(int(d.datetime(m//12, m%12+1, 1, tzinfo=d.timezone.utc).timestamp()))' "$1"
}

# PostgreSQL as bench/daemon_pg.sh starts it: durable (fsync, synchronous_commit on).
pg_start() {
    mkdir -p "$tmp/pg"
    chmod 755 "$tmp/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres "$tmp/pg"
    pg_as "$PG_BIN/initdb" -D "$tmp/pg/data" -A trust -U postgres -E UTF8 --locale=C >"$tmp/pg/initdb.log" 2>&1 ||
        { cat "$tmp/pg/initdb.log" >&2; return 1; }
    pg_port=$(free_port)
    pg_as ${PG_CPUS:+taskset -c "$PG_CPUS"} "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/log" -w -t 60 start -o "-p $pg_port \
      -k $tmp/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
      -c shared_buffers=256MB -c wal_buffers=16MB -c max_wal_size=8GB -c checkpoint_timeout=30min \
      -c max_connections=100" >/dev/null || { cat "$tmp/pg/log" >&2; return 1; }
    pg_up=1
    pg_as "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres steward
    PG_URL="postgres://postgres@127.0.0.1:$pg_port/steward"
}

# bench_store NAME STORE_URL: one whole run against a fresh store
bench_store() {
    name=$1 store=$2 dir="$tmp/$1"
    mkdir -p "$dir/policies/billing" "$dir/var"
    # the recording policy and the subscriptions' start timers; invoicing is run (and timed) below
    cp policies/billing/usage.lua policies/billing/subscriptions.lua "$dir/policies/billing/"
    port=$(free_port)
    cat > "$dir/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "$store", policies = "$dir/policies",
         var_dir = "$dir/var", admin_socket = "$dir/var/steward.sock", log_level = "warn",
         tenants = { plans = { basic = {} } },
         -- last month's usage must not be late when it arrives in this month
         billing = { currency = "EUR", grace_period = "62d" },
         grants = { ["billing.usage"] = { billing = true }, ["billing.subscriptions"] = { billing = true } },
         -- the invoicing run is one REPL command: room for a month of 1,000 invoices
         limits = { max_connections = 2000, repl_cpu = 86400, repl_memory = 8 * 1024 * 1024 * 1024 } }
CFG
    taskset -c "$DAEMON_CPUS" "$BIN" run -c "$dir/steward.lua" 2>>"$dir/daemon.log" &
    pid=$!
    for _ in $(seq 400); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null ||
        { echo "bench/billing.sh: the daemon did not start" >&2; cat "$dir/daemon.log" >&2; return 1; }
    token=$(cat "$dir/var/admin.token")
    url="http://127.0.0.1:$port"
    beval() { "$BIN" eval --socket "$dir/var/steward.sock" "$1" | sed 's/^"\(.*\)"$/\1/'; }
    from=$(month_start -1)
    to=$(month_start 0)

    taskset -c "$LOAD_CPUS" /usr/bin/python3 bench/billing_load.py setup "$url" "$token" "$SUBS" "$from" > "$dir/subs"

    # BILLING_PROFILE=dir: the daemon's Lua profile (the REPL's profile()) of each stage into dir
    # (one at a time: the profiler is process-wide, so each waits for the one before)
    prof_pid=""
    prof() {
        [ -n "${BILLING_PROFILE:-}" ] || return 0
        (if [ -n "$prof_pid" ]; then while kill -0 "$prof_pid" 2>/dev/null; do sleep 0.2; done; fi
         sleep "$2"; "$BIN" eval --socket "$dir/var/steward.sock" "return profile($3, {top = 40})" \
            > "$BILLING_PROFILE/$name.$1.txt" 2>&1) &
        prof_pid=$!
    }
    prof ingest 2 8
    t0=$(now)
    taskset -c "$LOAD_CPUS" /usr/bin/python3 bench/billing_load.py post "$url" "$token" "$dir/subs" "$EVENTS" "$CONNS" \
        "$from" "$to" "$dir/expected.json" > "$dir/post"
    posted=$(kv accepted < "$dir/post")
    post_s=$(kv seconds < "$dir/post")
    # billing_usage catching up with the log: polled, bounded by a deadline (a stuck policy fails the run)
    prof record 0 10
    deadline=$(calc "$(now) + 600 + $EVENTS / 200")
    # and no progress for 120 s is a stall: the run fails at once, saying so
    recorded=0 seen=-1 still=$(now)
    while :; do
        recorded=$(beval "return (require('steward.runtime.store').default().db:query('SELECT COUNT(*) AS n FROM billing_usage')[1].n)")
        [ "$recorded" -ge "$posted" ] && break
        [ "$(calc "int($(now) > $deadline)")" = 1 ] && break
        if [ "$recorded" != "$seen" ]; then seen=$recorded still=$(now)
        elif [ "$(calc "int($(now) > $still + 120)")" = 1 ]; then
            echo "bench/billing.sh: $name: recording stalled at $recorded of $posted events" >&2
            tail -5 "$dir/daemon.log" >&2
            break
        fi
        sleep 1
    done
    t1=$(now)
    rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")

    prof invoice 1 5
    "$BIN" eval --socket "$dir/var/steward.sock" - < bench/billing_invoice.lua | sed 's/^"\(.*\)"$/\1/' > "$dir/invoice"
    inv=$(cat "$dir/invoice")
    build_s=$(echo "$inv" | kv build_s)
    fin_s=$(echo "$inv" | kv finalize_s)
    rss_after=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""

    # the check: counts, gap-free numbers, the sum of the totals against the generator's
    check=$(/usr/bin/python3 - "$dir/expected.json" "$inv" "$posted" "$recorded" <<'PY'
import json, sys
from decimal import Decimal
exp = json.load(open(sys.argv[1]))
got = dict(kv.split("=", 1) for kv in sys.argv[2].split() if "=" in kv)
n = exp["invoices"]
why = []
if int(sys.argv[3]) != exp["events"]: why.append("accepted %s of %d events" % (sys.argv[3], exp["events"]))
if int(sys.argv[4]) != exp["events"]: why.append("recorded %s of %d events" % (sys.argv[4], exp["events"]))
if got.get("errors") != "0": why.append("invoicing errors: %s %s" % (got.get("errors"), got.get("first_error", "")))
if got.get("finalized") != str(n): why.append("finalized %s of %d invoices" % (got.get("finalized"), n))
if got.get("first") != "INV-000001" or got.get("last") != "INV-%06d" % n: why.append("numbers %s..%s" % (got.get("first"), got.get("last")))
if Decimal(got.get("sum", "0")) != Decimal(exp["sum"]): why.append("sum of totals %s, expected %s" % (got.get("sum"), exp["sum"]))
print("ok" if not why else "FAILED:" + "; ".join(why).replace(" ", "_"))
PY
)
    rec_s=$(calc "round($t1 - $t0, 3)")
    acc_rate=$(calc "round($posted / $post_s)")
    rec_rate=$(calc "round($recorded / $rec_s)")
    inv_s=$(calc "round($build_s + $fin_s, 3)")
    inv_rate=$(calc "round($SUBS / max($build_s + $fin_s, 0.001), 1)")
    row "billing on $name: $EVENTS events, $SUBS subs" "$acc_rate" "events/s acknowledged (durable)"
    row "  recorded by billing.usage" "$rec_rate" "events/s (log to billing_usage)"
    row "  daemon RSS after recording / peak" "$rss / $hwm" "MiB"
    row "  invoice the month: build + finalize" "$build_s + $fin_s" "s"
    row "  invoices/s (build and finalize)" "$inv_rate" "invoices/s"
    row "  peak RSS after invoicing" "$rss_after" "MiB"
    row "  check (counts, numbers, sum of totals)" "${check%%:*}" "$(echo "$check" | sed -n "s/^FAILED://p" | tr _ " ")"
    echo "billing_$name: events=$EVENTS subs=$SUBS accepted=$posted post_s=$post_s accepted_per_s=$acc_rate" \
        "recorded=$recorded record_s=$rec_s recorded_per_s=$rec_rate rss_mib=$rss peak_rss_mib=$hwm" \
        "build_s=$build_s finalize_s=$fin_s invoice_s=$inv_s invoices_per_s=$inv_rate sum=$(echo "$inv" | kv sum)" \
        "check=$check"
    [ "$check" = ok ] || failed=1
}

case "$STORES" in
    sqlite|both) bench_store sqlite "sqlite:$tmp/sqlite/var/steward.db" ;;
esac
case "$STORES" in
    pg|both)
        if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
            row "billing on pg" "skipped" "(Debian package postgresql not installed)"
        else
            pg_start
            bench_store pg "$PG_URL"
        fi ;;
esac
exit $failed
