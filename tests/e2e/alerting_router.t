#!/bin/bash
# The shipped alerting policy (policies/alerting/router.lua) in a running daemon: alerts posted
# to /api/v2/alerts as amtool/Prometheus post them become Alertmanager v4 webhook notifications
# at group_wait and group_interval ticks (group_wait 0: at once), resolved alerts are
# announced, and a kill -9 in the middle of a group's wait neither loses nor doubles a
# notification. Runs on SQLite, and on PostgreSQL when STEWARD_TEST_STORE names one.
set -u
. "$(dirname "$0")/../support/daemon.sh"
receiver_start
RUN=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n') # apart from other runs in a shared store

mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/router.lua" "$D/policies/alerting/router.lua"
cat >"$D/policies/lib/alerting/config.lua" <<CFG
return {
  route = { receiver = "team", group_by = { "alertname" },
            group_wait = "2s", group_interval = "3s", repeat_interval = "1h",
            routes = { { matchers = { 'severity="page"' }, receiver = "pager", group_wait = "0s" } } },
  receivers = {
    team = { { kind = "webhook", url = "$R/webhook/team", send_resolved = true } },
    pager = { { kind = "webhook", url = "$R/webhook/pager" } },
  },
}
CFG
daemon_config 'log_level = "info",'

api() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
          -d "$2" "http://127.0.0.1:$PORT$1"; }
# wait_hooks N [timeout]: until the receiver has N webhook requests
wait_hooks() { curl -sf "$R/_control/wait?route=webhook&n=$1&timeout=${2:-20}" >/dev/null; }
hooks() { curl -sf "$R/_control/requests?route=webhook"; }
# check PYTHON-EXPR: evaluated with r = the webhook requests (list), b = their JSON bodies
check() { hooks | /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); b=[x['json'] for x in r]; sys.exit(0 if ($1) else 1)"; }
now_ms() { date +%s%3N; }

echo "1..13"
daemon_start || { echo "not ok 1 - the daemon starts with the router policy"; exit 1; }
echo "ok 1 - the daemon starts with the router policy"

T0=$(now_ms)
code=$(api /api/v2/alerts "[{\"labels\":{\"alertname\":\"Disk\",\"instance\":\"a\",\"run\":\"$RUN\"},\"annotations\":{\"summary\":\"disk full\"}}]")
[ "$code" = 200 ] && echo "ok 2 - alerts are accepted" || echo "not ok 2 - alerts are accepted ($code)"

if wait_hooks 1 && check "len(r) == 1 and b[0]['status'] == 'firing' and b[0]['receiver'] == 'team' and b[0]['groupKey'] == '{}:{alertname=\"Disk\"}' and len(b[0]['alerts']) == 1 and b[0]['alerts'][0]['endsAt'].startswith('0001-') and b[0]['commonAnnotations'] == {'summary': 'disk full'} and r[0]['valid']"; then
    echo "ok 3 - the first notification is an Alertmanager v4 webhook body"
else echo "not ok 3 - the first notification is an Alertmanager v4 webhook body"; hooks | head -c 2000 | sed 's/^/# /'; fi
T1=$(now_ms)
[ $((T1 - T0)) -ge 1900 ] && echo "ok 4 - it waited group_wait ($((T1 - T0)) ms)" || echo "not ok 4 - it waited group_wait ($((T1 - T0)) ms)"

api /api/v2/alerts "[{\"labels\":{\"alertname\":\"Disk\",\"instance\":\"b\",\"run\":\"$RUN\"}}]" >/dev/null
if wait_hooks 2 10 && check "len(b) == 2 and sorted(a['labels']['instance'] for a in b[1]['alerts']) == ['a', 'b']"; then
    echo "ok 5 - a second alert of the group comes at the next group_interval tick, with the first"
else echo "not ok 5 - a second alert of the group comes at the next group_interval tick"; fi
T2=$(now_ms)
d=$((T2 - T1))
# Semantics, not speed: at the next tick (3 s after the first flush; the alert came ~0 s after
# it), not before and not a whole tick later (6 s).
[ $d -ge 2000 ] && [ $d -lt 6000 ] && echo "ok 6 - one group_interval after the first ($d ms)" || echo "not ok 6 - one group_interval after the first ($d ms)"

