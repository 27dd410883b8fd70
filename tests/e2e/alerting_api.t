#!/bin/bash
# The Alertmanager API v2 of steward run (steward.alerting.api): alerts posted with curl as
# Prometheus posts them, re-sends, resolution by endsAt and by timeout, the alert.firing /
# alert.resolved events (once per transition, also under concurrent re-sends, and handed to
# policies), validation errors, authentication, and amtool querying alerts and silences.
# ALERTING_STORE=pg runs it all on a throwaway PostgreSQL (tests/support/pg.sh).
set -u
. "$(dirname "$0")/../support/daemon.sh"
if ! command -v amtool >/dev/null 2>&1; then
    echo "1..0 # SKIP amtool not installed (Debian package prometheus-alertmanager)"
    exit 0
fi
if [ "${ALERTING_STORE:-}" = pg ]; then
    . "$here/tests/support/pg.sh"
    trap 'daemon_cleanup; pg_stop' EXIT
    pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
    export STEWARD_TEST_STORE=$PG_URL
fi
export RECORD_FILE="$D/handled"
: > "$RECORD_FILE"
cat > "$D/policies/alerts.lua" <<'POL'
-- Records each alert event the dispatcher hands over: "type fingerprint".
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" },
  name = "test.alerts", on = { "alert.*" },
  handle = function(ev)
    assert(fs.write(os.getenv("RECORD_FILE"), ev.type .. " " .. ev.data.fingerprint .. "\n", { append = true }))
  end,
}
POL

n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { n=$((n + 1)); if [ "$1" = "$2" ]; then echo "ok $n - $3"; else echo "not ok $n - $3"; echo "#   got:      '$1'"; echo "#   expected: '$2'"; fi; }

daemon_config ""
daemon_start || { echo "1..0 # SKIP daemon did not start"; exit 1; }
URL="http://127.0.0.1:$PORT"
AUTH="authorization: Bearer $TOKEN"
post() { curl -s -o "$D/body" -w '%{http_code}' -H "$AUTH" -H 'content-type: application/json' -d "$2" "$URL$1"; }
get() { curl -s -H "$AUTH" "$URL$1"; }
# count TYPE FINGERPRINT: events of that type for that alert in the log
count() {
    get "/v1/events?type=$1&limit=1000" | jx 'len([e for e in d["events"] if e["data"]["fingerprint"] == arg[0]])' "$2"
}
iso() { date -u -d "$1" +%Y-%m-%dT%H:%M:%S.000Z; }

echo "1..45"

