#!/bin/bash
# Cost from the supervisor's accounting, end to end: two supervised instances of a real local
# service run under a flat price of 3.60 EUR an instance hour (0.001 a second); GET /v1/cost
# counts them while they run (their open intervals end now) and, once they are stopped, from
# their started/exited events alone: the amount stops growing and matches the instance hours.
set -u
. "$(dirname "$0")/../support/daemon.sh"

H="Authorization: Bearer "
api() { curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT$1" "${@:2}"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$1" 2>&1; }

base=$(( 10000 + RANDOM % 20000 ))
app="$here/tests/support/svc_app.py"
daemon_config "
  services = {
    web = { run = { cmd = { '/usr/bin/python3', '$app', '--port', '{port}' }, instances = 2, ports = '$base-$((base + 9))' },
            probes = { readiness = { http = '/healthz', interval = '100ms', timeout = '1s' } } },
  },
  costs = { currency = 'EUR', prices = { { name = 'flat', instance_hour = '3.60' } }, services = { web = { class = 'on_demand' } } },"
daemon_start || exit 1

out=$(ev "local s = require 'steward.deploy.supervisor'
  assert(s.start('web', 'v1'))
  assert(s.wait_ready('web', 'v1', 2, 20))
  return 'ready'")
echo "$out" | grep -q ready
ok $? "two instances of web v1 run and are ready ($out)"

running_cost() { api "/v1/cost?from=$(( $(date +%s) - 600 ))" | jx 'd["rows"][0]["key"] == "web" and d["rows"][0]["instance_hours"] > 0' >/dev/null; }
wait_for 20 running_cost
ok $? "GET /v1/cost counts the running instances: $(api /v1/cost)"
c1=$(api /v1/cost | jx 'd["rows"][0]["amount"]')
grows() { [ "$(api /v1/cost | jx 'd["rows"][0]["amount"]')" != "$c1" ]; }
wait_for 10 grows
ok $? "... and their cost grows while they run (from $c1)"

out=$(ev "assert(require('steward.deploy.supervisor').stop('web', 'v1')); return 'stopped'")
echo "$out" | grep -q stopped
ok $? "the instances are stopped ($out)"
exited() { api "/v1/events?type=service.instance.exited" | jx 'len(d["events"]) == 2' >/dev/null; }
wait_for 20 exited
ok $? "... their exits are in the event log"
a=$(api /v1/cost)
b=$(api /v1/cost)
[ "$(echo "$a" | jx 'd["total"]')" = "$(echo "$b" | jx 'd["total"]')" ]
ok $? "stopped, the cost no longer grows ($(echo "$a" | jx 'd["total"]') EUR)"
echo "$a" | jx 'abs(float(d["rows"][0]["amount"]) - d["rows"][0]["instance_seconds"] * 0.001) < 0.000002 and d["currency"] == "EUR" and d["rows"][0]["by_price"]["flat"] == d["rows"][0]["amount"]' >/dev/null
ok $? "the amount is the instance-seconds at 0.001 ($a)"
api "/v1/cost?by=revision" | jx 'd["rows"][0]["key"] == "web/v1"' >/dev/null
ok $? "by revision: web/v1"
[ "$(api '/v1/cost?by=colour' -o /dev/null -w '%{http_code}')" = 400 ]
ok $? "a bad by is a 400"
out=$(api "/v1/cost/cheapest?duration=2h&deadline=1h")
echo "$out" | grep -q '"code":"no_slot"'
ok $? "cheapest with a deadline too near: 422 no_slot ($out)"

daemon_stop
echo "1..$n"
exit $fail
