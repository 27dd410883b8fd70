#!/bin/bash
# gh issue 13 §2: /readyz sees a stuck store. Another process holds SQLite's WAL locks, so
# every read and write of the daemon waits (its busy timeout, then retries) without failing
# fast; /readyz used to answer 200 all along. Now it runs a bounded store read
# (limits.ready_timeout) and answers 503 naming the store; once the locks are released it is
# 200 again, without a restart.
set -u
. "$(dirname "$0")/../support/daemon.sh"
LPID=
cleanup_all() {
    exec 3>&- 2>/dev/null
    [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..6"
n=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
# wait_for SECONDS CMD...: runs CMD every 50 ms until it succeeds; 1 on timeout.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
readyz_is() { [ "$(curl -s -m 20 -o "$D/readyz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = "$1" ]; }

daemon_config 'limits = { ready_timeout = "1s" },'
daemon_start || exit 1
readyz_is 200; ok $? "readyz is 200 with the store answering"

mkfifo "$D/lock.in"
/usr/bin/python3 "$here/tests/support/sqlite_hold_locks.py" "$D/steward.db" < "$D/lock.in" > "$D/lock.out" 2>&1 &
LPID=$!
exec 3> "$D/lock.in"
wait_for 20 grep -q locked "$D/lock.out"; ok $? "another process holds the database's locks ($(cat "$D/lock.out"))"

readyz_is 503; ok $? "readyz is 503 while the store is stuck"
/usr/bin/python3 - "$D/readyz.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
e = b["error"]
assert e["code"] == "not_ready", e
assert e["details"]["waiting_for"] == ["store"], e
assert e["details"]["store"]["backend"] == "sqlite", e
assert "store read" in e["details"]["store"]["error"] and "ready_timeout" in e["message"], e
PY
ok $? "the 503 names the store and why: $(head -c 300 "$D/readyz.json")"

exec 3>&-
wait "$LPID"; LPID=
wait_for 30 readyz_is 200; ok $? "readyz is 200 again once the locks are released"

daemon_stop
ok "$DSTATUS" "the daemon stops cleanly (status $DSTATUS)"
