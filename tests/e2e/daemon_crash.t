#!/bin/bash
# Crash safety: a client posts batches while the daemon is killed with SIGKILL at random
# moments and restarted, CRASH_CYCLES times (default 20). Afterwards every acknowledged id is
# in the log exactly once and every acknowledged event's handler ran at least once.
# Replay a failure with CRASH_SEED=<the seed printed below>.
set -u
. "$(dirname "$0")/../support/daemon.sh"
seed=${CRASH_SEED:-$(( $(date +%s) % 100000 ))}
cycles=${CRASH_CYCLES:-20}
echo "# seed $seed, $cycles cycles (replay: CRASH_SEED=$seed)"
RANDOM=$seed
export RECORD_FILE="$D/handled.txt"
cat > "$D/policies/record.lua" <<'POL'
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" }, name = "crash.record", on = { "crash.*" }, key = function(ev) return ev.id:match("^[^-]*") end,
  handle = function(ev) assert(fs.write(os.getenv("RECORD_FILE"), ev.id .. "\n", { append = true })) end }
POL
daemon_config ''
n=0
fail=0
for c in $(seq "$cycles"); do
    if ! daemon_start; then echo "not ok $((n + 1)) - the daemon restarts (cycle $c)"; exit 1; fi
    /usr/bin/python3 "$here/tests/support/crash_client.py" "$PORT" "$TOKEN" "c$c" "$D/acked.txt" &
    client=$!
    # Kill after 50..650 ms of load.
    sleep "0.$(printf '%03d' $(( 50 + RANDOM % 600 )))"
    kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
    wait "$client"
    [ $? -le 1 ] || fail=1
done
n=$((n + 1))
if [ $fail -eq 0 ]; then echo "ok $n - the client saw only 202 or 503 answers"; else echo "not ok $n - the client saw unexpected answers"; fi

# One last start: recovery hands every unfinished event to the policy; wait until the
# acknowledged ones are all recorded (or 60 s), then stop.
daemon_start || { echo "not ok - final start"; exit 1; }
acked=$(sort -u "$D/acked.txt" | wc -l)
for _ in $(seq 1200); do
    done_n=$(sort -u "$RECORD_FILE" 2>/dev/null | grep -cxFf <(sort -u "$D/acked.txt") || true)
    [ "${done_n:-0}" -ge "$acked" ] && break
    sleep 0.05
done
daemon_stop TERM
n=$((n + 1))
if [ "$DSTATUS" -eq 0 ]; then echo "ok $n - the final daemon stops cleanly"; else echo "not ok $n - the final daemon stops cleanly ($DSTATUS)"; fi
STEWARD_TAP_OFFSET=$n "$BIN" script "$here/tests/support/crash_check.lua" "sqlite:$D/steward.db" "$D/acked.txt" "$RECORD_FILE" > "$D/check"
rc=$?
cat "$D/check"
m=$(grep -cE '^(not )?ok' "$D/check")
echo "1..$((n + m))"
[ $rc -eq 0 ] && [ $fail -eq 0 ]
