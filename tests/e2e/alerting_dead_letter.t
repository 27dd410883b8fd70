#!/bin/bash
# A notification that keeps failing (issue 13 §5): the alerting.notify event of the shipped
# policies/alerting/router.lua is retried, then parked as a dead letter whose error is the
# send's real one (the connection to the receiver was refused), not "notification: nil".
set -u
. "$(dirname "$0")/../support/daemon.sh"
echo "1..4"
# A port that refuses connections: bound, then closed.
DEAD=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/router.lua" "$D/policies/alerting/router.lua"
cat >"$D/policies/lib/alerting/config.lua" <<CFG
return {
  route = { receiver = "down", group_by = { "alertname" }, group_wait = "0s", group_interval = "1h", repeat_interval = "1h" },
  receivers = { down = { { kind = "webhook", url = "http://127.0.0.1:$DEAD/hook", retries = 0 } } },
}
CFG
daemon_config 'limits = { retry_attempts = 2, retry_base = "10ms", retry_max = "20ms" },'
daemon_start || { echo "not ok 1 - the daemon starts"; exit 1; }
auth="Authorization: Bearer $TOKEN"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" -d '[{"labels":{"alertname":"Unheard"}}]' "http://127.0.0.1:$PORT/api/v2/alerts")
[ "$code" = 200 ] && echo "ok 1 - the alert is accepted" || echo "not ok 1 - the alert is accepted ($code)"
dl=
for _ in $(seq 200); do
    dl=$(curl -s -H "$auth" "http://127.0.0.1:$PORT/v1/dead-letters?policy=alerting.router")
    [ "$(echo "$dl" | jx 'len(d["dead_letters"])')" = 1 ] && break; sleep 0.05
done
[ "$(echo "$dl" | jx 'len(d["dead_letters"])')" = 1 ] && echo "ok 2 - the failing notification becomes one dead letter" \
    || echo "not ok 2 - the failing notification becomes one dead letter ($dl)"
err=$(echo "$dl" | jx 'd["dead_letters"][0]["error"]')
case "$err" in
  *"notification: notify down"*"127.0.0.1:$DEAD"*"Couldn't connect"*) echo "ok 3 - its error is the real one: connection refused" ;;
  *) echo "not ok 3 - its error is the real one: connection refused"; echo "# got: $err" ;;
esac
grep -q 'msg="dead letter".*Couldn.t connect' "$D/log.new" && echo "ok 4 - the dead letter's log line says it too" \
    || echo "not ok 4 - the dead letter's log line says it too"
daemon_stop
