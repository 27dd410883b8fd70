#!/bin/bash
# steward run on PostgreSQL when the database goes away: a load generator posts events with
# client-chosen ids while the test stops PostgreSQL (immediate: connections cut as in a crash)
# and starts it again. The daemon must keep running, answer 503 (+ Retry-After) instead of
# acknowledging uncommitted events, turn /readyz 503 and back to 200 without a restart, and
# afterwards every acknowledged id must be in the log exactly once and handling must resume.
# Skipped when PostgreSQL is not installed.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
PY=/usr/bin/python3
LOADPID=
cleanup_all() {
    [ -n "$LOADPID" ] && kill "$LOADPID" 2>/dev/null
    daemon_cleanup
    pg_stop
}
trap cleanup_all EXIT

pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
PSQL() { "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d steward -c "$1"; }

n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
diag() { sed 's/^/# /'; }
# wait_for SECONDS CMD...: runs CMD every 50 ms until it succeeds; 1 on timeout.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
alive() { kill -0 "$DPID" 2>/dev/null; }
H="Authorization: Bearer "
readyz_is() { [ "$(curl -s -o "$D/readyz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = "$1" ]; }
# progress FIELD: a number from the load generator's progress file.
progress() {
    $PY -c 'import json,sys
try: d = json.load(open(sys.argv[1]))
except Exception: print(0); sys.exit()
f = sys.argv[2]
print(d["acked"] if f == "acked" else d["statuses"].get(f, 0))' "$D/load.json.progress" "$1"
}
at_least() { [ "$(progress "$1")" -ge "$2" ]; }

# Every event of type load.* and after.* is handled by a policy that writes it to kv.
cat > "$D/policies/mark.lua" <<'POL'
return { name = "test.mark", on = { "load.*", "after.*" },
  handle = function(ev, ctx) assert(ctx.kv():put(ev.id, { type = ev.type })) end }
POL
# A handler that is running when PostgreSQL goes away: its store write fails mid-outage.
cat > "$D/policies/slow.lua" <<'POL'
return { name = "test.slow", on = { "slow.*" },
  handle = function(ev, ctx)
    require("steward.time").sleep(1.5)
    assert(ctx.kv():put(ev.id, { type = ev.type }))
  end }
POL
daemon_config "store = \"$PG_URL\", log_level = \"info\",
  limits = { retry_attempts = 3, retry_base = \"50ms\", retry_max = \"200ms\" },"
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon starts on PostgreSQL"; exit 1; }
H="Authorization: Bearer $TOKEN"
readyz_is 200; ok $? "readyz is 200 with PostgreSQL up"

"$PY" "$here/tests/support/daemon_pg_load.py" "$PORT" "$TOKEN" "$D/load.json" "$D/stop" 4 2>"$D/load.err" &
LOADPID=$!
wait_for 20 at_least acked 300; ok $? "the load generator gets events acknowledged"

# ---- PostgreSQL goes away ----
before_503=$(progress 503)
curl -s -o /dev/null -H "$H" -H 'content-type: application/json' -d '{"type":"slow.one","id":"slow-1"}' \
    "http://127.0.0.1:$PORT/v1/events"
pg_ctl_stop
outage_t0=$SECONDS
wait_for 10 readyz_is 503; ok $? "readyz turns 503 once PostgreSQL is gone"
$PY - "$D/readyz.json" <<'EOF' 2>&1 | diag
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert e["code"] == "not_ready", e
assert e["details"]["waiting_for"] == ["store"], e
assert e["details"]["store"]["backend"] == "postgres", e
assert e["details"]["store"]["error"], e
EOF
ok "${PIPESTATUS[0]}" "readyz's JSON body names the store and its error"
wait_for 10 at_least 503 $((before_503 + 5)); ok $? "the load generator's ingest gets 503s while it is down"

curl -s -D "$D/h" -o "$D/b" -H "$H" -H 'content-type: application/json' \
    -d '{"type":"load.x","id":"probe-down"}' "http://127.0.0.1:$PORT/v1/events"
grep -q '^HTTP/1.1 503' "$D/h" && grep -qi '^retry-after: [0-9][0-9]*' "$D/h" &&
    grep -q '"code":"store_unavailable"' "$D/b"
rc=$?
ok $rc "POST /v1/events: 503, Retry-After and store_unavailable"
[ $rc -eq 0 ] || cat "$D/h" "$D/b" | diag
s=$(curl -s -o "$D/b" -w '%{http_code}' -H "$H" "http://127.0.0.1:$PORT/v1/events?limit=5")
[ "$s" = 503 ] && grep -q '"code":"store_unavailable"' "$D/b"; ok $? "GET /v1/events: 503 store_unavailable, not 500 (got $s)"
s=$(curl -s -o "$D/b" -w '%{http_code}' -H "$H" "http://127.0.0.1:$PORT/v1/decisions")
[ "$s" = 503 ]; ok $? "GET /v1/decisions: 503 (got $s)"
s=$(curl -s -o "$D/b" -w '%{http_code}' -H "$H" -X POST "http://127.0.0.1:$PORT/v1/dead-letters/1/requeue")
[ "$s" = 503 ]; ok $? "POST /v1/dead-letters/1/requeue: 503, not 409 (got $s)"
curl -s -H "$H" "http://127.0.0.1:$PORT/metrics" | grep -qx 'steward_store_up 0'
ok $? "steward_store_up is 0 while it is down"
alive; ok $? "the daemon is running while PostgreSQL is down"

# ---- PostgreSQL is back ----
# (the slow handler's write must fall inside the outage: keep it down at least 3 s)
while [ $((SECONDS - outage_t0)) -lt 4 ]; do sleep 0.1; done
pg_ctl_start || { echo "# PostgreSQL did not start again"; }
wait_for 20 readyz_is 200; ok $? "readyz is 200 again without a restart"
after=$(progress acked)
wait_for 20 at_least acked $((after + 300)); ok $? "ingest resumes: events acknowledged after the restart"
curl -s -H "$H" "http://127.0.0.1:$PORT/metrics" | grep -qx 'steward_store_up 1'
ok $? "steward_store_up is 1 again"
touch "$D/stop"
wait "$LOADPID"; ok $? "the load generator finished"
LOADPID=

$PY - "$D/load.json" <<'EOF' 2>&1 | diag
import json, sys
d = json.load(open(sys.argv[1]))
print("statuses", d["statuses"], "acknowledged", len(d["acked"]), "retry-after", d["retry_after"],
      "duplicates on retry", d["duplicates_on_retry"], "reconnects", d["transport_errors"])
EOF
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if set(d["statuses"]) <= {"202","503"} and d["bad_503"] == [] else 1)' "$D/load.json"
ok $? "ingest answered only 202 or 503; every 503 had Retry-After and store_unavailable"

# Every acknowledged id is in the log exactly once (and nothing but sent ids is).
PSQL "SELECT id, count(*) FROM events GROUP BY id" > "$D/log_ids"
$PY - "$D/load.json" "$D/log_ids" <<'EOF' 2>&1 | diag
import json, sys
acked = set(json.load(open(sys.argv[1]))["acked"])
counts = {}
for line in open(sys.argv[2]):
    i, c = line.rstrip("\n").rsplit("|", 1)
    counts[i] = int(c)
missing = [i for i in acked if i not in counts]
doubled = [i for i, c in counts.items() if c != 1]
print("acknowledged", len(acked), "in the log", len(counts))
assert acked, "nothing was acknowledged"
assert not missing, ("acknowledged but not in the log", len(missing), sorted(missing)[:5])
assert not doubled, ("more than once", doubled[:5])
EOF
ok "${PIPESTATUS[0]}" "every acknowledged id is in the events table exactly once"

# Handling resumes: events posted after the restart are handled (the policy writes kv).
curl -s -o "$D/b" -H "$H" -H 'content-type: application/json' \
    -d '[{"type":"after.check","id":"after-1"},{"type":"after.check","id":"after-2"}]' \
    "http://127.0.0.1:$PORT/v1/events"
handled_after() { [ "$(PSQL "SELECT count(*) FROM kv WHERE key IN ('after-1','after-2')")" = 2 ]; }
wait_for 20 handled_after; ok $? "events posted after the restart are handled (kv written)"

# Handlers waited out the outage instead of spending their retries: every acknowledged event
# was handled, none became a dead letter (retry_attempts is 3, the outage longer than that).
nacked=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["acked"]))' "$D/load.json")
all_handled() { [ "$(PSQL "SELECT count(*) FROM kv WHERE ns = 'policy:test.mark' AND key <> 'after-1' AND key <> 'after-2'")" -ge "$nacked" ]; }
wait_for 30 all_handled; ok $? "every acknowledged event was handled ($nacked)"
slow_handled() { [ "$(PSQL "SELECT count(*) FROM kv WHERE ns = 'policy:test.slow' AND key = 'slow-1'")" = 1 ]; }
wait_for 20 slow_handled; ok $? "a handler whose store write failed during the outage ran again after it"
[ "$(PSQL "SELECT count(*) FROM dead_letters")" = 0 ]; ok $? "no dead letters: handlers waited for the store instead of spending their retries"

