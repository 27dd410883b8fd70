#!/bin/bash
# The autoscaler's life around its decisions, on a metric the test controls exactly (the count of
# its own `work.item` events over 3 s, an object metric with target 10): which revision it
# scales ("stable": it holds while nothing runs, then takes the only revision running); a scale-up
# seen in GET /v1/scaling; the decision state surviving a restart (no scale-down after it while
# the stabilization window still holds the high recommendation); a failed instance replaced; a
# reload that changes the spec (max_replicas) applies at the next tick, one that removes the
# autoscaler stops it and leaves the instances; a policy without the deploy grant does nothing.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cleanup_all() {
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -f "$D/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/starts"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..18"
api() { curl -s -m 10 -H "Authorization: Bearer $TOKEN" "$@"; }
base=$(( 10000 + RANDOM % 20000 ))
daemon_config "
  services = { api = {
    run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/starts' },
            env = { VERSION = '{revision}' }, ports = '$base-$((base + 20))' },
    probes = { readiness = { http = '/healthz', interval = '100ms' } },
    restart = { burst = 1, interval = '60s' },
    stop = { grace = '2s' },
  } },
  grants = { ['scaling.*'] = { deploy = { 'api' } } },"
mkdir -p "$D/policies/scaling" "$D/policies/other"
policy() {
    cat <<POLICY
local scaling = require "steward.scaling"
return scaling.autoscaler{
  service = "api", min_replicas = 1, max_replicas = $1, interval = "200ms",
  metrics = { { name = "work", source = scaling.source.events{ type = "work.item", window = "3s" }, target = 10 } },
  behavior = { scale_down = { stabilization_window = "60s" } },
}
POLICY
}
policy 4 > "$D/policies/scaling/api.lua"
# the same autoscaler for another service, in a policy without the grant
sed 's/service = "api"/service = "web"/' "$D/policies/scaling/api.lua" > "$D/policies/other/web.lua"
daemon_start
ok $? "steward runs with the autoscaler" || exit 1

view() { api "http://127.0.0.1:$PORT/v1/scaling?service=$1"; }
status_is() { [ "$(view "$1" | jx "d['autoscalers'][0]['status']" 2>/dev/null)" = "$2" ]; }
status_like() { view "$1" | jx "arg[0] in (d['autoscalers'][0]['status'] or '')" "$2" >/dev/null 2>&1; }
wait_for 10 status_like api "held: no revision to scale"
ok $? "with nothing running and no rollout, the stable revision is unknown: it holds and says why ($(view api | jx "d['autoscalers'][0]['status']"))"
api "http://127.0.0.1:$PORT/v1/policies" > "$D/policies.json"
grep -q "capabilities not granted to other.web: 'deploy'" "$D/policies.json" && [ "$(view web | jx "len(d['autoscalers'])")" = 0 ]
ok $? "an autoscaler without the deploy grant for its service does not load, and the error names the capability"

api -d '{"revision":"v1","instances":1}' "http://127.0.0.1:$PORT/v1/services/api/scale" > /dev/null
revision_is() { [ "$(view api | jx "d['autoscalers'][0]['revision']" 2>/dev/null)" = v1 ]; }
wait_for 10 revision_is
ok $? "once v1 runs (started by hand) it is the revision the autoscaler scales"

# 30 events in the window: 30 / 10 = 3 times the current count
events='['; for i in $(seq 30); do events="$events{\"type\":\"work.item\",\"data\":{\"i\":$i}},"; done; events="${events%,}]"
api -d "$events" "http://127.0.0.1:$PORT/v1/events" > /dev/null
scaled_to() { api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx "[e for e in d['events'] if e['data']['from'] == 1 and e['data']['to'] == $1]" | grep -q from; }
wait_for 10 scaled_to 3
ok $? "30 work items against a target of 10 scale v1 from 1 to 3"
ready_count() { api "http://127.0.0.1:$PORT/v1/services" | jx "len([i for s in d['services'] for i in s['instances'] if i['ready']])"; }
ready_is() { [ "$(ready_count)" = "$1" ]; }
wait_for 10 ready_is 3
ok $? "three ready instances"
view api > "$D/view.json"
jx "d['autoscalers'][0]['last_scaled']['desired'] == 3 and d['autoscalers'][0]['last_scaled']['proposals'][0]['metric'] == 'work' and d['autoscalers'][0]['spec']['metrics'][0]['source']['kind'] == 'events'" < "$D/view.json" > /dev/null
ok $? "GET /v1/scaling has the spec, the last scale-up and its proposal per metric"

# the events age out of the window: the recommendation falls to 1, the 60 s window holds 3
held() { view api | jx "(d['autoscalers'][0]['last_decision'] or {}).get('limited_by') == 'stabilization_window'" > /dev/null 2>&1; }
wait_for 15 held
ok $? "without work the stabilization window holds 3 (a logged, held-back decision)"

