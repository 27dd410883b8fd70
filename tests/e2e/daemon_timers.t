#!/bin/bash
# Durable timers: a handler arms time.after(d, event); the daemon is killed with SIGKILL
# before the timer is due and restarted after; the event fires once, and its policy runs.
set -u
. "$(dirname "$0")/../support/daemon.sh"
export RECORD_FILE="$D/record.txt"
cat > "$D/policies/arm.lua" <<'POL'
local time = require "steward.time"
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" }, name = "test.arm", on = { "test.arm" }, handle = function(ev)
  local id = assert(time.after("400ms", { type = "test.fired", data = { from = ev.id } }, { key = "arm:" .. ev.id }))
  assert(fs.write(os.getenv("RECORD_FILE"), "armed " .. id .. "\n", { append = true }))
end }
POL
cat > "$D/policies/fired.lua" <<'POL'
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" }, name = "test.fired", on = { "test.fired" }, handle = function(ev)
  assert(fs.write(os.getenv("RECORD_FILE"), "fired " .. ev.id .. " " .. ev.data.from .. "\n", { append = true }))
end }
POL
daemon_config ''
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; sed 's/^/# /' "$RECORD_FILE" 2>/dev/null; fi; }
wait_for() { for _ in $(seq 400); do grep -q "$1" "$RECORD_FILE" 2>/dev/null && return 0; sleep 0.025; done; return 1; }

daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }
curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
     -d '{"type":"test.arm","id":"arm-1"}' "http://127.0.0.1:$PORT/v1/events" >/dev/null
check 'wait_for "^armed "' "the handler armed a durable timer"
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
check '! grep -q "^fired" "$RECORD_FILE"' "the timer has not fired before the crash"
sleep 0.5   # the timer falls due while the daemon is down
daemon_start || { echo "not ok - restart"; exit 1; }
check 'wait_for "^fired timer:"' "after a restart the overdue timer fires"
daemon_stop TERM
daemon_start || { echo "not ok - second restart"; exit 1; }
sleep 0.6   # a full timer-poll period: a second firing would show now
daemon_stop TERM
check '[ "$(grep -c "^fired" "$RECORD_FILE")" -eq 1 ]' "it fired exactly once across restarts"
check 'grep -q "^fired timer:.* arm-1$" "$RECORD_FILE"' "the fired event carries the armed data"
echo "1..$n"