# The instance handles its dispatch buckets again: the gauge counts the buckets it holds, not
# the leases in the database (which a renewal could keep alive for buckets it had dropped).
buckets_held() { curl -s -H "$H" "http://127.0.0.1:$PORT/metrics" | grep -qx 'steward_cluster_buckets 64'; }
wait_for 10 buckets_held; ok $? "the instance holds all 64 dispatch buckets again after the outage"

# ---- the daemon stalls (SIGSTOP) longer than its lease margin, PostgreSQL up ----
# Its local lease deadlines pass while the database's leases may still be running: it must
# take its buckets back, with a rescan, and handle what was posted meanwhile.
kill -STOP "$DPID"
sleep 4.5 # the stall itself, not a wait for an event
curl -s -o /dev/null -H "$H" -H 'content-type: application/json' \
    -d '[{"type":"after.stall","id":"stall-1"},{"type":"after.stall","id":"stall-2"}]' \
    "http://127.0.0.1:$PORT/v1/events" &
CURLPID=$!
kill -CONT "$DPID"
wait "$CURLPID"
handled_stall() { [ "$(PSQL "SELECT count(*) FROM kv WHERE key IN ('stall-1','stall-2')")" = 2 ]; }
wait_for 20 handled_stall; ok $? "after a stall longer than the lease margin, new events are handled"
wait_for 10 buckets_held; ok $? "the instance holds all 64 dispatch buckets again after the stall"

alive; ok $? "the daemon never exited"
daemon_stop TERM
[ "$DSTATUS" -eq 0 ]; ok $? "SIGTERM stops it cleanly (exit $DSTATUS)"
if grep -q "Sanitizer\|runtime error" "$D/log"; then
    ok 1 "no sanitizer reports"; grep -A20 "Sanitizer\|runtime error" "$D/log" | head -40 | diag
else
    ok 0 "no sanitizer reports"
fi
[ -n "${STEWARD_KEEP_LOG:-}" ] && cp "$D/log" "$STEWARD_KEEP_LOG"
[ "$fail" -eq 0 ] || { echo "# daemon log (tail):"; grep -v 'due timers\|due schedules' "$D/log" | tail -30 | diag; }
echo "1..$n"
exit $fail
