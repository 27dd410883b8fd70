#!/bin/bash
# docs/alerting.md, "From Prometheus to a phone", followed step by step: the shipped policies
# and configuration, the page's own config lines, token command, prometheus.yml and rules.yml
# (taken from the page; only ports, paths and the 15s/1m timings are changed), a real
# Prometheus 2.42 evaluating the rule against a dead exporter and posting to steward, the
# incident, the SMS at a local Twilio-compatible receiver (tests/support/notify_receiver.py),
# and the acknowledgement through the signed link in the SMS.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/prometheus.sh"
if [ ! -x "$PROM_BIN" ]; then echo "1..0 # SKIP prometheus not installed (Debian package prometheus)"; exit 0; fi
trap 'prom_stop; daemon_cleanup' EXIT

# block NAME: the code block after "<!-- walkthrough: NAME -->" in docs/alerting.md
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/alerting.md"
}

receiver_start

echo "1..10"
# Step 1: the shipped policies and configuration.
cp -r "$here/policies/alerting" "$D/policies/alerting"
mkdir -p "$D/policies/lib/alerting"
# Step 2: the page's lines, just before the final `return config`; then, for this test only,
# the page's SMS channel points at the local receiver instead of Twilio (the shipped file's
# own receivers and channels write to the daemon's log).
cfg="$D/policies/lib/alerting/config.lua"
sed '$d' "$here/policies/lib/alerting/config.lua" > "$cfg"
[ "$(tail -n 1 "$here/policies/lib/alerting/config.lua")" = "return config" ] || echo "# the shipped config does not end in 'return config'"
block config >> "$cfg"
cat >> "$cfg" <<CFG
config.channels.sms.base_url = "$R"
return config
CFG
[ -n "$(block config)" ] && grep -q 'config.users.ana.phone' "$cfg" && echo "ok 1 - the page's config lines go into the shipped configuration" \
    || echo "not ok 1 - the page's config lines go into the shipped configuration"

daemon_config ""
if "$BIN" check -c "$D/steward.lua" >"$D/check.out" 2>&1 && daemon_start; then
    echo "ok 2 - steward check accepts it and the daemon starts with the shipped policies"
else echo "not ok 2 - steward check accepts it and the daemon starts with the shipped policies"; sed 's/^/# /' "$D/check.out"; exit 1; fi

# Step 3: the token command, run in the daemon's directory (var/admin.token), on its port.
mkdir -p "$D/run" && ln -s "$D/var" "$D/run/var"
(cd "$D/run" && eval "$(block token | sed "s/127.0.0.1:8080/127.0.0.1:$PORT/")")
ptoken=$(cat "$D/run/var/prometheus.token" 2>/dev/null)
pmode=$(stat -c %a "$D/run/var/prometheus.token" 2>/dev/null)
case "$pmode:$ptoken" in 600:stw_*) echo "ok 3 - the token command writes an ingest token for Prometheus into var/, mode 0600" ;;
  *) echo "not ok 3 - the token command writes an ingest token for Prometheus into var/, mode 0600 (got $pmode '$ptoken')" ;; esac

# Step 4: Prometheus with the page's files; 15s intervals and `for: 1m` shortened, the
# exporter's port one nothing listens on.
DEAD=$(prom_free_port)
block prometheus.yml | sed -e "s/15s/1s/g" -e "s/127.0.0.1:8080/127.0.0.1:$PORT/" -e "s/127.0.0.1:9187/127.0.0.1:$DEAD/" \
    -e "s#\[ rules.yml \]#[ \"$D/run/rules.yml\" ]#" -e "s#credentials_file: var/prometheus.token#credentials_file: $D/run/var/prometheus.token#" > "$D/run/prometheus.yml"
block rules.yml | sed -e "s/for: 1m/for: 0s/" > "$D/run/rules.yml"
if prom_start "$D/run/prometheus.yml"; then echo "ok 4 - Prometheus starts with the page's prometheus.yml and rules.yml"
else echo "not ok 4 - Prometheus starts with the page's prometheus.yml and rules.yml"; exit 1; fi

# Step 5: the page. Prometheus posts DatabaseDown; group_wait 10 s; the incident pages ana.
if curl -sf "$R/_control/wait?route=twilio&n=1&timeout=60" >/dev/null; then
    echo "ok 5 - an SMS goes out through the Twilio API"
else echo "not ok 5 - an SMS goes out through the Twilio API"; sed 's/^/# /' "$D/log" | grep -i -E "warn|error" | head -20; exit 1; fi
sms=$(curl -sf "$R/_control/requests?route=twilio")
to=$(echo "$sms" | jx 'd[0]["form"]["To"]')
body=$(echo "$sms" | jx 'd[0]["form"]["Body"]')
[ "$to" = "+15551234567" ] && echo "ok 6 - to the phone of whoever is on call" || echo "not ok 6 - to the phone of whoever is on call (got $to)"
case "$body" in
  *"of orders-db is down"*"service database"*"Acknowledge: http"*) echo "ok 7 - the SMS says what is down and carries the acknowledge link" ;;
  *) echo "not ok 7 - the SMS says what is down and carries the acknowledge link"; echo "$body" | sed 's/^/# /' ;;
esac

auth="Authorization: Bearer $TOKEN"
inc=$(curl -s -H "$auth" "http://127.0.0.1:$PORT/v1/incidents?state=open")
id=$(echo "$inc" | jx 'd["incidents"][0]["id"]')
svc=$(echo "$inc" | jx '"%s %s %s" % (d["incidents"][0]["service"], d["incidents"][0]["state"], d["incidents"][0]["labels"]["alertname"])')
[ "$svc" = "database triggered DatabaseDown" ] && echo "ok 8 - GET /v1/incidents shows the triggered incident" \
    || echo "not ok 8 - GET /v1/incidents shows the triggered incident (got $svc)"

# Opening the link shows a confirmation page; confirming (its form's POST) acknowledges.
link=$(echo "$body" | sed -n 's/^Acknowledge: //p' | tr -d '\r')
page=$(curl -s -o "$D/confirm.html" -w '%{http_code}' "$link")
post=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$link")
state=$(curl -s -H "$auth" "http://127.0.0.1:$PORT/v1/incidents/$id" | jx '(d.get("incident") or d)["state"]')
[ "$page" = 200 ] && grep -qi "<form" "$D/confirm.html" && [ "$state" = acknowledged ] \
    && echo "ok 9 - the link's confirmation page acknowledges the incident" \
    || echo "not ok 9 - the link's confirmation page acknowledges the incident (GET $page, POST $post, state $state)"

m=$(curl -s -H "$auth" "http://127.0.0.1:$PORT/metrics" | grep -c '^steward_incident_ack_seconds_count{service="database"} 1')
[ "$m" = 1 ] && echo "ok 10 - /metrics counts the acknowledgement for MTTA" || echo "not ok 10 - /metrics counts the acknowledgement for MTTA"
prom_stop
daemon_stop
