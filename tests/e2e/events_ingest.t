#!/bin/bash
# POST /v1/events through the C ingest path (bindings/ingest.c), end to end: a batch is taken
# by C (steward_ingest_requests_total{path="c"}), ids and duplicates come back in order, the
# events are stored with their fields and handled by a policy with the same event table the
# reference path gave; a tenant token's events get its tenant; an invalid batch goes to the
# reference path, which names the bad item. Then kill -9 under load: every 202 is in the log.
set -u
. "$(dirname "$0")/../support/daemon.sh"
export RECORD_FILE="$D/handled.txt"
cat > "$D/policies/record.lua" <<'POL'
local fs = require "steward.fs"
local json = require "steward.json"
return { capabilities = { "fs.read", "fs.write" }, name = "ingest.record", on = { "ingest.*" },
  handle = function(ev)
    local line = json.encode({ id = ev.id, seq = ev.seq, type = ev.type, tenant = ev.tenant or json.null,
      source = ev.source or json.null, time = ev.time, data = ev.data })
    assert(fs.write(os.getenv("RECORD_FILE"), line .. "\n", { append = true }))
  end }
POL
daemon_config ''
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon started"; exit 1; }

/usr/bin/python3 - "$PORT" "$TOKEN" "$RECORD_FILE" "$D/n" <<'PY'
import json, sys, time, urllib.request, urllib.error
port, token, record = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"
n = 0
def ok(cond, name, detail=""):
    global n
    n += 1
    print(("ok" if cond else "not ok"), n, "-", name)
    if not cond and detail:
        print("#", str(detail).replace("\n", "\n# "))
def call(method, path, body=None, tok=token):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
        headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
