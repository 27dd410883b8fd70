#!/bin/bash
# Bad input: malformed JSON, duplicate keys, wrong types, huge numbers and times, deep
# nesting, too many values, invalid UTF-8, oversized bodies and chunks, bodies with a bad
# token, the byte budget of bodies in flight, garbage bytes on the socket — each gets its
# documented answer and the daemon keeps serving (checked in tests/support/bad_input.py),
# then stops cleanly. Also: the daemon's files are private (0600 / 0700).
set -u
. "$(dirname "$0")/../support/daemon.sh"
daemon_config 'limits = { max_header_bytes = 16384, max_json_values = 2000, max_body_bytes_in_flight = 48 * 1024 * 1024 },'
cat > "$D/policies/badinput.lua" <<'POLICY'
-- decides and handles, so that the JSON routes that need a policy can be called
return {
  on = { "bad.input.*" },
  handle = function() end,
  decide = function(input) return { got = input.x } end,
}
POLICY
mkdir -p "$D/var" && chmod 755 "$D/var" # as an older version left it: made private at start
daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }
/usr/bin/python3 "$here/tests/support/bad_input.py" "$PORT" "$TOKEN" 0 "$DPID" > "$D/tap"
rc=$?
cat "$D/tap"
n=$(grep -cE '^(not )?ok' "$D/tap")
# File modes: the store and its WAL files hold event payloads; var/ the admin token too.
modes=$(stat -c '%n %a' "$D/var" "$D/steward.db" "$D/steward.db-wal" "$D/steward.db-shm" 2>&1)
n=$((n + 1))
if [ "$(stat -c %a "$D/var" 2>/dev/null)" = 700 ] && [ "$(stat -c %a "$D/steward.db" "$D/steward.db-wal" "$D/steward.db-shm" 2>/dev/null | sort -u)" = 600 ]
then echo "ok $n - var/ (was 0755) is 0700; steward.db, -wal and -shm are 0600"
else echo "not ok $n - var/ (was 0755) is 0700; steward.db, -wal and -shm are 0600"; echo "$modes" | sed 's/^/#   /'; rc=1; fi
alive=0; kill -0 "$DPID" 2>/dev/null && alive=1
daemon_stop TERM
n=$((n + 1))
if [ $alive -eq 1 ] && [ "$DSTATUS" -eq 0 ]; then echo "ok $n - the daemon survived every input and stops cleanly"
else echo "not ok $n - the daemon survived every input and stops cleanly (alive=$alive exit=$DSTATUS)"; sed 's/^/# /' "$D/log" | tail; rc=1; fi
n=$((n + 1))
if grep -q "Sanitizer\|runtime error" "$D/log"; then echo "not ok $n - no sanitizer reports"; rc=1; else echo "ok $n - no sanitizer reports"; fi
echo "1..$n"
exit $rc