# restart: the state (the recommendation history) comes back from the store
daemon_stop
restarted_at=$(date +%s.%N)
daemon_start
# a tick of this process (last_tick is the live view; the status alone could be the saved one)
ticked() { view api | jx "d['autoscalers'][0].get('last_tick') is not None and d['autoscalers'][0]['status'] == 'ok'" >/dev/null 2>&1; }
wait_for 15 ticked
# some ticks after the restart, with the window still holding
wait_for 15 held
downs=$(api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx "len([e for e in d['events'] if e['data']['to'] < e['data']['from']])")
[ "$downs" = 0 ] && ready_is 3
ok $? "after a restart the window still holds: no scale-down, 3 instances ($downs scale-downs)"
# the window is measured from the recommendations made before the restart, not from the restart
view api | jx "min(r['at'] for r in d['autoscalers'][0]['state']['hpa']['recommendations']) < float(arg[0])" "$restarted_at" >/dev/null
ok $? "the decision state came back from the store: its recommendation history starts before the restart"

# a failed instance (its start limit: burst 1) is replaced
victim=$(api "http://127.0.0.1:$PORT/v1/services" | jx "[i['pid'] for s in d['services'] for i in s['instances'] if i['index'] == 2][0]")
kill -9 "$victim"
replaced() {
    api "http://127.0.0.1:$PORT/v1/services" |
        jx "[i for s in d['services'] for i in s['instances'] if i['index'] == 2 and i['ready'] and i['pid'] != $victim]" | grep -q pid
}
wait_for 15 replaced
ok $? "a failed instance (start limit hit) is replaced by a new process" || grep -v 'level=info msg="policies' "$D/log.new" | tail -15 | sed 's/^/# /'

# a reload that changes max_replicas to 2 applies at the next tick, state kept
policy 2 > "$D/policies/scaling/api.lua"
"$BIN" reload --socket "$D/var/steward.sock" > /dev/null 2>&1 || api -X POST "http://127.0.0.1:$PORT/v1/policies/reload" > /dev/null
to2() { api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx "[e for e in d['events'] if e['data']['from'] == 3 and e['data']['to'] == 2]" | grep -q from; }
wait_for 15 to2
ok $? "a reload to max_replicas = 2 applies at the next tick: 3 -> 2" || tail -15 "$D/log.new" | sed 's/^/# /'

# a rollout of the service in progress: the stable revision is the rollout's business, it holds
rollout() {
    "$BIN" eval --socket "$D/var/steward.sock" "local rs = require 'steward.deploy.rollout_store'
      local st = require('steward.runtime.store').default()
      local r = rs.get(st, 'api~v2~test') or { id = 'api~v2~test', service = 'api', revision = 'v2', step = 1 }
      local rev = r.rev
      r.phase = '$1'
      return rs.commit(st, r, rev, { insert = rev == nil }, os.time())"
}
rollout Progressing > "$D/rollout.out" 2>&1
wait_for 10 status_like api "held: rollout in progress (api~v2~test of revision v2)"
ok $? "while a rollout of the service is in progress the autoscaler holds and says so" || sed 's/^/# /' "$D/rollout.out"
api "http://127.0.0.1:$PORT/v1/events?type=scaling.limited" | jx "[e for e in d['events'] if e['data']['limited_by'] == 'rollout']" | grep -q decision_id
ok $? "the hold is a logged decision and a scaling.limited event (limited_by rollout)"
rollout Aborted > /dev/null 2>&1
wait_for 10 status_is api ok
ok $? "once the rollout ends it scales v1 again"
api "http://127.0.0.1:$PORT/v1/decide/scaling.api" -d '{}' | jx "d['result']['service'] == 'api' and d['result']['revision'] == 'v1'" > /dev/null
ok $? "the policy's decide answers its autoscaler's view"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/scaling?servce=api")" = 400 ]
ok $? "GET /v1/scaling refuses an unknown parameter"

# removed: the loop stops, the instances stay
rm "$D/policies/scaling/api.lua"
"$BIN" reload --socket "$D/var/steward.sock" > /dev/null 2>&1 || api -X POST "http://127.0.0.1:$PORT/v1/policies/reload" > /dev/null
gone() { [ "$(view api | jx "len(d['autoscalers'])")" = 0 ]; }
wait_for 15 gone
running=$(api "http://127.0.0.1:$PORT/v1/services" | jx "len([i for s in d['services'] for i in s['instances'] if i['state'] == 'running'])")
[ "$running" = 2 ]
ok $? "a removed autoscaler stops; the service keeps its 2 instances ($running)"
exit "$fail"
