#!/bin/bash
# Bad input: malformed JSON, wrong types, huge numbers, deep nesting, invalid UTF-8,
# oversized bodies, garbage bytes on the socket — each gets its documented answer and the
# daemon keeps serving (checked in tests/support/bad_input.py), then stops cleanly.
set -u
. "$(dirname "$0")/../support/daemon.sh"
daemon_config 'limits = { max_body_bytes = 65536, max_header_bytes = 16384 },'
daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }
/usr/bin/python3 "$here/tests/support/bad_input.py" "$PORT" "$TOKEN" 0 > "$D/tap"
rc=$?
cat "$D/tap"
n=$(grep -cE '^(not )?ok' "$D/tap")
alive=0; kill -0 "$DPID" 2>/dev/null && alive=1
daemon_stop TERM
n=$((n + 1))
if [ $alive -eq 1 ] && [ "$DSTATUS" -eq 0 ]; then echo "ok $n - the daemon survived every input and stops cleanly"
else echo "not ok $n - the daemon survived every input and stops cleanly (alive=$alive exit=$DSTATUS)"; sed 's/^/# /' "$D/log" | tail; rc=1; fi
n=$((n + 1))
if grep -q "Sanitizer\|runtime error" "$D/log"; then echo "not ok $n - no sanitizer reports"; rc=1; else echo "ok $n - no sanitizer reports"; fi
echo "1..$n"
exit $rc
