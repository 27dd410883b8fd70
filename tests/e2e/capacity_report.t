#!/bin/bash
# Capacity reports and deferred jobs end to end (docs/scaling/capacity.md, docs/scaling/cost.md),
# on SQLite and then on PostgreSQL: a synthetic series (28 days hourly, a daily season over a
# trend, noise) is imported through the API; GET /v1/capacity/api states a saturation day whose
# interval holds the true one (computed from the noise-free curve) and warns, as the lead time
# is longer; the shipped scaling.capacity policy fires CapacityHorizon on a capacity.check; the
# REPL's capacity() shows the same; a job deferred under a short synthetic price schedule (a
# cheap minute soon, dear otherwise) is given the cheap slot, survives a kill -9 and a restart
# (deferring it again schedules nothing new) and fires once, at that slot.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
trap 'daemon_cleanup; pg_stop' EXIT

H="Authorization: Bearer "
api() { curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT$1" "${@:2}"; }
post() { curl -s -H "$H$TOKEN" -H "Content-Type: application/json" -X POST --data-binary "@$2" "http://127.0.0.1:$PORT$1"; }

mkdir -p "$D/policies/scaling"
cp "$here/policies/scaling/capacity.lua" "$D/policies/scaling/capacity.lua"

# The series, the true saturation day, and a cheap minute at least 15 s away (UTC).
gen() {
    /usr/bin/python3 - "$D" <<'PY'
import json, math, sys, time
d = sys.argv[1]
now = time.time()
t0 = now - 28 * 86400
seed = 12345
def noise():
    global seed
    seed = (seed * 1103515245 + 12345) % 2147483648
    return (seed / 2147483648 - 0.5) * 30
def truth(t):
    x = (t - t0) / 86400
    return 1000 + 20 * x + 200 * math.sin(2 * math.pi * x)
pts = [[t0 + i * 3600, truth(t0 + i * 3600) + noise()] for i in range(28 * 24)]
json.dump({"points": pts}, open(d + "/points.json", "w"))
t = now
while truth(t) < 2000:
    t += 60
cheap = (int(now) // 60 + 1) * 60
if cheap - now < 15:
    cheap += 60
g = time.gmtime(cheap)
print("%f %d %d %d %s" % ((t - now) / 86400, cheap, g.tm_min, g.tm_hour,
      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cheap + 120))))
PY
}

