#!/bin/bash
# gh issue 13 §2: the store's reads have threads of their own. Four fs.read of a FIFO (an fs
# call that never returns, like a hung NFS path) used to take all of libuv's thread pool and
# freeze every store read: GET /v1/events and the REPL's status() hung while /readyz said 200.
# Here they answer while the four reads are still blocked; then the FIFO is opened for
# writing so the reads end, and the daemon stops cleanly.
set -u
. "$(dirname "$0")/../support/daemon.sh"
echo "1..7"
n=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
daemon_config ''
daemon_start || exit 1
S=$D/var/steward.sock
mkfifo "$D/fifo"
ev() { timeout 30 "$BIN" eval --socket "$S" "$@"; }

# Four tasks inside the daemon block in fs.read (open() of a FIFO without a writer). The
# table they count in is reachable from later eval sessions through package.loaded.
ev "local task, fs = require 'steward.task', require 'steward.fs'
local st = { started = 0, done = 0 }
package.loaded['test.fifo'] = st
for i = 1, 4 do
  task.spawn(function() st.started = st.started + 1; fs.read('$D/fifo'); st.done = st.done + 1 end)
end
return st.started" > "$D/out" 2> "$D/err"
ok $? "four fs.read of a FIFO are started in the daemon ($(cat "$D/out" "$D/err" | tr '\n' ' '))"

code=$(curl -s -m 20 -o "$D/events.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/v1/events?limit=5")
ok "$([ "$code" = 200 ]; echo $?)" "GET /v1/events answers while the fs reads are blocked (got '$code')"

ev 'status()' > "$D/out" 2> "$D/err"
ok "$([ $? -eq 0 ] && grep -q store "$D/out"; echo $?)" "the REPL's status() answers while the fs reads are blocked"

code=$(curl -s -m 20 -o "$D/readyz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")
ok "$([ "$code" = 200 ]; echo $?)" "/readyz is 200: the store is not stuck (got '$code': $(head -c 200 "$D/readyz.json"))"

ev "return package.loaded['test.fifo'].done" > "$D/out" 2>&1
ok "$([ "$(cat "$D/out")" = 0 ]; echo $?)" "the four fs.read were still blocked meanwhile (done: $(cat "$D/out"))"

# Unblock: open the FIFO for writing (without blocking if no reader is left) and close it,
# until every read has ended with EOF.
for _ in $(seq 200); do
    /usr/bin/python3 -c 'import os,sys
try: os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
except OSError: pass' "$D/fifo"
    [ "$(ev "return package.loaded['test.fifo'].done" 2>/dev/null)" = 4 ] && break
    sleep 0.05
done
ev "return package.loaded['test.fifo'].done" > "$D/out" 2>&1
ok "$([ "$(cat "$D/out")" = 4 ]; echo $?)" "the fs reads end once the FIFO has a writer"

daemon_stop
ok "$DSTATUS" "the daemon stops cleanly (status $DSTATUS)"
