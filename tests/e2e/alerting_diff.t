#!/bin/bash
# Differential test of steward's notification engine against the real Alertmanager 0.25:
# one scripted stream (new alerts in several groups, re-sends, explicit resolution, alerts
# expiring by endsAt, silences created and expired, an inhibition rule with its source
# alerts firing and resolving, a `continue` route, group_by ['...'], send_resolved) goes to
# both; each notifies a webhook receiver of its own; per receiver and group key the
# notifications (status, firing and resolved alerts) must be the same sequence, each within
# ALERTING_DIFF_TOL seconds (default 1.5). The stream and the comparison are in
# tests/support/alerting_diff.py. Timers: group_wait 1s, group_interval 4s, repeat 10s.
# ALERTING_DIFF_SELF=1 runs the stream against two Alertmanagers instead (the harness's own
# check: the reference's outcome must not depend on scheduling). ALERTING_DIFF_VERBOSE=1
# prints the stream and the reference's notifications.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/alertmanager.sh"
DRV=
cleanup() {
    [ -n "$DRV" ] && kill "$DRV" 2>/dev/null
    am_stop_all
    daemon_cleanup
}
trap cleanup EXIT

if [ ! -x "$AM_BIN" ]; then
    echo "1..0 # SKIP Alertmanager not installed (Debian package prometheus-alertmanager)"
    exit 0
fi
SELF=${ALERTING_DIFF_SELF:-0}
if [ "$SELF" != 1 ] && [ ! -f "$here/policies/alerting/router.lua" ]; then
    echo "1..0 # SKIP steward's notification engine (policies/alerting/router.lua) is not in the tree"
    exit 0
fi

W=$D/diff
mkdir -p "$W"
/usr/bin/python3 "$here/tests/support/alerting_diff.py" "$W" 3 &
DRV=$!
for _ in $(seq 200); do
    [ -f "$W/ready" ] && break
    kill -0 "$DRV" 2>/dev/null || break
    sleep 0.05
done
fail_setup() { echo "not ok $1 - $2"; echo "1..$1"; exit 1; }
[ -f "$W/ready" ] || fail_setup 1 "the driver writes the configurations"

am_start "$W/alertmanager.yml" ref || fail_setup 1 "Alertmanager starts"
echo "ok 1 - Alertmanager 0.25 starts ($(am_url ref))"

if [ "$SELF" = 1 ]; then
    am_start "$W/alertmanager_test.yml" test || fail_setup 2 "the second Alertmanager starts"
    TEST_URL=$(am_url test)
    TEST_TOKEN=""
    echo "ok 2 - a second Alertmanager starts (self-check run)"
else
    mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
    cp "$here/policies/alerting/router.lua" "$D/policies/alerting/router.lua"
    cp "$W/config.lua" "$D/policies/lib/alerting/config.lua"
    daemon_config 'log_level = "info",'
    daemon_start || fail_setup 2 "steward starts"
    TEST_URL="http://127.0.0.1:$PORT"
    TEST_TOKEN=$TOKEN
    echo "ok 2 - steward starts with policies/alerting/router.lua and the generated config"
fi
printf '{"ref": {"url": "%s"}, "test": {"url": "%s", "token": "%s"}}\n' "$(am_url ref)" "$TEST_URL" "$TEST_TOKEN" > "$W/go.tmp"
mv "$W/go.tmp" "$W/go"
wait "$DRV"
status=$?
DRV=
last=$(cat "$W/last" 2>/dev/null || echo 2)
if [ "$SELF" != 1 ]; then
    if [ "$status" != 0 ]; then
        echo "# steward's log (last 40 lines):"
        tail -40 "$D/log.new" | sed 's/^/#   /'
    fi
    daemon_stop
    last=$((last + 1))
    if [ "$DSTATUS" = 0 ]; then echo "ok $last - steward stops cleanly"; else
        echo "not ok $last - steward stops cleanly (exit $DSTATUS)"; tail -20 "$D/log.new" | sed 's/^/#   /'; status=1
    fi
fi
echo "1..$last"
exit "$status"
