#!/bin/bash
# The decision log across kill -9 (docs/policies.md, "The decision log"): clients post
# decisions to an async policy and to a durable one (decision_log = "durable") while the
# daemon is killed with SIGKILL at random moments and restarted, DECIDE_CRASH_CYCLES times
# (default 6), then twice more with decision_log = "durable" in the configuration. Every
# answered durable decision must be in the log afterwards, and every async one answered more
# than decision_log_window (100 ms, the default) before its kill.
# Replay a failure with DECIDE_CRASH_SEED=<the seed printed below>.
set -u
. "$(dirname "$0")/../support/daemon.sh"
seed=${DECIDE_CRASH_SEED:-$(( $(date +%s) % 100000 ))}
cycles=${DECIDE_CRASH_CYCLES:-6}
echo "# seed $seed, $cycles cycles (replay: DECIDE_CRASH_SEED=$seed)"
RANDOM=$seed
cat > "$D/policies/async.lua" <<'POL'
return { name = "crash.async", decide = function(input) return { n = input.n, high = input.value > 3 } end }
POL
cat > "$D/policies/durable.lua" <<'POL'
return { name = "crash.durable", decision_log = "durable",
         decide = function(input) return { n = input.n, high = input.value > 3 } end }
POL
daemon_config 'decision_log_window = "100ms",'
n=0
fail=0
: > "$D/kills.txt"
for c in $(seq "$cycles"); do
    if ! daemon_start; then echo "not ok $((n + 1)) - the daemon restarts (cycle $c)"; exit 1; fi
    /usr/bin/python3 "$here/tests/support/decide_crash_client.py" "$PORT" "$TOKEN" "$D/answers.txt" \
        crash.async,crash.durable 4 "$c" &
    client=$!
    # Kill after 200..800 ms of load; the kill's time is taken just before the signal.
    sleep "0.$(printf '%03d' $(( 200 + RANDOM % 600 )))"
    echo "$c $(date +%s.%N)" >> "$D/kills.txt"
    kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
    wait "$client" || fail=1
done
# Two more cycles with decision_log = "durable" in the configuration: then the async policy's
# decisions are durable too (cycles named cfg*, checked as durable).
daemon_config 'decision_log = "durable", decision_log_window = "100ms",'
for c in cfg1 cfg2; do
    if ! daemon_start; then echo "not ok $((n + 1)) - the daemon restarts (cycle $c)"; exit 1; fi
    /usr/bin/python3 "$here/tests/support/decide_crash_client.py" "$PORT" "$TOKEN" "$D/answers.txt" \
        crash.async 4 "$c" &
    client=$!
    sleep "0.$(printf '%03d' $(( 200 + RANDOM % 600 )))"
    echo "$c $(date +%s.%N)" >> "$D/kills.txt"
    kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
    wait "$client" || fail=1
done
n=$((n + 1))
if [ $fail -eq 0 ]; then echo "ok $n - the clients saw only 200 or 503 answers"; else echo "not ok $n - the clients saw unexpected answers"; fi

# Recovery: the daemon starts on the killed store, and the API finds a durable decision.
daemon_start || { echo "not ok - final start"; exit 1; }
ref=$(awk '$2 == "crash.durable" { r = $3 } END { print r }' "$D/answers.txt")
got=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/decisions?id=$ref" |
    jx 'd["decisions"][0]["decision_id"] + " " + d["decisions"][0]["policy"]')
n=$((n + 1))
if [ "$got" = "$ref crash.durable" ]; then echo "ok $n - GET /v1/decisions?id= finds the last durable decision after the restart"
else echo "not ok $n - GET /v1/decisions?id=$ref: $got"; fail=1; fi
daemon_stop TERM
n=$((n + 1))
if [ "$DSTATUS" -eq 0 ]; then echo "ok $n - the final daemon stops cleanly"; else echo "not ok $n - the final daemon stops cleanly ($DSTATUS)"; fail=1; fi
/usr/bin/python3 "$here/tests/support/decide_crash_check.py" "$D/steward.db" "$D/answers.txt" "$D/kills.txt" 0.1 "$n" crash.durable
rc=$?
[ $rc -eq 0 ] && [ $fail -eq 0 ]