def path_count(p):
    _, text = call("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith('steward_ingest_requests_total{path="%s"}' % p):
            return float(line.split()[-1])
    return 0.0

c0, r0 = path_count("c"), path_count("reference")
body = (b'[{"id":"e1","type":"ingest.one","tenant":"acme","source":"spec","time":"2024-05-01T10:00:00Z",'
        b'"data":{"k":"v","n":[1,2.5,{"z":null}],"e":[]}},'
        b'{"id":"e1","type":"ingest.one"},{"type":"ingest.two","time":1700000000.5}]')
st, text = call("POST", "/v1/events", body)
res = json.loads(text)
ok(st == 202, "a batch is accepted (202)", text)
ok(res.get("accepted") == 2 and res.get("duplicates") == 1, "2 accepted, the repeated id a duplicate", res)
ids = res.get("ids", [])
ok(len(ids) == 3 and ids[0] == "e1" and ids[1] == "e1" and len(ids[2]) == 36, "ids in order; a UUID for the event without id", ids)
ok(path_count("c") == c0 + 1 and path_count("reference") == r0, "the C path took it")

st, text = call("GET", "/v1/events?type=ingest.one")
evs = json.loads(text).get("events", [])
e1 = evs[0] if evs else {}
ok(len(evs) == 1 and e1.get("tenant") == "acme" and e1.get("source") == "spec" and e1.get("time") == 1714557600,
   "the stored event has its fields (RFC 3339 time in seconds)", text)
ok(e1.get("data") == {"k": "v", "n": [1, 2.5, {}], "e": []} or e1.get("data") == {"k": "v", "n": [1, 2.5, {"z": None}], "e": []},
   "and its data", e1.get("data"))

def handled(count):
    deadline = time.time() + 30
    lines = []
    while time.time() < deadline:
        try:
            lines = [json.loads(l) for l in open(record) if l.strip()]
        except FileNotFoundError:
            lines = []
        if len(lines) >= count:
            break
        time.sleep(0.05)
    return lines
lines = handled(2)
by = {l["type"]: l for l in lines}
one, two = by.get("ingest.one", {}), by.get("ingest.two", {})
ok(len(lines) == 2, "the policy handled both new events, once each", lines)
ok(one.get("id") == "e1" and one.get("tenant") == "acme" and one.get("data", {}).get("k") == "v"
   and one.get("data", {}).get("e") == [] and isinstance(one.get("seq"), int), "the handler saw the event's fields, data and seq", one)
ok(two.get("time") == 1700000000.5 and two.get("tenant") is None and two.get("data") == {}, "an event without data or tenant", two)

# An invalid batch: the reference path answers and names the item.
st, text = call("POST", "/v1/events", [{"type": "ingest.ok"}, {"type": "Bad Type"}])
err = json.loads(text).get("error", {})
errs = (err.get("details") or {}).get("errors", [])
ok(st == 400 and err.get("code") == "invalid_events" and errs and errs[0].get("index") == 1 and errs[0].get("field") == "type",
   "an invalid batch: 400 naming index 1, field type", text)
ok(path_count("reference") == r0 + 1, "it took the reference path")
st, text = call("GET", "/v1/events?type=ingest.ok")
ok(json.loads(text).get("events") == [], "none of that batch was stored")

# A tenant token: its events get its tenant; another tenant's event is refused whole.
st, text = call("POST", "/v1/tokens", {"role": "ingest", "tenant": "t1", "name": "t1-ingest"})
tok = json.loads(text).get("token", "")
st, text = call("POST", "/v1/events", {"id": "t1-a", "type": "ingest.tenant"}, tok)
ok(st == 202, "a tenant token's event is accepted", text)
st, text = call("GET", "/v1/events?type=ingest.tenant")
evs = json.loads(text).get("events", [])
ok(len(evs) == 1 and evs[0].get("tenant") == "t1", "and stored with the token's tenant", text)
st, text = call("POST", "/v1/events", [{"id": "t1-b", "type": "ingest.tenant"}, {"id": "t2-a", "type": "ingest.tenant", "tenant": "t2"}], tok)
ok(st == 403, "an event of another tenant: 403 for the whole batch", text)
open(sys.argv[4], "w").write(str(n))
PY
rc=$?
n=$(cat "$D/n")

# kill -9 under load: every event acknowledged (202) before the kill is in the log after it.
/usr/bin/python3 - "$PORT" "$TOKEN" "$D/acked.txt" <<'PY' &
import json, sys, threading, urllib.request
port, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
f = open(out, "a", buffering=1)
def worker(w):
    i = 0
    while True:
        ids = [f"k{w}-{i}-{j}" for j in range(20)]
        body = json.dumps([{"id": x, "type": "load.x", "data": {"i": i}} for x in ids]).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=body,
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            if urllib.request.urlopen(req, timeout=10).status == 202:
                with lock:
                    f.write("\n".join(ids) + "\n")
        except Exception:
            return
        i += 1
ts = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
for t in ts: t.start()
for t in ts: t.join()
PY
load=$!
touch "$D/acked.txt"
for _ in $(seq 200); do [ "$(wc -l < "$D/acked.txt" 2>/dev/null || echo 0)" -ge 2000 ] && break; sleep 0.05; done
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
wait "$load"
acked=$(sort -u "$D/acked.txt" | wc -l)
n=$((n + 1))
daemon_start || { echo "not ok $n - the daemon restarted"; echo "1..$n"; exit 1; }
missing=$(/usr/bin/python3 - "$PORT" "$TOKEN" "$D/acked.txt" <<'PY'
import json, sys, urllib.request
port, token, acked = sys.argv[1], sys.argv[2], sys.argv[3]
want = set(l.strip() for l in open(acked) if l.strip())
have, cursor = set(), None
while True:
    q = "/v1/events?type=load.x&limit=1000" + (f"&cursor={cursor}" if cursor else "")
    req = urllib.request.Request(f"http://127.0.0.1:{port}{q}", headers={"Authorization": "Bearer " + token})
    page = json.loads(urllib.request.urlopen(req, timeout=30).read())
    have.update(e["id"] for e in page["events"])
    cursor = page.get("next_cursor")
    if not cursor: break
print(len(want - have))
PY
)
if [ "$acked" -gt 0 ] && [ "$missing" = 0 ]; then
    echo "ok $n - kill -9 under load: all $acked acknowledged events are in the log"
else
    echo "not ok $n - kill -9 under load: $missing of $acked acknowledged events missing"; rc=1
fi
daemon_stop
n=$((n + 1))
if grep -q "Sanitizer\|runtime error" "$D/log"; then echo "not ok $n - no sanitizer reports"; rc=1; else echo "ok $n - no sanitizer reports"; fi
echo "1..$n"
exit $rc
