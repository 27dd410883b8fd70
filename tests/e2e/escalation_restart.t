#!/bin/bash
# An escalation survives daemon crashes, on SQLite and on PostgreSQL: a policy of four 1 s
# steps, repeated once (eight notifications, each step to its own Slack webhook path on
# tests/support/notify_receiver.py). The daemon is killed with SIGKILL after the second and
# after the fifth notification was recorded as sent, and started again each time. Every step
# must arrive exactly once — none lost, none repeated — and the timeline must say so.
# The PostgreSQL half is skipped when PostgreSQL is not installed.
set -u
. "$(dirname "$0")/../support/daemon.sh"
PY=/usr/bin/python3
RPID=
PGUP=
cleanup_all() {
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
    daemon_cleanup
    [ -n "$PGUP" ] && pg_stop
}
trap cleanup_all EXIT

n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
H="Authorization: Bearer "
j() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# wait_for SECONDS CMD...: runs CMD every 50 ms until it succeeds; 1 on timeout.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

mkfifo "$D/rport"
"$PY" "$here/tests/support/notify_receiver.py" > "$D/rport" &
RPID=$!
read -r HP SP < "$D/rport"
R="http://127.0.0.1:$HP"
ctl() { curl -s "$R/_control/$1"; }

mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/incidents.lua" "$D/policies/alerting/incidents.lua"
cat > "$D/policies/lib/alerting/config.lua" <<CFG
local channels = {}
for i = 1, 4 do channels["s" .. i] = { kind = "slack", webhook_url = "$R/slack/T0/B0/s" .. i, retries = 2 } end
return {
  channels = channels,
  escalation_policies = {
    steps = { rules = { { delay = 0, targets = { { channel = "s1" } } },
                        { delay = "1s", targets = { { channel = "s2" } } },
                        { delay = "1s", targets = { { channel = "s3" } } },
                        { delay = "1s", targets = { { channel = "s4" } } } },
              ["repeat"] = 1, repeat_delay = "1s" },
  },
}
CFG
cat > "$D/policies/page.lua" <<'POL'
local incidents = require "steward.alerting.incidents"
return {
  name = "alerting.page", capabilities = { "alerting" },
  on = { "page.requested" },
  handle = function(ev)
    assert(incidents.trigger({ key = ev.data.key, service = "db", title = "restart test",
      escalation = "steps", source = "page" }))
  end,
}
POL

sent_at_least() {
    curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT/v1/notifications?status=sent&limit=100" > "$D/n.json" 2>/dev/null &&
      [ "$(j "$D/n.json" 'len(d["notifications"])' 2>/dev/null || echo 0)" -ge "$1" ]
}
no_timers() {
    "$BIN" eval --socket "$D/var/steward.sock" --json 'timers()' > "$D/timers.json" 2>/dev/null &&
      [ "$(j "$D/timers.json" 'len(d[0])' 2>/dev/null)" = 0 ]
}

# scenario NAME STORE_URL
scenario() {
    local name=$1
    curl -s -X POST -d '{}' "$R/_control/reset" > /dev/null
    daemon_config "store = \"$2\","
    daemon_start || { ok 1 "$name: the daemon starts"; return; }
    curl -s -o /dev/null -H "$H$TOKEN" -H 'Content-Type: application/json' \
      -d '{"type":"page.requested","data":{"key":"restart/'"$name"'"}}' "http://127.0.0.1:$PORT/v1/events"
    wait_for 20 sent_at_least 2
    ok $? "$name: steps 1 and 2 sent"
    { daemon_stop KILL; } 2>/dev/null
    daemon_start
    ok $? "$name: restarted after SIGKILL mid-escalation"
    wait_for 20 sent_at_least 5
    ok $? "$name: steps continue after the restart (5 sent)"
    { daemon_stop KILL; } 2>/dev/null
    daemon_start
    ok $? "$name: restarted after a second SIGKILL"
    wait_for 30 sent_at_least 8
    ok $? "$name: all eight notifications sent"
    wait_for 20 no_timers
    ok $? "$name: the escalation finished (no timer pending)"
    ctl "requests?route=slack" > "$D/slack.json"
    [ "$(j "$D/slack.json" 'len(d)')" = 8 ]
    ok $? "$name: the receiver got exactly eight requests"
    [ "$(j "$D/slack.json" 'sorted((r["path"].rsplit("/", 1)[1], "repeat 1" in r["json"]["text"]) for r in d)')" = \
      "[('s1', False), ('s1', True), ('s2', False), ('s2', True), ('s3', False), ('s3', True), ('s4', False), ('s4', True)]" ]
    ok $? "$name: every step of both loops exactly once, none lost, none repeated"
    [ "$(j "$D/slack.json" 'all(r["valid"] for r in d)')" = True ]
    ok $? "$name: every request in Slack's shape"
    curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT/v1/incidents?service=db" > "$D/l.json"
    local id
    id=$(j "$D/l.json" 'd["incidents"][0]["id"]')
    curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT/v1/incidents/$id" > "$D/i.json"
    [ "$(j "$D/i.json" 'sorted((e["data"]["loop"], e["data"]["step"]) for e in d["timeline"] if e["kind"] == "notification")')" = \
      "[(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 2), (1, 3), (1, 4)]" ]
    ok $? "$name: the timeline has each notification once"
    daemon_stop
}

scenario sqlite "sqlite:$D/steward.db"

if ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
    . "$here/tests/support/pg.sh"
    if pg_start; then
        PGUP=1
        scenario postgres "$PG_URL"
    else
        ok 1 "PostgreSQL starts"
    fi
else
    echo "# PostgreSQL not installed: the PostgreSQL scenario is skipped"
fi

echo "1..$n"
exit $fail