# ---- posting, identity, re-sends ----
T0=$(iso "-1 hour")
is "$(post /api/v2/alerts "[{\"labels\":{\"alertname\":\"DiskFull\",\"instance\":\"db1\"},\"annotations\":{\"summary\":\"disk full\"},\"generatorURL\":\"http://prom/graph\",\"startsAt\":\"$T0\"}]")" 200 "POST /api/v2/alerts accepts a firing alert"
FP=$("$BIN" eval --local 'return require("steward.alerting.fingerprint").of({alertname="DiskFull", instance="db1"})' | tr -d '"')
first=$(get /api/v2/alerts)
is "$(echo "$first" | jx 'd[0]["fingerprint"]')" "$FP" "the alert is identified by its label-set fingerprint"
is "$(echo "$first" | jx '" ".join([d[0]["status"]["state"], d[0]["receivers"][0]["name"], d[0]["annotations"]["summary"], d[0]["generatorURL"]])')" \
   "active steward disk full http://prom/graph" "GET returns Alertmanager's gettableAlert shape"
starts=$(echo "$first" | jx 'd[0]["startsAt"]'); ends=$(echo "$first" | jx 'd[0]["endsAt"]')
updated=$(echo "$first" | jx 'd[0]["updatedAt"]')
is "$starts" "$T0" "startsAt is the one sent"
delta=$(( $(date -u -d "$ends" +%s) - $(date -u -d "$updated" +%s) ))
ok $([ "$delta" -ge 299 ] && [ "$delta" -le 301 ] && echo 0 || echo 1) "endsAt defaults to now + resolve_timeout (5m): $updated .. $ends"
is "$(count alert.firing "$FP")" 1 "a new alert is one alert.firing event"
# Let the clock move so that an extended endsAt is visibly later.
sleep 1.1
is "$(post /api/v2/alerts '[{"labels":{"alertname":"DiskFull","instance":"db1"},"annotations":{"summary":"still full"}}]')" 200 "a re-send is accepted"
second=$(get /api/v2/alerts)
is "$(echo "$second" | jx 'd[0]["startsAt"]')" "$starts" "a re-send keeps startsAt"
ok $([[ "$(echo "$second" | jx 'd[0]["endsAt"]')" > "$ends" ]] && echo 0 || echo 1) "a re-send extends endsAt"
is "$(echo "$second" | jx 'd[0]["annotations"]["summary"]')" "still full" "a re-send updates the annotations"
is "$(echo "$second" | jx 'len(d)')" 1 "still one alert"
is "$(count alert.firing "$FP")" 1 "a re-send of a firing alert is no new event"

# ---- concurrent first sends: one transition, one event ----
FP2=$("$BIN" eval --local 'return require("steward.alerting.fingerprint").of({alertname="Race"})' | tr -d '"')
pids=()
for i in $(seq 20); do
    curl -s -o /dev/null -w '%{http_code}\n' -H "$AUTH" -d '[{"labels":{"alertname":"Race"}}]' "$URL/api/v2/alerts" > "$D/race.$i" &
    pids+=($!)
done
wait "${pids[@]}" # not a bare wait: the daemon is a child too
is "$(cat "$D"/race.* | sort | uniq -c | tr -s ' ')" " 20 200" "the 20 concurrent sends all succeed"
is "$(count alert.firing "$FP2")" 1 "20 concurrent first sends of one alert: exactly one alert.firing"

# ---- resolution ----
past=$(iso "-10 seconds")
is "$(post /api/v2/alerts "[{\"labels\":{\"alertname\":\"DiskFull\",\"instance\":\"db1\"},\"startsAt\":\"$starts\",\"endsAt\":\"$past\"}]")" 200 "a resolved alert (endsAt in the past) is accepted"
is "$(get /api/v2/alerts | jx 'len([a for a in d if a["fingerprint"] == arg[0]])' "$FP")" 0 "a resolved alert is no longer listed"
is "$(count alert.resolved "$FP")" 1 "the resolution is one alert.resolved event"
post /api/v2/alerts "[{\"labels\":{\"alertname\":\"DiskFull\",\"instance\":\"db1\"},\"startsAt\":\"$starts\",\"endsAt\":\"$past\"}]" >/dev/null
is "$(count alert.resolved "$FP")" 1 "re-sending the resolution is no second event"
resolved=$(get "/v1/events?type=alert.resolved" | jx '[(e["data"]["status"], e["data"]["labels"]["alertname"], e["data"]["startsAt"]) for e in d["events"] if e["data"]["fingerprint"] == arg[0]][0]' "$FP")
is "$resolved" "[\"resolved\",\"DiskFull\",\"$starts\"]" "alert.resolved carries the alert with its fingerprint"
# An alert whose endsAt passes without a re-send is resolved by the background sweep.
FP3=$("$BIN" eval --local 'return require("steward.alerting.fingerprint").of({alertname="Short"})' | tr -d '"')
# endsAt 3 s ahead (whole seconds): in the future when posted, even on a loaded machine.
post /api/v2/alerts "[{\"labels\":{\"alertname\":\"Short\"},\"endsAt\":\"$(iso "+3 seconds")\"}]" >/dev/null
got=0
for _ in $(seq 150); do got=$(count alert.resolved "$FP3"); [ "$got" = 1 ] && break; sleep 0.1; done
is "$got" 1 "an alert whose endsAt passed is announced resolved once"
is "$(count alert.firing "$FP3")" 1 "... after its one alert.firing"
for _ in $(seq 100); do [ "$(grep -c "$FP3" "$RECORD_FILE")" = 2 ] && break; sleep 0.1; done
is "$(grep "$FP3" "$RECORD_FILE" | tr '\n' ';')" "alert.firing $FP3;alert.resolved $FP3;" "a policy on alert.* handles both events"

# ---- validation ----
code=$(post /api/v2/alerts '[{"labels":{}},{"labels":{"bad-name":"x"}},{"labels":{"a":"b"},"startsAt":"2026-01-02T00:00:00Z","endsAt":"2026-01-01T00:00:00Z"},{"annotations":{}}]')
is "$code" 400 "invalid alerts are a 400"
is "$(jx d <"$D/body")" '[0].labels: at least one label pair required; [1].labels: invalid label set: invalid name "bad-name"; [2].endsAt: start time must be before end time; [3].labels: labels in body is required' \
   "the 400 names each alert and field"
is "$(post /api/v2/alerts '{"labels":{"a":"b"}}')" 400 "a body that is not an array is a 400"
is "$(curl -s -o /dev/null -w '%{http_code}' -d '[{"labels":{"a":"b"}}]' "$URL/api/v2/alerts")" 401 "no token: 401"
ING=$(curl -s -H "$AUTH" -d '{"role":"ingest"}' "$URL/v1/tokens" | jx 'd["token"]')
is "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $ING" -d '[{"labels":{"alertname":"ViaIngest"}}]' "$URL/api/v2/alerts")" 200 "an ingest token may post alerts"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $ING" "$URL/api/v2/alerts")" 403 "... but not read them"
TEN=$(curl -s -H "$AUTH" -d '{"role":"operator","tenant":"acme"}' "$URL/v1/tokens" | jx 'd["token"]')
is "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TEN" "$URL/api/v2/alerts")" 403 "a tenant's token is refused: alerts are shared by all tenants"
is "$(get /api/v2/status | jx 'd["cluster"]["status"] + " " + d["config"]["original"] + ("true" if len(d["uptime"]) > 0 else "false")')" "ready true" "GET /api/v2/status"

