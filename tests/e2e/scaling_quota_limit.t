#!/bin/bash
# The autoscaler within a quota (issue 16, with steward.scaling.quota): 40 work items against a
# target of 10 ask for 4 instances; the service's quota allows 2. The autoscaler scales to 2, no
# further, and its decision names the quota as the limit (scaling.scaled, then one logged
# scaling.limited while the quota holds it back), never a refused start.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cleanup_all() {
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -f "$D/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/starts"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..4"
api() { curl -s -m 10 -H "Authorization: Bearer $TOKEN" "$@"; }
base=$(( 10000 + RANDOM % 20000 ))
daemon_config "
  services = { api = {
    run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/starts' },
            ports = '$base-$((base + 20))' },
  } },
  quotas = { services = { api = { instances = 2 } } },
  grants = { ['scaling.*'] = { deploy = { 'api' } } },"
mkdir -p "$D/policies/scaling"
cat > "$D/policies/scaling/api.lua" <<'POLICY'
local scaling = require "steward.scaling"
return scaling.autoscaler{
  service = "api", revision = "v1", min_replicas = 1, max_replicas = 10, interval = "200ms",
  metrics = { { name = "work", source = scaling.source.events{ type = "work.item", window = "1m" }, target = 10 } },
}
POLICY
daemon_start
ok $? "steward runs with an autoscaler and a quota of 2 instances for its service" || exit 1
events='['; for i in $(seq 40); do events="$events{\"type\":\"work.item\",\"data\":{\"i\":$i}},"; done; events="${events%,}]"
one() { api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx "[e for e in d['events'] if e['data']['to'] == 1]" | grep -q from; }
wait_for 20 one
api -d "$events" "http://127.0.0.1:$PORT/v1/events" > /dev/null
quota_up() {
    api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" |
        jx "[e for e in d['events'] if e['data']['from'] == 1 and e['data']['to'] == 2 and e['data']['limited_by'] == 'quota services.api.instances']" | grep -q from
}
wait_for 20 quota_up
ok $? "40 items ask for 4: it scales to 2, the quota named as the limit"
limited() {
    api "http://127.0.0.1:$PORT/v1/events?type=scaling.limited" |
        jx "[e for e in d['events'] if (e['data'].get('limited_by') or '').startswith('quota') and e['data']['recommended'] == 4]" | grep -q decision_id
}
wait_for 20 limited
ok $? "at 2, the held-back scale-up is a logged decision and a scaling.limited event naming the quota"
count=$(api "http://127.0.0.1:$PORT/v1/services" | jx "len([i for s in d['services'] for i in s['instances']])")
refused=$(api "http://127.0.0.1:$PORT/v1/events?type=quota.exceeded" | jx "len(d['events'])")
[ "$count" = 2 ] && [ "$refused" = 0 ]
ok $? "2 instances run, and no start was refused by the quota ($count instances, $refused quota.exceeded)"
exit "$fail"
