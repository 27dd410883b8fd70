#!/bin/bash
# The autoscaler's Prometheus source against an HTTP server answering Prometheus's instant-query
# API (/api/v1/query) with a set value: 35 against a target of 10 asks for 4 instances (an
# external metric, average per instance). The policy declares `http` for the URL itself (from the
# source); a policy whose grant does not cover the URL does not load, naming the capability.
set -u
. "$(dirname "$0")/../support/daemon.sh"
PPID_=
cleanup_all() {
    [ -n "$PPID_" ] && kill "$PPID_" 2>/dev/null
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -f "$D/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/starts"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..4"
api() { curl -s -m 10 -H "Authorization: Bearer $TOKEN" "$@"; }
mkfifo "$D/prom.port"
/usr/bin/python3 - "$D/prom.port" <<'PY' &
import http.server, json, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if not self.path.startswith("/api/v1/query"):
            self.send_response(404); self.end_headers(); return
        body = json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [time.time(), "35"]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write("%d\n" % srv.server_address[1])
srv.serve_forever()
PY
PPID_=$!
read -r PROM < "$D/prom.port"
base=$(( 10000 + RANDOM % 20000 ))
daemon_config "
  services = { api = {
    run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/starts' },
            ports = '$base-$((base + 20))' },
  } },
  grants = { ['scaling.*'] = { deploy = { 'api' }, http = { 'http://127.0.0.1:$PROM/' } },
             ['other.*'] = { deploy = { 'api' }, http = { 'http://192.0.2.1/' } } },"
mkdir -p "$D/policies/scaling" "$D/policies/other"
policy() {
    cat <<POLICY
local scaling = require "steward.scaling"
return scaling.autoscaler{
  service = "$1", revision = "v1", min_replicas = 1, max_replicas = 4, interval = "200ms",
  metrics = { { name = "backlog", target = 10,
                source = scaling.source.prometheus{ url = "http://127.0.0.1:$PROM", query = "sum(backlog)" } } },
}
POLICY
}
policy api > "$D/policies/scaling/api.lua"
policy api > "$D/policies/other/api.lua"
daemon_start
ok $? "steward runs with a Prometheus-driven autoscaler" || exit 1
four() { api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx "[e for e in d['events'] if e['data']['to'] == 4]" | grep -q from; }
wait_for 20 four
ok $? "35 against a target of 10: it scales to 4"
api "http://127.0.0.1:$PORT/v1/scaling?service=api" | jx "d['autoscalers'][0]['last_scaled']['proposals'][0]['value'] == 35" >/dev/null
ok $? "the decision's proposal has the value Prometheus answered"
api "http://127.0.0.1:$PORT/v1/policies" | grep -q "capabilities not granted to other.api"
ok $? "a policy whose http grant does not cover the Prometheus URL does not load"
exit "$fail"
