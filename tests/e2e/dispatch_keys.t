#!/bin/bash
# gh-13.1: with the default key (the tenant) and more keys than dispatch runners, every
# acknowledged event is handled — before the fix 1,000 events over 1,000 tenants left 232
# queued for ever. Then the same under kill -9: events acknowledged before the kill are all
# handled after the restart (at least once; the handler records each id it sees).
set -u
. "$(dirname "$0")/../support/daemon.sh"
export RECORD_FILE="$D/handled.txt"
cat > "$D/policies/record.lua" <<'POL'
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" }, name = "keys.record", on = { "t.*" },
  handle = function(ev) assert(fs.write(os.getenv("RECORD_FILE"), ev.id .. "\n", { append = true })) end }
POL
daemon_config ''
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..5"

# post PREFIX N: N events, one tenant each, in one request; prints the HTTP status.
post() {
    /usr/bin/python3 - "$1" "$2" "$PORT" "$TOKEN" <<'PY'
import json, sys, urllib.request
prefix, n, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = json.dumps([{"id": f"{prefix}{i}", "type": "t.x", "tenant": f"{prefix}t{i}"} for i in range(n)]).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=body,
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=60).status)
PY
}

# wait_handled PREFIX N: until N distinct ids with PREFIX are recorded (or 60 s); prints the count.
wait_handled() {
    local got=0
    for _ in $(seq 600); do
        got=$(grep -c "^$1[0-9]*\$" <(sort -u "$RECORD_FILE" 2>/dev/null) || true)
        [ "${got:-0}" -ge "$2" ] && break
        sleep 0.1
    done
    echo "${got:-0}"
}

st=$(post a 1000)
[ "$st" = 202 ] && echo "ok 1 - 1,000 events over 1,000 tenants acknowledged" || echo "not ok 1 - acknowledged (status $st)"
got=$(wait_handled a 1000)
[ "$got" -eq 1000 ] && echo "ok 2 - every one of them handled" || echo "not ok 2 - every one of them handled (got $got of 1000)"
depth=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" | sed -n 's/^steward_dispatch_queue_depth \(.*\)/\1/p')
[ "$depth" = 0 ] && echo "ok 3 - the dispatch queue is empty" || echo "not ok 3 - the dispatch queue is empty (depth $depth)"

# Under kill -9: 3,000 events over 3,000 tenants, killed once the handlers are under way.
st=$(post b 3000)
for _ in $(seq 600); do
    [ "$(grep -c '^b' "$RECORD_FILE" || true)" -gt 50 ] && break
    sleep 0.01
done
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
before=$(grep -c '^b' "$RECORD_FILE" || true)
echo "# $before of 3000 handled before the kill"
daemon_start || { echo "not ok 4 - restarted"; exit 1; }
got=$(wait_handled b 3000)
[ "$st" = 202 ] && [ "$got" -eq 3000 ] && echo "ok 4 - after kill -9 and a restart every acknowledged event is handled" \
    || echo "not ok 4 - after kill -9 every acknowledged event is handled (status $st, got $got of 3000)"
depth=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" | sed -n 's/^steward_dispatch_queue_depth \(.*\)/\1/p')
[ "$depth" = 0 ] && echo "ok 5 - the dispatch queue is empty after recovery" || echo "not ok 5 - the dispatch queue is empty after recovery (depth $depth)"
daemon_stop
