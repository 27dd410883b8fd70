#!/bin/bash
# Usage ingestion (issue 18 §2, h4): N usage events (default 50,000) of SUBS subscriptions
# posted to POST /v1/billing/usage in batches of 1,000 by one client, then recorded into
# billing_usage by the shipped policy billing.usage. Prints the acknowledged events/s (each
# batch durable in the event log before its answer) and the recorded events/s (from the first
# post until the last row is in billing_usage). STORE=postgres://... runs it on PostgreSQL.
# Wrap a run in `flock /tmp/steward-bench.lock` on a shared machine.
set -u
export STEWARD_ALLOW_ROOT=${STEWARD_ALLOW_ROOT-true}
export STEWARD_WORKERS=1
cd "$(dirname "$0")/.." || exit 1
BIN=${STEWARD_BIN:-build/steward}
N=${N:-50000}
SUBS=${SUBS:-10}
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/policies/billing"
cp policies/billing/usage.lua policies/billing/subscriptions.lua "$tmp/policies/billing/"
cat > "$tmp/steward.lua" <<CFG
return { listen = "127.0.0.1:$port", store = "${STORE:-sqlite:$tmp/steward.db}", policies = "$tmp/policies",
         var_dir = "$tmp/var", admin_socket = "$tmp/var/steward.sock", log_level = "warn",
         grants = { ["billing.usage"] = { billing = true }, ["billing.subscriptions"] = { billing = true } },
         tenants = { plans = { basic = {} } } }
CFG
"$BIN" run -c "$tmp/steward.lua" 2>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 200); do [ -f "$tmp/var/admin.token" ] && curl -s "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
TOKEN=$(cat "$tmp/var/admin.token")
/usr/bin/python3 - "$port" "$TOKEN" "$N" "$SUBS" "$BIN" "$tmp/var/steward.sock" <<'PY'
import http.client, json, subprocess, sys, time
port, token, n, subs, binary, sock = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
c = http.client.HTTPConnection("127.0.0.1", int(port))
H = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(method, path, body=None):
    c.request(method, path, json.dumps(body) if body is not None else None, H)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")
call("POST", "/v1/tenants", {"id": "bench", "name": "Bench"})
while call("GET", "/v1/tenants/bench")[1].get("state") != "active":
    time.sleep(0.05)
call("POST", "/v1/billing/metrics", {"code": "calls", "aggregation": "sum", "field": "n"})
call("POST", "/v1/billing/plans", {"code": "p", "interval": "monthly", "amount": "10"})
ids = [call("POST", "/v1/billing/subscriptions", {"tenant": "bench", "plan": "p"})[1]["subscription"]["id"] for _ in range(subs)]
time.sleep(1.1)
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))
t0 = time.time()
acked = 0
for first in range(0, n, 1000):
    batch = [{"transaction_id": "tx-%d" % i, "subscription": ids[i % subs], "code": "calls", "timestamp": now,
              "properties": {"n": "%d.%02d" % (i % 100, i % 97)}} for i in range(first, min(n, first + 1000))]
    st, body = call("POST", "/v1/billing/usage", {"events": batch})
    if st >= 300: sys.exit("POST /v1/billing/usage: %d %s" % (st, body))
    acked += body["accepted"]
t1 = time.time()
def recorded():
    code = "local u = require('steward.billing.usage'); local n = 0; for _, s in ipairs(%s) do n = n + u.count{subscription = s} end; return n" % (
        "{" + ",".join('"%s"' % s for s in ids) + "}")
    out = subprocess.run([binary, "eval", "--socket", sock, code], capture_output=True, text=True).stdout.strip()
    return int(out or 0)
while recorded() < acked:
    time.sleep(0.2)
t2 = time.time()
print("%-44s %14s  %s" % ("billing usage: acknowledged (POST, 1000/batch)", "%.0f ev/s" % (acked / (t1 - t0)), "%d events" % acked))
print("%-44s %14s  %s" % ("billing usage: recorded by billing.usage", "%.0f ev/s" % (acked / (t2 - t0)), "%d subscriptions" % subs))
PY
