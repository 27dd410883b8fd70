#!/bin/bash
# A noisy neighbour (issue 17 §2): tenant "noisy" floods POST /v1/events far above its plan's
# rate while tenant "quiet" sends at a fraction of its own. Checked: the flooder is answered
# 429 (with Retry-After) for what is over its limit; every request of the quiet tenant is
# accepted (202) and each of its events is handled by its policy. (Latency figures are
# measured by bench/tenants_noisy.sh, never asserted here.)
set -u
. "$(dirname "$0")/../support/daemon.sh"
for t in noisy quiet; do
  mkdir -p "$D/policies/tenants/$t"
  cat > "$D/policies/tenants/$t/count.lua" <<'POL'
return { on = { "load.*" }, handle = function(ev) return ev.data.i end }
POL
done
daemon_config 'tenants = { default_plan = "basic",
    plans = { basic = { rate = { ingest = 20, burst = 20 } } } },'
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon starts"; exit 1; }
cat > "$D/load.py" <<'PY'
import http.client, json, sys, threading, time

port, admin = int(sys.argv[1]), sys.argv[2]


def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def post(c, path, token, body):
    c.request("POST", path, json.dumps(body), {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.getheader("Retry-After"), r.read()


c = conn()
tok = {}
for t in ("noisy", "quiet"):
    st, _, body = post(c, "/v1/tokens", admin, {"role": "ingest", "tenant": t, "name": t})
    tok[t] = json.loads(body)["token"]

SECS = 3.0
stop = time.monotonic() + SECS
flood = {"n": 0, "202": 0, "429": 0, "other": 0, "retry_after_ok": True}
lock = threading.Lock()


def flooder():
    fc = conn()
    i = 0
    while time.monotonic() < stop:
        i += 1
        st, ra, _ = post(fc, "/v1/events", tok["noisy"], {"type": "load.flood", "data": {"i": i}})
        with lock:
            flood["n"] += 1
            key = str(st) if st in (202, 429) else "other"
            flood[key] += 1
            if st == 429 and not (ra and ra.isdigit() and int(ra) >= 1):
                flood["retry_after_ok"] = False


threads = [threading.Thread(target=flooder) for _ in range(4)]
for th in threads:
    th.start()
quiet = {"sent": 0, "202": 0, "bad": []}
qc = conn()
i = 0
while time.monotonic() < stop:  # 5 requests/s, a quarter of its limit: pacing the load, not waiting for it
    i += 1
    st, _, body = post(qc, "/v1/events", tok["quiet"], {"id": f"quiet-{i}", "type": "load.quiet", "data": {"i": i}})
    quiet["sent"] += 1
    if st == 202:
        quiet["202"] += 1
    else:
        quiet["bad"].append((st, body[:200]))
    time.sleep(0.2)
for th in threads:
    th.join()
print(json.dumps({"flood": flood, "quiet": quiet, "secs": SECS}))
PY
/usr/bin/python3 "$D/load.py" "$PORT" "$TOKEN" > "$D/load.json"
sed 's/^/# /' "$D/load.json"
q() { jx "$1" < "$D/load.json" >/dev/null; }
q 'd["flood"]["n"] >= 10 * 20 * d["secs"]'; ok $? "the flooder sent at least 10x its limit ($(jx 'd["flood"]["n"]' < "$D/load.json") requests in 3 s against 20/s)"
q 'd["flood"]["429"] > 0 and d["flood"]["202"] <= 20 + 20 * (d["secs"] + 2) and d["flood"]["other"] == 0'
ok $? "it got 429 for what was over its limit, and at most its burst + rate x time accepted"
q 'd["flood"]["retry_after_ok"]'; ok $? "each 429 carried Retry-After in whole seconds"
q 'd["quiet"]["sent"] >= 5 and d["quiet"]["202"] == d["quiet"]["sent"]'; ok $? "every request of the quiet tenant was accepted (202)"
sent=$(jx 'd["quiet"]["sent"]' < "$D/load.json")
handled() {
  h=$(curl -s -H "Authorization: Bearer $TOKEN" "$B/v1/decisions?policy=tenants.quiet.count&outcome=ok&limit=1000" | jx 'len(d["decisions"])')
  [ "$h" = "$sent" ]
}
B="http://127.0.0.1:$PORT"
wait_for 30 handled; ok $? "every event of the quiet tenant was handled by its policy ($sent)"
n_accepted=$(jx 'd["flood"]["202"]' < "$D/load.json")
evs=$(curl -s -H "Authorization: Bearer $TOKEN" "$B/v1/events?tenant=noisy&type=load.flood&limit=1000" | jx 'len(d["events"])')
[ "$evs" = "$n_accepted" ]; ok $? "the log holds exactly the flooder's accepted events ($evs = $n_accepted): nothing refused was stored"
echo "1..$n"
daemon_stop
exit $fail