# ---- amtool ----
printf 'authorization:\n  type: Bearer\n  credentials: %s\n' "$TOKEN" > "$D/http.yml"
AM="amtool --alertmanager.url=$URL --http.config.file=$D/http.yml"
post /api/v2/alerts '[{"labels":{"alertname":"HighLatency","service":"api"},"annotations":{"summary":"p99 > 1s"}}]' >/dev/null
ok $($AM alert query alertname=HighLatency 2>&1 | grep -q "p99 > 1s" && echo 0 || echo 1) "amtool alert query lists a posted alert"
SID=$($AM silence add alertname=HighLatency -c maintenance -a tester -d 1h 2>&1)
ok $([[ "$SID" =~ ^[0-9a-f-]{36}$ ]] && echo 0 || echo 1) "amtool silence add returns an id ($SID)"
ok $($AM silence query 2>&1 | grep "$SID" | grep -q maintenance && echo 0 || echo 1) "amtool silence query lists the silence"
ok $($AM alert query alertname=HighLatency 2>&1 | grep -q HighLatency && echo 1 || echo 0) "the silenced alert leaves amtool's default alert query"
is "$(get /api/v2/alerts?filter=alertname%3DHighLatency | jx 'd[0]["status"]["state"] + " " + d[0]["status"]["silencedBy"][0]')" "suppressed $SID" "GET shows the alert suppressed by the silence"
ok $($AM cluster show 2>&1 | grep -q "Cluster Status: *ready" && echo 0 || echo 1) "amtool cluster show reads the status"
$AM silence expire "$SID" >/dev/null 2>&1
ok $? "amtool silence expire"
ok $($AM silence query --expired 2>&1 | grep -q "$SID" && echo 0 || echo 1) "the silence is expired"
ok $($AM alert query alertname=HighLatency 2>&1 | grep -q "p99 > 1s" && echo 0 || echo 1) "the alert is listed again"
is "$(post /api/v2/silences "{\"matchers\":[{\"name\":\"a\",\"value\":\"b\",\"isRegex\":false}],\"startsAt\":\"$(iso "-2 hours")\",\"endsAt\":\"$(iso "-1 hour")\",\"createdBy\":\"t\",\"comment\":\"c\"}") $(jx d <"$D/body")" \
   "400 Failed to create silence: end time can't be in the past" "a silence ending in the past is refused as Alertmanager does"
# Updates: in place when Alertmanager allows it, else a new silence replacing the old one.
sil() { echo "{$1\"matchers\":[{\"name\":\"$2\",\"value\":\"x\",\"isRegex\":false}],\"startsAt\":\"$(iso "-1 minute")\",\"endsAt\":\"$(iso "+1 hour")\",\"createdBy\":\"t\",\"comment\":\"$3\"}"; }
post /api/v2/silences "$(sil "" job first)" >/dev/null
S1=$(jx 'd["silenceID"]' <"$D/body")
started=$(get "/api/v2/silence/$S1" | jx 'd["startsAt"]')
post /api/v2/silences "$(sil "\"id\":\"$S1\"," job second | sed "s/\"startsAt\":\"[^\"]*\"/\"startsAt\":\"$started\"/")" >/dev/null
is "$(jx 'd["silenceID"]' <"$D/body") $(get "/api/v2/silence/$S1" | jx 'd["comment"] + " " + d["status"]["state"]')" "$S1 second active" "an active silence's comment is updated in place"
post /api/v2/silences "$(sil "\"id\":\"$S1\"," other third)" >/dev/null
S2=$(jx 'd["silenceID"]' <"$D/body")
ok $([ "$S2" != "$S1" ] && [ "$S2" != null ] && echo 0 || echo 1) "changed matchers make a new silence"
is "$(get "/api/v2/silence/$S1" | jx 'd["status"]["state"]') $(get "/api/v2/silence/$S2" | jx 'd["status"]["state"]')" "expired active" "... and expire the old one"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$URL/api/v2/silence/00000000-0000-0000-0000-000000000000")" 404 "an unknown silence is a 404"

daemon_stop
is "$DSTATUS" 0 "the daemon stops cleanly"
