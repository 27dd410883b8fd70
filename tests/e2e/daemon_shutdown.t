#!/bin/bash
# SIGTERM (issue 13 §5): an idle daemon with the shipped policies exits 0 at once, logging
# nothing after `stopped`; a handler waiting in its retry back-off, or in a notify channel's
# back-off after a refused connection, does not hold the shutdown up to the back-off or to
# shutdown_timeout: the daemon exits, and the unfinished event is handled after the restart.
# The bound of 5 s is generous (back-offs here are 30 s and more, shutdown_timeout 10 s):
# waiting for them is the bug.
set -u
. "$(dirname "$0")/../support/daemon.sh"
echo "1..12"

# stopped_cleanly N NAME: exit 0 and `stopped` is the last line of this run's log.
stopped_cleanly() {
    local last; last=$(tail -n 1 "$D/log.new")
    case "$DSTATUS:$last" in
      0:*"msg=stopped"*) echo "ok $1 - $2" ;;
      *) echo "not ok $1 - $2 (status $DSTATUS)"; sed -n '/msg=stopping/,$p' "$D/log.new" | cut -c1-300 | sed 's/^/# /' ;;
    esac
}
wait_log() { for _ in $(seq 200); do grep -q "$1" "$D/log.new" && return 0; sleep 0.05; done; return 1; }

# ---- idle, with the shipped policies ----
rm -rf "$D/policies"; cp -r "$here/policies" "$D/policies"
daemon_config ""
daemon_start || { echo "not ok 1 - the daemon starts"; exit 1; }
if daemon_stop_within 5 TERM; then echo "ok 1 - SIGTERM: an idle daemon exits"
else echo "not ok 1 - SIGTERM: an idle daemon exits (killed after 5 s)"; fi
stopped_cleanly 2 "... with status 0 and nothing logged after stopped"

# ---- a handler in its retry back-off ----
rm -rf "$D/policies"; mkdir -p "$D/policies"
export FAIL_FILE="$D/fail" HANDLED_FILE="$D/handled" REFUSED_URL
REFUSED_URL="http://127.0.0.1:$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')/hook"
cat > "$D/policies/flaky.lua" <<'POL'
-- Fails while FAIL_FILE exists; then records the event's id in HANDLED_FILE.
local fs = require "steward.fs"
return {
  name = "test.flaky", on = { "flaky.*" }, capabilities = { "fs.read", "fs.write" },
  handle = function(ev)
    if fs.stat(os.getenv("FAIL_FILE")) then error("flaky: failing on purpose") end
    assert(fs.write(os.getenv("HANDLED_FILE"), ev.id .. "\n", { append = true }))
  end,
}
POL
cat > "$D/policies/pager.lua" <<'POL'
-- Sends to a port that refuses connections: the channel retries after a long back-off.
local notify = require "steward.notify"
local ch
return {
  name = "test.pager", on = { "page.*" }, capabilities = { notify = { "webhook" } },
  handle = function(ev)
    ch = ch or notify.channel("webhook", { name = "refused", url = os.getenv("REFUSED_URL"),
      backoff = { base = "1m", jitter = false } })
    assert(ch:send({ alerts = { { labels = { alertname = "Page" } } } }, { key = ev.id }))
  end,
}
POL
touch "$FAIL_FILE"; : > "$HANDLED_FILE"
daemon_config 'limits = { retry_base = "1m", retry_max = "2m" },
  grants = { ["*"] = { ["fs.read"] = { "'"$D"'" }, ["fs.write"] = { "'"$D"'" } }, ["test.pager"] = { notify = { "webhook" } } },'
daemon_start || { echo "not ok 3 - the daemon starts"; exit 1; }
post() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/v1/events"; }
code=$(post '[{"id":"flaky-1","type":"flaky.test","data":{}}]')
if [ "$code" = 202 ] && wait_log 'msg="handler failed, will retry".*policy=test.flaky'; then
    echo "ok 3 - the failing handler waits in its retry back-off"
else echo "not ok 3 - the failing handler waits in its retry back-off ($code)"; fi
if daemon_stop_within 5 TERM; then echo "ok 4 - SIGTERM does not wait for the back-off"
else echo "not ok 4 - SIGTERM does not wait for the back-off (killed after 5 s)"; fi
stopped_cleanly 5 "... exit 0, nothing logged after stopped"
grep -q 'still running at the shutdown deadline' "$D/log.new" \
    && echo "not ok 6 - no handler is left running at the deadline" || echo "ok 6 - no handler is left running at the deadline"

rm -f "$FAIL_FILE"
daemon_start || { echo "not ok 7 - the daemon restarts"; exit 1; }
for _ in $(seq 200); do grep -q flaky-1 "$HANDLED_FILE" && break; sleep 0.05; done
[ "$(cat "$HANDLED_FILE")" = flaky-1 ] && echo "ok 7 - after the restart the event is handled" \
    || echo "not ok 7 - after the restart the event is handled (got '$(cat "$HANDLED_FILE")')"
dl=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/dead-letters" | jx 'len(d["dead_letters"])')
[ "$dl" = 0 ] && echo "ok 8 - ... and is no dead letter" || echo "not ok 8 - ... and is no dead letter ($dl)"

# ---- a notify channel's back-off inside a handler ----
code=$(post '[{"id":"page-1","type":"page.test","data":{}}]')
hist=
for _ in $(seq 200); do
    hist=$("$BIN" eval --socket "$D/var/steward.sock" 'local h = require("steward.notify").history{channel = "refused"}[1]; return h and (h.status .. " " .. h.attempts) or "none"' 2>&1)
    [ "$hist" = '"sending 1"' ] && break; sleep 0.05
done
[ "$code" = 202 ] && [ "$hist" = '"sending 1"' ] && echo "ok 9 - the send waits in its back-off after a refused connection" \
    || echo "not ok 9 - the send waits in its back-off after a refused connection ($code, $hist)"
if daemon_stop_within 5 TERM; then echo "ok 10 - SIGTERM does not wait for the notify back-off"
else echo "not ok 10 - SIGTERM does not wait for the notify back-off (killed after 5 s)"; fi
stopped_cleanly 11 "... exit 0, nothing logged after stopped"
grep -q 'msg="notify: failed".*Couldn.t connect.*the daemon is stopping' "$D/log.new" \
    && echo "ok 12 - the cut-short send logs the real error" \
    || { echo "not ok 12 - the cut-short send logs the real error"; grep notify "$D/log.new" | cut -c1-300 | sed 's/^/# /'; }
