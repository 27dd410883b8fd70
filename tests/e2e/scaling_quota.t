#!/bin/bash
# Quotas under a race (docs/scaling/quotas.md): a daemon with workers = 2 gets 50 parallel
# POST /v1/services/{name}/scale requests, each asking for one more instance of api or web,
# both of tenant acme (api's own quota 4, the tenant's 6). Exactly 6 answer 200, the other 44
# answer 409 naming the quota, and exactly 6 real processes run. A reservation left behind
# by a crash (reserved, never started) is released when the daemon comes back after kill -9,
# and the quota is whole again. SQLite here; tests/e2e/scaling_quota_pg.t runs it on
# PostgreSQL (QUOTA_PG=1). The shipped policy scaling.quota_alerts turns the refusals into an
# alert. A failed instance holds no quota; a reload applies a changed quota.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
export STEWARD_WORKERS=2
if [ -n "${QUOTA_PG:-}" ]; then
    . "$here/tests/support/pg.sh"
    pg_start || { echo "1..0 # SKIP PostgreSQL did not start"; exit 0; }
    export STEWARD_TEST_STORE=$PG_URL
fi
. "$here/tests/support/daemon.sh"
worker_pids() { [ -n "${DPID:-}" ] && ps -o pid= --ppid "$DPID" 2>/dev/null | tr -d ' '; }
cleanup_all() {
    cat "$D"/*.starts 2>/dev/null | while read -r pid _; do kill -9 "$pid" 2>/dev/null; done
    for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done
    daemon_cleanup
    [ -n "${QUOTA_PG:-}" ] && pg_stop
}
trap cleanup_all EXIT
echo "1..16"
api() { curl -s -m 60 -H "Authorization: Bearer $TOKEN" "$@"; }

base=$(( 10000 + RANDOM % 20000 ))
svc() { # svc NAME FIRST_PORT
    echo "$1 = { tenant = 'acme', run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}',
                 '--starts', '$D/$1.starts' }, instances = 1, ports = '$2-$(($2 + 19))' },
           stop = { grace = '5s' } },"
}
config() { # config TENANT_LIMIT
    daemon_config "
  services = { $(svc api $base) $(svc web $((base + 20)))
               crashy = { tenant = 'beta', run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}',
                          '--mode', 'crash' }, ports = '$((base + 40))-$((base + 49))' },
                          restart = { delay = '50ms', burst = 2, interval = '30s' } } },
  quotas = { services = { api = { instances = 4 } }, tenants = { acme = { instances = $1 }, beta = { instances = 1 } } },"
}
config 6
mkdir -p "$D/policies/scaling"
cp "$here/policies/scaling/quota_alerts.lua" "$D/policies/scaling/quota_alerts.lua"
daemon_start || exit 1

# burst FIRST LAST: one POST per i in FIRST..LAST at once (api for odd i, web for even),
# revision r<i>, one instance; prints [status, body] per request as JSON.
cat > "$D/burst.py" <<'EOF'
import concurrent.futures, json, sys, urllib.request, urllib.error
port, token, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def one(i):
    svc = "api" if i % 2 else "web"
    req = urllib.request.Request("http://127.0.0.1:%s/v1/services/%s/scale" % (port, svc),
        data=json.dumps({"revision": "r%d" % i, "instances": 1}).encode(), method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())]
with concurrent.futures.ThreadPoolExecutor(max_workers=last - first + 1) as ex:
    print(json.dumps(list(ex.map(one, range(first, last + 1)))))
EOF
burst() { /usr/bin/python3 "$D/burst.py" "$PORT" "$TOKEN" "$1" "$2"; }
# The processes of the services that are alive (svc_app.py writes "pid port" at each start).
alive() {
    local n=0
    for pid in $(cat "$D"/*.starts 2>/dev/null | cut -d' ' -f1); do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done
    echo $n
}
acme_used() { api "http://127.0.0.1:$PORT/v1/quotas" | jx '[q["used"]["instances"] for q in d["quotas"] if q["scope"] == "tenants.acme"][0]'; }

burst 1 50 > "$D/wave1.json"
ok200=$(jx 'len([r for r in d if r[0] == 200])' < "$D/wave1.json")
[ "$ok200" = 6 ]
ok $? "50 parallel scale-ups, quota 6: exactly 6 answered 200 (got $ok200; statuses $(jx 'sorted(set(r[0] for r in d))' < "$D/wave1.json"))"
jx 'all(r[0] == 409 and r[1]["error"]["code"] == "quota_exceeded" and r[1]["error"]["message"].startswith("quota exceeded: ")
       and r[1]["error"]["details"]["quota"] in ("tenants.acme.instances", "services.api.instances") for r in d if r[0] != 200)' \
    < "$D/wave1.json" >/dev/null
ok $? "the 44 others answered 409 quota_exceeded naming the quota ($(jx '[r[1]["error"]["message"] for r in d if r[0] != 200][0]' < "$D/wave1.json"))"
api_ok=$(jx 'len([r for r in d if r[0] == 200 and r[1]["service"] == "api"])' < "$D/wave1.json")
[ "$api_ok" -le 4 ]
ok $? "api, with its own quota of 4, got no more than 4 ($api_ok)"
started=$(cat "$D"/*.starts 2>/dev/null | wc -l)
wait_for 20 sh -c "[ \$(cat $D/*.starts 2>/dev/null | wc -l) -ge 6 ]"
[ "$(cat "$D"/*.starts | wc -l)" -eq 6 ] && [ "$(alive)" -eq 6 ]
ok $? "exactly 6 real processes were started and run (starts $(cat "$D"/*.starts | wc -l), alive $(alive); at the answer $started)"
[ "$(acme_used)" = 6 ]
ok $? "GET /v1/quotas: tenants.acme uses 6 instances ($(acme_used))"
api "http://127.0.0.1:$PORT/v1/events?type=quota.exceeded&limit=1" |
    jx 'd["events"][0]["data"]["quota"] in ("tenants.acme.instances", "services.api.instances") and d["events"][0]["data"]["limit"] > 0' >/dev/null
ok $? "a quota.exceeded event other policies see, with the quota and its limit"
wait_for 20 sh -c "curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/api/v2/alerts | /usr/bin/python3 $here/tests/support/jx.py 'any(a[\"labels\"][\"alertname\"] == \"QuotaExceeded\" and a[\"labels\"][\"tenant\"] == \"acme\" and a[\"status\"][\"state\"] == \"active\" for a in d)' >/dev/null"
ok $? "the shipped scaling.quota_alerts turned it into a QuotaExceeded alert"
api -H 'Content-Type: application/json' -d '{"revision":"r1","instances":"two"}' "http://127.0.0.1:$PORT/v1/services/api/scale" |
    jx 'd["error"]["message"] == "instances: an integer from 0 to 1000 expected"' >/dev/null
ok $? "a bad request is a 400 naming the field"

# Scale two of them down: their quota comes back.
down=$(jx '" ".join("%s:%s" % (r[1]["service"], r[1]["revision"]) for r in d if r[0] == 200)' < "$D/wave1.json")
set -- $down
for sr in "$1" "$2"; do
    api -H 'Content-Type: application/json' -d "{\"revision\":\"${sr#*:}\",\"instances\":0}" \
        "http://127.0.0.1:$PORT/v1/services/${sr%:*}/scale" >/dev/null
done
[ "$(acme_used)" = 4 ] && [ "$(alive)" -eq 4 ]
ok $? "scaled down to 0, two instances give their quota back (used $(acme_used), alive $(alive))"

# A crash between a reservation and its start: reserve one without starting it (what the
# supervisor does first), then kill -9 the daemon and its workers, then start it again.
"$BIN" eval --socket "$D/var/steward.sock" 'return (require("steward.scaling.quota").reserve("web", "ghost", 1))' >/dev/null
[ "$(acme_used)" = 5 ]
ok $? "a reservation without an instance holds quota while the daemon runs ($(acme_used))"
for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
daemon_start || exit 1
wait_for 30 sh -c "[ \"\$(curl -s -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/v1/quotas |
    /usr/bin/python3 $here/tests/support/jx.py '[q[\"used\"][\"instances\"] for q in d[\"quotas\"] if q[\"scope\"] == \"tenants.acme\"][0]')\" = 4 ]"
[ "$(acme_used)" = 4 ] && [ "$(alive)" -eq 4 ]
ok $? "after kill -9 and a restart, no leaked reservation: used $(acme_used) = the 4 instances alive ($(alive))"
burst 51 60 > "$D/wave2.json"
ok200=$(jx 'len([r for r in d if r[0] == 200])' < "$D/wave2.json")
wait_for 20 sh -c "[ \$(cat $D/*.starts 2>/dev/null | wc -l) -ge 8 ]"
[ "$ok200" = 2 ] && [ "$(alive)" -eq 6 ]
ok $? "10 more in parallel: exactly the 2 of room left succeed ($ok200), 6 processes run ($(alive))"
# A failed instance (its start limit hit) holds no quota: tenant beta's one place comes back.
beta_used() { api "http://127.0.0.1:$PORT/v1/quotas" | jx '[q["used"]["instances"] for q in d["quotas"] if q["scope"] == "tenants.beta"][0]'; }
api -H 'Content-Type: application/json' -d '{"revision":"c1","instances":1}' "http://127.0.0.1:$PORT/v1/services/crashy/scale" >/dev/null
crashy_failed() {
    api "http://127.0.0.1:$PORT/v1/services" |
        jx '[i["state"] for s in d["services"] if s["name"] == "crashy" for i in s["instances"]] == ["failed"]' >/dev/null
}
wait_for 30 crashy_failed && [ "$(beta_used)" = 0 ]
ok $? "an instance that failed (start limit) gives its quota back (tenants.beta used $(beta_used))"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"revision":"c2","instances":1}' "http://127.0.0.1:$PORT/v1/services/crashy/scale")
[ "$code" = 200 ]
ok $? "so another revision of crashy may start ($code)"

# A reload applies a new quota: the tenant's limit raised to 7 makes room for one more.
config 7
kill -HUP "$DPID"
scaled() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d '{"revision":"r99","instances":1}' "http://127.0.0.1:$PORT/v1/services/web/scale")" = 200 ]
}
wait_for 20 scaled && wait_for 20 sh -c "[ \$(cat $D/*.starts | wc -l) -ge 9 ]" && [ "$(alive)" -eq 7 ]
ok $? "a reload (SIGHUP) raises the tenant's quota to 7: one more starts, 7 run ($(alive))"
daemon_stop_within 20 && [ "$DSTATUS" -eq 0 ]
ok $? "SIGTERM ends the daemon and its workers, status 0 ($DSTATUS)"
exit $fail
