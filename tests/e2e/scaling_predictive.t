#!/bin/bash
# Predictive scaling through the loop (issue 16): three days of a metric's history with a daily
# ramp (5 work items a minute, 50 from two minutes after this time of day for an hour), imported
# into the capacity history (POST /v1/capacity/series/api:work); with no load at all now, the
# autoscaler's predictive metric (predicted:work: the Holt-Winters forecast of 5 minutes ahead,
# one more proposal, the largest wins) starts instances ahead of the ramp; the decision lists its
# forecast, interval and error.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cleanup_all() {
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -f "$D/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/starts"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..4"
api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
base=$(( 10000 + RANDOM % 20000 ))
daemon_config "
  services = { api = {
    run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/starts' },
            ports = '$base-$((base + 20))' },
  } },
  grants = { ['scaling.*'] = { deploy = { 'api' } } },"
mkdir -p "$D/policies/scaling"
cat > "$D/policies/scaling/api.lua" <<'POLICY'
local scaling = require "steward.scaling"
return scaling.autoscaler{
  service = "api", revision = "v1", min_replicas = 1, max_replicas = 4,
  metrics = { { name = "work", source = scaling.source.events{ type = "work.item", window = "1m" }, target = 10 } },
  predictive = { metric = "work", target = 10, lead = "5m", season = "1d", step = "1m" },
}
POLICY
daemon_start
ok $? "steward runs with a predictive autoscaler" || exit 1
one() { api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx "[e for e in d['events'] if e['data']['to'] == 1]" | grep -q from; }
wait_for 20 one
ok $? "without history or load it runs min_replicas (1)"

/usr/bin/python3 - > "$D/series.json" <<'PY'
import json, time
now = int(time.time()) // 60 * 60
pts = []
for t in range(now - 3 * 86400, now, 60):
    tod = (t - now) % 86400
    pts.append([t, 50 if 120 <= tod < 3600 else 5])
print(json.dumps({"points": pts}))
PY
api -H 'Content-Type: application/json' --data-binary @"$D/series.json" "http://127.0.0.1:$PORT/v1/capacity/series/api:work" > "$D/import.out"
grep -q '"rows"' "$D/import.out"
ok $? "three days of history imported ($(cut -c1-80 "$D/import.out"))"

ahead() {
    api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" |
        jx "[e for e in d['events'] if e['data']['to'] > 1]" | grep -q from
}
wait_for 30 ahead
r=$?
[ "$r" = 0 ] || api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | sed 's/^/# /' | cut -c1-600
api "http://127.0.0.1:$PORT/v1/scaling?service=api" > "$D/view.json"
jx "[p for p in d['autoscalers'][0]['last_scaled']['proposals'] if p['metric'] == 'predicted:work' and p['replicas'] > 1]" < "$D/view.json" > "$D/pred.json" 2>&1
[ "$r" = 0 ] && grep -q '"forecast"' "$D/pred.json"
ok $? "before any load, the predictive proposal starts instances ahead of the ramp ($(cat "$D/pred.json" | cut -c1-200))"
exit "$fail"