# run_backend NAME: the whole scenario on the store $STEWARD_TEST_STORE (unset: SQLite).
run_backend() {
    local b=$1
    rm -rf "$D/var" "$D/steward.db"*
    read -r TRUE_DAYS CHEAP MIN HOUR DEADLINE < <(gen)
    daemon_config "capacity = { services = { api = { metric = \"api:rps\", limit = { per_instance = 200, instances = 10 },
        lead_time = \"14d\" } } },
    costs = { currency = \"EUR\", prices = {
        { name = \"cheap\", cron = \"$MIN $HOUR * * *\", duration = \"1m\", instance_hour = \"0.01\" },
        { name = \"dear\", instance_hour = \"1.00\" } } },"
    daemon_start
    ok $? "$b: the daemon starts with the capacity and costs keys"

    local out
    out=$(post "/v1/capacity/series/api:rps" "$D/points.json")
    echo "$out" | jx 'd["rows"] == 672' >/dev/null
    ok $? "$b: 28 days of hourly points imported ($out)"

    out=$(api /v1/capacity/api)
    echo "$out" | jx 'd["horizon"]["low"] <= float(arg[0]) <= d["horizon"]["high"]' "$TRUE_DAYS" >/dev/null
    ok $? "$b: the true saturation day ($TRUE_DAYS) lies within the stated interval: $(echo "$out" | jx 'd["horizon"]')"
    echo "$out" | jx 'd["status"] == "warning" and d["alert"] is True and d["model"] == "holt_winters" and d["limit"] == 2000' >/dev/null
    ok $? "$b: a warning (limit 200 x 10 instances, within the 14 days lead time), by Holt-Winters"
    echo "$out" | jx 'd["error"]["mape"] < 5' >/dev/null
    ok $? "$b: the forecast's error is reported (MAPE $(echo "$out" | jx 'd["error"]["mape"]') %)"
    api /v1/capacity | jx 'len(d["services"]) == 1 and d["services"][0]["service"] == "api"' >/dev/null
    ok $? "$b: GET /v1/capacity lists the configured service"
    [ "$(api /v1/capacity/ghost -o /dev/null -w '%{http_code}')" = 404 ]
    ok $? "$b: an unknown service is 404"

    echo '{"type": "capacity.check"}' > "$D/check.json"
    post /v1/events "$D/check.json" >/dev/null
    # (the polls grep: a Python start-up every 50 ms would load the 2 shared cores)
    alert_fired() { api "/v1/events?type=alert.firing" | grep -q '"alertname":"CapacityHorizon"'; }
    wait_for 20 alert_fired
    api "/v1/events?type=alert.firing" | jx 'any(e["data"]["labels"]["alertname"] == "CapacityHorizon" and e["data"]["labels"]["service"] == "api" for e in d["events"])' >/dev/null
    ok $? "$b: scaling.capacity fires CapacityHorizon for api through the alerting pipeline"

    out=$("$BIN" eval --socket "$D/var/steward.sock" 'return tostring(capacity())' 2>&1)
    echo "$out" | grep -q "api *api:rps.*holt_winters *[0-9.]*% *warning"
    ok $? "$b: the REPL's capacity() shows the report"
    echo "#   $(echo "$out" | tail -1)"
    api /metrics | grep -q '^steward_capacity_horizon_days{service="api"} 1[0-9]\.'
    ok $? "$b: /metrics has steward_capacity_horizon_days{service=\"api\"}"

    cat > "$D/defer.json" <<JSON
{"name": "nightly-report", "duration": "30s", "deadline": "$DEADLINE", "event": {"type": "batch.report", "data": {"run": "$b"}}}
JSON
    out=$(post /v1/cost/defer "$D/defer.json")
    echo "$out" | jx 'd["price"] == "cheap" and d.get("existing") is not True' >/dev/null
    ok $? "$b: the deferred job gets the cheap slot ($out)"
    local start
    start=$(echo "$out" | jx 'd["start"]')
    [ "$start" = "$(date -u -d "@$CHEAP" +%Y-%m-%dT%H:%M:%SZ)" ]
    ok $? "$b: ... starting when the cheap price starts ($start)"

    kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
    daemon_start
    ok $? "$b: the daemon restarts after kill -9"
    out=$(post /v1/cost/defer "$D/defer.json")
    echo "$out" | jx 'd["existing"] is True and d["start"] == arg[0]' "$start" >/dev/null
    ok $? "$b: deferring it again schedules nothing new ($out)"
    api /v1/cost/deferred | jx 'len(d["jobs"]) == 1 and d["jobs"][0]["name"] == "nightly-report"' >/dev/null
    ok $? "$b: the job waits in /v1/cost/deferred"

    fired() { api "/v1/events?type=batch.report" | grep -q '"type":"batch.report"'; }
    wait_for 120 fired
    ok $? "$b: the job's event fires"
    out=$(api "/v1/events?type=batch.report")
    echo "$out" | jx 'len(d["events"]) == 1 and d["events"][0]["data"]["run"] == arg[0]' "$b" >/dev/null
    ok $? "$b: ... once"
    # A durable timer's event carries the time it was due.
    echo "$out" | jx 'abs(float(d["events"][0]["time"]) - int(arg[0])) < 1' "$CHEAP" >/dev/null
    ok $? "$b: ... at the cheap slot ($(echo "$out" | jx 'd["events"][0]["time"]'), the slot $CHEAP)"
    api /v1/cost/deferred | jx 'd["jobs"] == []' >/dev/null
    ok $? "$b: and no longer waits"
    daemon_stop
}

run_backend sqlite
pg_start || { n=$((n + 1)); echo "not ok $n - PostgreSQL starts"; echo "1..$n"; exit 1; }
export STEWARD_TEST_STORE=$PG_URL
run_backend postgres
echo "1..$n"
exit $fail
