# Shell helpers for end-to-end tests of `steward run`: a throwaway directory with its own
# config, store and policies; start on port 0 and read the port from the start-up log.
# Source it, then: daemon_config; daemon_start; ... ; daemon_stop. Cleanup is trapped. It also
# gives the tests' TAP line (ok) and bounded poll (wait_for).
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
D=$(mktemp -d)
DPID=
PORT=
mkdir -p "$D/policies"
RPID=
daemon_cleanup() {
    [ -n "${KEEP_LOG:-}" ] && cp "$D/log" "$KEEP_LOG" 2>/dev/null
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
    rm -rf "$D"
}
trap daemon_cleanup EXIT

# ok STATUS NAME: one TAP line, numbered by n; a failure also sets fail=1. A test that needs
# another shape defines its own after sourcing this file.
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

# wait_for SECONDS CMD...: runs CMD every 50 ms until it succeeds; 1 on timeout (a bounded
# poll for a condition, not a sleep).
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# jx EXPR [ARG...]: query the JSON on stdin with a Python expression (tests/support/jx.py);
# the tests' JSON query, with what a fresh Debian 12 machine has (python3).
jx() { /usr/bin/python3 "$here/tests/support/jx.py" "$@"; }

# receiver_start: tests/support/notify_receiver.py (vendor endpoints and SMTP) on free ports;
# sets RPID (stopped by daemon_cleanup), HPORT, SPORT and R (its base URL).
receiver_start() {
    mkfifo "$D/receiver.port"
    /usr/bin/python3 "$here/tests/support/notify_receiver.py" >"$D/receiver.port" 2>"$D/receiver.err" &
    RPID=$!
    read -r HPORT SPORT <"$D/receiver.port"
    R="http://127.0.0.1:$HPORT"
}

# daemon_config [extra Lua table fields]: writes $D/steward.lua
daemon_config() {
    cat > "$D/steward.lua" <<CFG
return {
  listen = "127.0.0.1:0", store = "${STEWARD_TEST_STORE:-sqlite:$D/steward.db}", policies = "$D/policies",
  var_dir = "$D/var", admin_socket = "$D/var/steward.sock",
  -- What the tests' policies declare: files in the test's directory, HTTP to local peers, the
  -- alerting state for the shipped alerting policies, the events of the shipped deploy
  -- policies, as steward.lua grants them (a test's own grants replace these).
  grants = { ["*"] = { ["fs.read"] = { "$D" }, ["fs.write"] = { "$D" }, http = { "127.0.0.1", "localhost" } },
             ["alerting.*"] = { alerting = true }, ["deploy.alerts"] = { alerting = true },
             ["scaling.quota_alerts"] = { alerting = true },
             ["success.*"] = { success = true, alerting = true, notify = { "email", "log" } },
             ["billing.usage"] = { billing = true }, ["billing.subscriptions"] = { billing = true }, -- docs/billing/usage.md
             ["billing.invoicing"] = { billing = true }, -- docs/billing/invoices.md
             ["tenants.alerts"] = { alerting = true },
             ["deploy.freeze"] = { ["events.emit"] = { "deploy.admitted", "deploy.refused" } },
             ["deploy.promote"] = { ["events.emit"] = { "deploy.requested", "deploy.promote.*" } },
             ["scaling.capacity"] = { alerting = true },
             ["scaling.archive"] = { archive = true } },
  $1
}
CFG
}

# daemon_start: starts the daemon, waits for its "listening" line, sets PORT and TOKEN.
# One worker process (tests/run exports STEWARD_WORKERS=1); a test that sets STEWARD_WORKERS=N
# gets N workers under a supervisor (DPID), and daemon_start waits until all N serve.
daemon_start() {
    : > "$D/log.new"
    "$BIN" run -c "$D/steward.lua" 2>>"$D/log.new" &
    DPID=$!
    local want=${STEWARD_WORKERS:-1}
    for _ in $(seq 400); do
        PORT=$(sed -n 's/.*msg=listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$D/log.new" | tail -1)
        if [ "$want" -gt 1 ] && [ -n "$PORT" ] &&
            [ "$(grep -c 'msg="worker serving"' "$D/log.new")" -lt "$want" ]; then PORT=; fi
        [ -n "$PORT" ] && break
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.025
    done
    cat "$D/log.new" >> "$D/log"
    if [ -z "$PORT" ]; then
        echo "# the daemon did not start:"; sed 's/^/# /' "$D/log.new"
        return 1
    fi
    TOKEN=$(cat "$D/var/admin.token")
    export PORT TOKEN
}

# daemon_stop_within SECONDS [signal]: like daemon_stop, but a daemon still running after
# SECONDS (a generous bound: waiting forever is the bug) is killed with SIGKILL; returns 1 then.
daemon_stop_within() {
    kill "-${2:-TERM}" "$DPID" 2>/dev/null
    local i
    for i in $(seq $(($1 * 20))); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
    local late=0
    if kill -0 "$DPID" 2>/dev/null; then late=1; kill -9 "$DPID" 2>/dev/null; fi
    wait "$DPID"
    DSTATUS=$?
    DPID=
    cat "$D/log.new" >> "$D/log" 2>/dev/null
    return $late
}

# daemon_stop [signal]: stops it and waits; sets DSTATUS.
daemon_stop() {
    kill "-${1:-TERM}" "$DPID" 2>/dev/null
    wait "$DPID"
    DSTATUS=$?
    DPID=
    cat "$D/log.new" >> "$D/log" 2>/dev/null
}