# group_wait 0: notified without waiting for a timer
T3=$(now_ms)
api /api/v2/alerts "[{\"labels\":{\"alertname\":\"Down\",\"severity\":\"page\",\"run\":\"$RUN\"}}]" >/dev/null
if wait_hooks 3 5 && check "b[2]['receiver'] == 'pager'"; then
    T4=$(now_ms)
    # before the 2 s group_wait of the other routes: no wait at all, whatever the machine's load
    [ $((T4 - T3)) -lt 1900 ] && echo "ok 7 - group_wait 0 notifies at once ($((T4 - T3)) ms)" || echo "not ok 7 - group_wait 0 notifies at once ($((T4 - T3)) ms)"
else echo "not ok 7 - group_wait 0 notifies at once"; fi

# kill -9 while a new group waits: after the restart it is notified exactly once
api /api/v2/alerts "[{\"labels\":{\"alertname\":\"Net\",\"run\":\"$RUN\"}}]" >/dev/null
daemon_stop KILL
daemon_start || { echo "not ok 8 - the daemon restarts"; exit 1; }
echo "ok 8 - the daemon restarts after kill -9"
if wait_hooks 4 15 && check "b[3]['groupKey'] == '{}:{alertname=\"Net\"}'"; then
    echo "ok 9 - the group that was waiting is notified after the restart"
else echo "not ok 9 - the group that was waiting is notified after the restart"; fi

# resolve the first alert: the next tick of Disk says so (send_resolved)
api /api/v2/alerts "[{\"labels\":{\"alertname\":\"Disk\",\"instance\":\"a\",\"run\":\"$RUN\"},\"endsAt\":\"2020-01-01T00:00:00Z\",\"startsAt\":\"2019-12-31T00:00:00Z\"}]" >/dev/null
if wait_hooks 5 10 && check "b[4]['groupKey'] == '{}:{alertname=\"Disk\"}' and sorted((a['labels']['instance'], a['status']) for a in b[4]['alerts']) == [('a', 'resolved'), ('b', 'firing')] and b[4]['status'] == 'firing'"; then
    echo "ok 10 - a resolved alert is announced at its group's next tick"
else echo "not ok 10 - a resolved alert is announced at its group's next tick"; hooks | tail -c 1500 | sed 's/^/# /'; fi

# kill -9 again, wait past several ticks: nothing is sent twice, nothing new is sent
daemon_stop KILL
daemon_start || { echo "not ok 11 - no notification is lost or doubled across kill -9"; exit 1; }
sleep 7 # several group_interval ticks (3s) pass: any duplicate would arrive meanwhile
if check "len(b) == 5 and [x['groupKey'] for x in b].count('{}:{alertname=\"Net\"}') == 1"; then
    echo "ok 11 - no notification is lost or doubled across kill -9"
else echo "not ok 11 - no notification is lost or doubled across kill -9"; hooks | /usr/bin/python3 -c "import json,sys; [print('#', x['json']['groupKey'], x['json']['status'], x['time']) for x in json.load(sys.stdin)]"; fi

code=$(curl -s -o "$D/policy.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/alerting.router")
[ "$code" = 200 ] && ! grep -q '"last_error":{' "$D/policy.json" && echo "ok 12 - the policy loaded without errors" || echo "not ok 12 - the policy loaded without errors ($code)"
# A dry run (POST /v1/policies/alerting.router/simulate) says where an alert would go and
# changes nothing: no group, no notification.
before=$(hooks | /usr/bin/python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
sim=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"type\":\"alert.firing\",\"data\":{\"fingerprint\":\"00000000000000aa\",\"labels\":{\"alertname\":\"Sim\",\"severity\":\"page\",\"run\":\"$RUN\"}}}" \
  "http://127.0.0.1:$PORT/v1/policies/alerting.router/simulate")
groups=$("$BIN" eval --socket "$D/var/steward.sock" 'local n = 0 for _, g in ipairs(require("steward.runtime.store").default():sql("SELECT group_key FROM alert_groups")) do if g.group_key:find("Sim", 1, true) then n = n + 1 end end return n' 2>&1)
after=$(hooks | /usr/bin/python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
if echo "$sim" | jx 'd["result"]["dry_run"] is True and d["result"]["routes"][0]["receiver"] == "pager" and "Sim" in d["result"]["routes"][0]["group_key"]' >/dev/null \
   && [ "$groups" = 0 ] && [ "$before" = "$after" ]; then
    echo "ok 13 - a dry run answers the route and group, and creates and sends nothing"
else echo "not ok 13 - a dry run answers the route and group, and creates and sends nothing"; echo "# $sim groups=$groups hooks $before -> $after"; fi
daemon_stop
