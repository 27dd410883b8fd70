#!/bin/bash
# No flapping (issue 16): under a load that comes and goes every 2 s, an autoscaler with a 5 s
# scale-down stabilization window scales up and then holds: no scale-down while every 5 s window
# still holds a high recommendation, as Kubernetes' stabilization prescribes. Once the load stops
# for good, it scales down (the window delays, it does not forbid). Real daemon, HAProxy, wrk.
set -u
. "$(dirname "$0")/../support/daemon.sh"
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed"; exit 0; }
command -v wrk >/dev/null || { echo "1..0 # SKIP wrk is not installed"; exit 0; }
. "$here/tests/support/scaling_setup.sh"
trap scaling_cleanup EXIT
echo "1..6"
scaling_setup 'local scaling = require "steward.scaling"
return scaling.autoscaler{
  service = "api", revision = "v1", min_replicas = 1, max_replicas = 3, interval = "250ms",
  metrics = { { name = "rps", source = scaling.source.haproxy{ metric = "rps" }, target = 20 } },
  behavior = { scale_down = { stabilization_window = "5s" } },
}'
ok $? "steward runs with an autoscaler whose scale-down window is 5 s" || exit 1
served() { [ "$(curl -s -m 2 "http://127.0.0.1:$HAP_PORT/")" = v1 ]; }
wait_for 30 served
ok $? "v1 serves through HAProxy"

# 5 cycles: 2 s of load, 2 s of none
for _ in 1 2 3 4 5; do
    wrk -t1 -c4 -d2s "http://127.0.0.1:$HAP_PORT/" > /dev/null 2>&1
    sleep 2 # the idle half of the oscillation (the load shape itself, not a synchronisation)
done
scaled_events > "$D/during"
sed 's/^/# scaled: /' "$D/during"
ups=$(awk '$2 > $1' "$D/during" | grep -c . || true)
downs=$(awk '$2 < $1 && $1 > 0' "$D/during" | grep -c . || true)
[ "$ups" -ge 2 ]
ok $? "the load scales it up (changes up, counting the start: $ups)"
[ "$downs" -eq 0 ]
ok $? "no scale-down while the load oscillates faster than the 5 s window ($downs)"

# the heavy load is gone: after the window, a step down. A light steady load (about 5 requests
# a second, far below the target) runs through it: HAProxy drains the servers of the instances
# that stop before they stop, so none of its requests fails.
/usr/bin/python3 - "$HAP_PORT" "$D/light" <<'PY' &
import sys, time, urllib.request
port, out = sys.argv[1], open(sys.argv[2], "a", buffering=1)
while True:
    try:
        code = urllib.request.urlopen("http://127.0.0.1:%s/" % port, timeout=5).status
    except urllib.error.HTTPError as e:
        code = e.code
    except Exception:
        code = 0
    out.write("%d\n" % code)
    time.sleep(0.2)
PY
LOADPID=$!
down() { scaled_events | awk '$2 < $1 { f = 1 } END { exit !f }'; }
wait_for 30 down
ok $? "without the heavy load it scales down once the window has passed"
# a few more requests after the stop of the drained instances
stopped() { [ "$(api "http://127.0.0.1:$PORT/v1/services" | jx "len([i for s in d['services'] for i in s['instances']])")" = 1 ]; }
wait_for 20 stopped
mark=$(wc -l < "$D/light"); more() { [ "$(wc -l < "$D/light")" -ge $((mark + 5)) ]; }
wait_for 10 more
kill "$LOADPID"; LOADPID=
failed=$(grep -c -v '^200$' "$D/light" || true)
[ "$failed" = 0 ] && [ "$(wc -l < "$D/light")" -gt 10 ]
ok $? "no request of the steady load failed through the scale-down ($failed failed of $(wc -l < "$D/light"))"
scaled_events | sed 's/^/# scaled: /' | tail -n +"$(( $(wc -l < "$D/during") + 1 ))"
