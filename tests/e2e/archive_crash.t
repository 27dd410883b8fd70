#!/bin/bash
# Archival survives kill -9 at its two dangerous steps (STEWARD_ARCHIVE_CRASH, a test hook in
# steward.archive.run): after a segment is written but before its manifest (the segment is a
# leftover, the rows stay in the store), and after the manifest but before the rows are deleted
# (the archive and the store both hold them). After a restart events.replay yields every event
# once, in order; the next run finishes the interrupted one. On SQLite, then on PostgreSQL
# when it is installed.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
trap 'daemon_cleanup; [ -n "${PG_DIR:-}" ] && pg_stop' EXIT
S="$D/var/steward.sock"
ev() { "$BIN" eval --socket "$S" --json - > "$D/out" 2> "$D/err"; }
show() { echo "# out: $(head -c 800 "$D/out")"; echo "# err: $(head -c 800 "$D/err")"; }
echo "1..16"

REPLAY='local st = require("steward.runtime.store").default()
local n, prev, bad, ids = 0, 0, 0, {}
for e in require("steward.events").replay{ from_seq = 1 } do
  n = n + 1
  if e.seq ~= prev + 1 or ids[e.id] then bad = bad + 1 end
  ids[e.id] = true; prev = e.seq
end
return { replayed = n, bad = bad, stored = require("steward.runtime.events").count(st) }'

crash_case() { # crash_case STORE_NAME POINT
    local name=$1 point=$2
    rm -rf "$D/var" "$D/steward.db"*
    daemon_config
    STEWARD_ARCHIVE_CRASH=$point daemon_start || { ok 1 "$name/$point: the daemon starts"; return; }
    /usr/bin/python3 -c 'import json; print(json.dumps([{"id":"e%d"%i,"type":"usage.recorded","data":{"i":i}} for i in range(1,201)]))' > "$D/a.json"
    curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" --data-binary @"$D/a.json" "http://127.0.0.1:$PORT/v1/events"
    echo "return require('steward.archive').run{ before = require('steward.time').now() + 1, segment = 80 }" | ev
    wait "$DPID"; local status=$?; DPID=
    [ "$status" -eq 137 ]; ok $? "$name/$point: the daemon is killed (SIGKILL) at that step of the run" || show
    daemon_start || { ok 1 "$name/$point: the daemon restarts"; return; }
    echo "$REPLAY" | ev
    jx 'd[0]["replayed"] == 200 and d[0]["bad"] == 0 and d[0]["stored"] == 200' < "$D/out" >/dev/null
    ok $? "$name/$point: after the restart replay yields the 200 events once each, in order; the store lost none" || show
    echo "return require('steward.archive').run{ before = require('steward.time').now() + 1, segment = 80 }" | ev
    if [ "$point" = after_manifest ]; then
        jx 'd[0]["recovered"]["finished"] == 80 and d[0]["events"] == 120' < "$D/out" >/dev/null
        ok $? "$name/$point: the next run deletes the 80 rows the manifest covers, then archives the rest" || show
    else
        jx 'len(d[0]["recovered"]["removed"]) == 1 and d[0]["events"] == 200' < "$D/out" >/dev/null
        ok $? "$name/$point: the next run removes the leftover segment and archives all 200" || show
    fi
    echo "$REPLAY" | ev
    jx 'd[0]["replayed"] == 200 and d[0]["bad"] == 0 and d[0]["stored"] == 0' < "$D/out" >/dev/null
    ok $? "$name/$point: then the store is empty and replay still yields the 200 events once each" || show
    daemon_stop
}

crash_case sqlite after_segment
crash_case sqlite after_manifest
if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && id postgres >/dev/null 2>&1 && pg_start; then
    export STEWARD_TEST_STORE=$PG_URL
    crash_case postgres after_segment
    pg_as "$PG_BIN/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres steward && pg_as "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres steward
    crash_case postgres after_manifest
else
    for i in $(seq 8); do n=$((n + 1)); echo "ok $n # SKIP PostgreSQL not installed"; done
fi
exit $fail
