#!/bin/bash
# SLO breaches through the alerting pipeline in a running daemon: the shipped policy
# policies/alerting/slo.lua has a `schedule` (a durable cron schedule "policy:alerting.slo"
# the daemon keeps), evaluates the configured SLO over http.request events, and its burn-rate
# alerts reach the Alertmanager API's store and, through policies/alerting/router.lua, a webhook.
# A slot is also run on demand by posting a policy.schedule event naming the policy.
set -u
. "$(dirname "$0")/../support/daemon.sh"
receiver_start

mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/router.lua" "$here/policies/alerting/slo.lua" "$D/policies/alerting/"
cat >"$D/policies/lib/alerting/config.lua" <<CFG
return {
  route = { receiver = "tickets", group_by = { "alertname", "slo", "severity" }, group_wait = "0s",
            group_interval = "1h", repeat_interval = "4h",
            routes = { { matchers = { 'alertname="SLOErrorBudgetBurn"', 'severity="page"' }, receiver = "pager" } } },
  receivers = {
    tickets = { { kind = "webhook", url = "$R/webhook/tickets" } },
    pager = { { kind = "webhook", url = "$R/webhook/pager" } },
  },
  slos = {
    { name = "checkout-availability", objective = 0.99, period = "30d", labels = { service = "checkout" },
      source = { events = { type = "http.request", good = function(ev) return ev.data.code < 500 end } } },
  },
}
CFG
daemon_config ""
auth="Authorization: Bearer"
post() { curl -s -o "$D/out" -w '%{http_code}' -H "$auth $TOKEN" -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$PORT$1"; }
hooks() { curl -sf "$R/_control/requests?route=webhook"; }

echo "1..6"
daemon_start || { echo "not ok 1 - the daemon starts with the slo policy"; exit 1; }
echo "ok 1 - the daemon starts with the slo policy"

# The schedule row exists once the policies are loaded (the sync runs in a task of its own).
sched=
for _ in $(seq 100); do
    sched=$("$BIN" eval --socket "$D/var/steward.sock" 'local s = require("steward.runtime.store.schedules").list(require("steward.runtime.store").default()); for _, r in ipairs(s) do if r.name == "policy:alerting.slo" then return r.expr end end return "none"' 2>&1)
    [ "$sched" = '"* * * * *"' ] && break
    sleep 0.05
done
[ "$sched" = '"* * * * *"' ] && echo "ok 2 - a durable schedule policy:alerting.slo runs the policy every minute" \
    || echo "not ok 2 - a durable schedule policy:alerting.slo runs the policy every minute (got $sched)"

# 100 requests, half of them failed: every workbook rule burns (50 x the allowed 1 %).
evs=$(/usr/bin/python3 -c "
import json, time
now = time.time()
print(json.dumps([{'type': 'http.request', 'time': now - 200 + i, 'data': {'code': 503 if i % 2 else 200}} for i in range(100)]))")
code=$(post /v1/events "$evs")
[ "$code" = 202 ] && echo "ok 3 - the requests are ingested" || echo "not ok 3 - the requests are ingested ($code)"

# Run the slot now rather than waiting for the minute.
post /v1/events '{"type":"policy.schedule","data":{"policy":"alerting.slo"}}' >/dev/null
if curl -sf "$R/_control/wait?route=webhook&n=1&timeout=20" >/dev/null &&
   hooks | /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); sys.exit(0 if any(x['path'] == '/webhook/pager' and x['json']['commonLabels']['slo'] == 'checkout-availability' for x in r) else 1)"; then
    echo "ok 4 - the fast-burn page reaches the pager through the route tree"
else echo "not ok 4 - the fast-burn page reaches the pager through the route tree"; hooks | head -c 1500 | sed 's/^/# /'; echo; fi

alerts=$(curl -s -H "$auth $TOKEN" "http://127.0.0.1:$PORT/api/v2/alerts?filter=alertname%3D%22SLOErrorBudgetBurn%22")
n=$(echo "$alerts" | jx 'len(d)')
wins=$(echo "$alerts" | jx '",".join(sorted(a["labels"]["window"] for a in d))')
[ "$n" = 4 ] && [ "$wins" = "1d/2h,1h/5m,3d/6h,6h/30m" ] && echo "ok 5 - the four burn-rate alerts are in the Alertmanager API" \
    || echo "not ok 5 - the four burn-rate alerts are in the Alertmanager API (got $n: $wins)"
summary=$(echo "$alerts" | jx '"\n".join(a["annotations"]["summary"] for a in d if a["labels"]["window"] == "1h/5m")')
case "$summary" in
  "checkout-availability is burning its error budget 50.00× over 1h"*) echo "ok 6 - the alert says how fast the budget burns" ;;
  *) echo "not ok 6 - the alert says how fast the budget burns (got: $summary)" ;;
esac
daemon_stop
