#!/bin/bash
# Incidents end to end: the daemon with the shipped policies/alerting/incidents.lua and a test
# configuration (policies/lib/alerting/config.lua) paging through real receivers
# (tests/support/notify_receiver.py: Twilio SMS and Slack shapes, SMTP through aiosmtpd).
# An incident is opened by a policy (as the alerting engine does) and by the REPL; then:
# the HTTP API (list, show with timeline, ack/resolve/reassign, errors naming the field),
# signed links (GET answers a confirm page and changes nothing; the form's POST acts;
# tampered or expired links are refused), notification history, MTTA/MTTR in /metrics, and
# the audit entries of the actions.
set -u
. "$(dirname "$0")/../support/daemon.sh"
PY=/usr/bin/python3
RPID=
cleanup_all() {
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
    daemon_cleanup
}
trap cleanup_all EXIT

n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
H="Authorization: Bearer "
# j FILE EXPR: evaluates a Python expression over the JSON in FILE (bound to d)
j() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# the receivers: "HTTP_PORT SMTP_PORT" on the first line
mkfifo "$D/rport"
"$PY" "$here/tests/support/notify_receiver.py" > "$D/rport" &
RPID=$!
read -r HP SP < "$D/rport"
R="http://127.0.0.1:$HP"
ctl() { curl -s "$R/_control/$1"; }
wait_route() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$R/_control/wait?route=$1&n=$2&timeout=10")" = 200 ]; }

mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/incidents.lua" "$D/policies/alerting/incidents.lua"
cat > "$D/policies/lib/alerting/config.lua" <<CFG
return {
  users = {
    ana = { name = "Ana Lima", email = "ana@example.com", phone = "+15550100001", notify = { "sms", "email" } },
    bob = { phone = "+15550100002", notify = { "sms" } },
  },
  channels = {
    sms = { kind = "sms", account_sid = "AC0123456789abcdef0123456789abcdef", auth_token = "a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2",
            from = "+15550000000", base_url = "$R", retries = 1 },
    email = { kind = "email", url = "smtp://127.0.0.1:$SP", from = "steward@example.com", retries = 1 },
    ["slack-ops"] = { kind = "slack", webhook_url = "$R/slack/T0/B0/ops", retries = 1 },
  },
  escalation_policies = {
    ops = { rules = { { delay = "0s", targets = { { user = "ana" }, { channel = "slack-ops" } } },
                      { delay = "1h", targets = { { user = "bob" } } } } },
  },
}
CFG
# What the alerting engine does on an incident integration: open an incident.
cat > "$D/policies/page.lua" <<'POL'
local incidents = require "steward.alerting.incidents"
return {
  name = "alerting.page", capabilities = { "alerting" },
  on = { "page.requested" },
  handle = function(ev)
    assert(incidents.trigger({ key = ev.data.key, service = ev.data.service,
      title = ev.data.title, summary = ev.data.summary, escalation = ev.data.escalation, source = "page" }))
  end,
}
POL
daemon_config 'alerting = { link_secret_file = "'"$D"'/link.key" },'
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon starts"; exit 1; }
B="http://127.0.0.1:$PORT"

curl -s -o /dev/null -H "$H$TOKEN" -H 'Content-Type: application/json' \
  -d '{"type":"page.requested","data":{"key":"web/5xx","service":"web","title":"Web 5xx above 5%","summary":"checkout failing","escalation":"ops"}}' \
  "$B/v1/events"
wait_route twilio 1 && wait_route slack 1 && wait_route smtp 1
ok $? "the incident pages at once: SMS, email and Slack arrive"
ctl "requests?route=twilio" > "$D/sms.json"
[ "$(j "$D/sms.json" 'd[0]["form"]["To"]')" = "+15550100001" ] && [ "$(j "$D/sms.json" 'd[0]["valid"]')" = True ]
ok $? "the SMS goes to ana's phone, in Twilio's shape"
ctl "requests?route=smtp" > "$D/mail.json"
[ "$(j "$D/mail.json" 'd[0]["to"]')" = "['ana@example.com']" ]
ok $? "the email goes to ana's address"
ctl "requests?route=slack" > "$D/slack.json"
[ "$(j "$D/slack.json" 'd[0]["valid"]')" = True ] && j "$D/slack.json" 'd[0]["json"]["text"]' | grep "Web 5xx above 5%" >/dev/null
ok $? "the Slack channel gets a valid message with the title"

curl -s -H "$H$TOKEN" "$B/v1/incidents" > "$D/list.json"
ID=$(j "$D/list.json" 'd["incidents"][0]["id"]')
[ "$(j "$D/list.json" 'len(d["incidents"])')" = 1 ] && [ "$(j "$D/list.json" 'd["incidents"][0]["state"]')" = triggered ]
ok $? "GET /v1/incidents lists the triggered incident"
curl -s -H "$H$TOKEN" "$B/v1/incidents/$ID" > "$D/one.json"
[ "$(j "$D/one.json" '[e["kind"] for e in d["timeline"]].count("notification")')" = 3 ] &&
  [ "$(j "$D/one.json" 'd["timeline"][0]["kind"]')" = triggered ]
ok $? "GET /v1/incidents/{id}: the timeline has the trigger and the three notifications"
[ "$(j "$D/one.json" 'sorted((e["data"]["target"], e["data"]["channel"], e["data"]["outcome"]) for e in d["timeline"] if e["kind"] == "notification")')" = "[('channel:slack-ops', 'slack-ops', 'sent'), ('user:ana', 'email', 'sent'), ('user:ana', 'sms', 'sent')]" ]
ok $? "... each with target, channel and outcome"

# signed links: from the SMS body
ACK=$(j "$D/sms.json" 'd[0]["form"]["Body"]' | sed -n 's/^Acknowledge: //p')
RES=$(j "$D/sms.json" 'd[0]["form"]["Body"]' | sed -n 's/^Resolve: //p')
case "$ACK" in "http://127.0.0.1:$PORT/v1/incidents/$ID/ack?exp="*"&sig="*) r=0 ;; *) r=1 ;; esac
ok $r "the message carries the signed ack link ($ACK)"
code=$(curl -s -o "$D/page.html" -w '%{http_code}' "$ACK")
[ "$code" = 200 ] && grep -q '<form method="post"' "$D/page.html" && grep -q "Web 5xx above 5%" "$D/page.html"
ok $? "GET on the link answers a confirm page with a form (no token needed)"
curl -s -H "$H$TOKEN" "$B/v1/incidents/$ID" > "$D/one.json"
[ "$(j "$D/one.json" 'd["state"]')" = triggered ]
ok $? "... and changes nothing (link previewers cannot acknowledge)"
code=$(curl -s -o /dev/null -w '%{http_code}' "${ACK%?????}0000")
[ "$code" = 403 ]
ok $? "a tampered signature: 403"
code=$(curl -s -o /dev/null -w '%{http_code}' "$(echo "$ACK" | sed 's#/ack?#/resolve?#')")
[ "$code" = 403 ]
ok $? "the ack signature does not resolve: 403"
SIG=${ACK##*sig=}
code=$(curl -s -o "$D/done.html" -w '%{http_code}' --data-urlencode "sig=$SIG" "${ACK%%&sig=*}")
[ "$code" = 200 ] && grep -q "Acknowledged" "$D/done.html"
ok $? "the confirm form's POST acknowledges"
curl -s -H "$H$TOKEN" "$B/v1/incidents/$ID" > "$D/one.json"
[ "$(j "$D/one.json" 'd["state"]')" = acknowledged ] && [ "$(j "$D/one.json" 'd["acked_by"]')" = link ]
ok $? "the incident is acknowledged, by the link"
code=$(curl -s -o /dev/null -w '%{http_code}' --data-urlencode "sig=$SIG" "${ACK%%&sig=*}")
[ "$code" = 409 ]
ok $? "the same link again: 409, nothing to do"

# the token API
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST "$B/v1/incidents/$ID/resolve")
[ "$code" = 401 ]
ok $? "POST without a token or signature: 401"
V=$(curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"role":"viewer","name":"vic"}' "$B/v1/tokens" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$V" "$B/v1/incidents/$ID/resolve")
[ "$code" = 403 ]
ok $? "a viewer token may not resolve: 403"
OP=$(curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"role":"operator","name":"olga"}' "$B/v1/tokens" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" -H 'Content-Type: application/json' -d '{"assignee": 7}' "$B/v1/incidents/$ID/reassign")
[ "$code" = 400 ] && [ "$(j "$D/e.json" 'd["error"]["details"]["errors"][0]["field"]')" = assignee ]
ok $? "reassign with a bad body: 400 naming the field"
# A JSON body is no signed form: "sig=" inside it must not turn a token's request into a link's.
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" -H 'Content-Type: application/json' -d '{"assignee": "bob", "note": "a=1&sig=00"}' "$B/v1/incidents/$ID/reassign")
[ "$code" = 400 ] && [ "$(j "$D/e.json" 'd["error"]["details"]["errors"][0]["field"]')" = note ]
ok $? "a JSON body holding sig=: the token's request, 400 naming the unknown field (not a link page)"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" -H 'Content-Type: application/json' -d '{"assignee": "bob"}' "$B/v1/incidents/$ID/reassign")
[ "$code" = 200 ] && [ "$(j "$D/e.json" 'd["assignee"]')" = bob ]
ok $? "reassign to bob: 200"
wait_route twilio 2 && ctl "requests?route=twilio" > "$D/sms.json" && [ "$(j "$D/sms.json" 'd[1]["form"]["To"]')" = "+15550100002" ] &&
  j "$D/sms.json" 'd[1]["form"]["Body"]' | grep "Assigned to you by olga" >/dev/null
ok $? "... bob is notified, naming who assigned it (the token's name)"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" "$B/v1/incidents/$ID/resolve")
[ "$code" = 200 ] && [ "$(j "$D/e.json" 'd["state"]')" = resolved ] && [ "$(j "$D/e.json" 'd["resolved_by"]')" = olga ]
ok $? "resolve with an operator token: 200, resolved by olga"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" "$B/v1/incidents/$ID/ack")
[ "$code" = 409 ] && [ "$(j "$D/e.json" 'd["error"]["details"]["state"]')" = resolved ]
ok $? "ack of a resolved incident: 409 with its state"
code=$(curl -s -o /dev/null -w '%{http_code}' "$RES")
[ "$code" = 200 ] && curl -s "$RES" | grep "resolved already" >/dev/null
ok $? "the resolve link of a resolved incident says there is nothing to do"
TT=$(curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"role":"operator","tenant":"acme"}' "$B/v1/tokens" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
c1=$(curl -s -o /dev/null -w '%{http_code}' -H "$H$TT" "$B/v1/incidents")
c2=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "$H$TT" "$B/v1/incidents/$ID/ack")
[ "$c1" = 403 ] && [ "$c2" = 403 ]
ok $? "a tenant token is refused: incidents are not tenant-scoped"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -H "$H$TOKEN" "$B/v1/incidents?state=sleeping")
[ "$code" = 400 ] && [ "$(j "$D/e.json" 'd["error"]["details"]["errors"][0]["field"]')" = state ]
ok $? "a bad filter: 400 naming the field"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$H$TOKEN" "$B/v1/incidents/nope")
[ "$code" = 404 ]
ok $? "an unknown incident: 404"
ctl "requests?route=twilio" > "$D/sms.json"
exp_past=$(( $(date +%s) - 10 ))
code=$(curl -s -o /dev/null -w '%{http_code}' "$B/v1/incidents/$ID/ack?exp=$exp_past&sig=$SIG")
[ "$code" = 403 ]
ok $? "a link whose expiry was changed: 403"

# metrics
curl -s -H "$H$TOKEN" "$B/metrics" > "$D/metrics"
grep -q '^steward_incident_ack_seconds_count{service="web"} 1$' "$D/metrics" &&
  grep -q '^steward_incident_resolve_seconds_count{service="web"} 1$' "$D/metrics"
ok $? "MTTA and MTTR histograms per service in /metrics"
grep -q '^steward_incidents_open{service="web",state="triggered"} 0$' "$D/metrics"
ok $? "the open-incident gauge by service and state"

# notification history
curl -s -H "$H$TOKEN" "$B/v1/notifications?channel=sms" > "$D/n.json"
[ "$(j "$D/n.json" 'len(d["notifications"])')" = 2 ] && [ "$(j "$D/n.json" 'd["notifications"][0]["status"]')" = sent ]
ok $? "GET /v1/notifications?channel=sms: both SMS, newest first, sent"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -H "$H$TOKEN" "$B/v1/notifications?colour=red")
[ "$code" = 400 ] && [ "$(j "$D/e.json" 'd["error"]["details"]["errors"][0]["field"]')" = colour ]
ok $? "an unknown notification filter: 400 naming it"
for q in status=lost before=1.5 limit=0 since=yesterday; do
  code=$(curl -s -o "$D/e.json" -w '%{http_code}' -H "$H$TOKEN" "$B/v1/notifications?$q")
  [ "$code" = 400 ] && [ "$(j "$D/e.json" 'd["error"]["details"]["errors"][0]["field"]')" = "${q%%=*}" ]
  ok $? "a bad notification filter $q: 400 naming ${q%%=*}"
done

# the REPL
S="$D/var/steward.sock"
"$BIN" eval --socket "$S" 'incidents.trigger{key = "db/disk", service = "database", title = "Disk full", escalation = "ops"}' > "$D/r1" 2>&1
ID2=$("$BIN" eval --socket "$S" --json 'incidents.list{service = "database"}[1].id' 2>&1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0])')
[ -n "$ID2" ] && wait_route twilio 3
ok $? "REPL: incidents.trigger opens and pages"
"$BIN" eval --socket "$S" "incidents()" > "$D/r2" 2>&1
grep -q "$ID2" "$D/r2" && grep -q "$ID" "$D/r2"
ok $? "REPL: incidents() lists both"
"$BIN" eval --socket "$S" "incidents.ack('$ID2')" > "$D/r3" 2>&1
grep -q acknowledged "$D/r3"
ok $? "REPL: incidents.ack"
"$BIN" eval --socket "$S" "incidents.reassign('$ID2', 'bob')" > /dev/null 2>&1
"$BIN" eval --socket "$S" "incidents.resolve('$ID2')" > "$D/r4" 2>&1
grep -q resolved "$D/r4"
ok $? "REPL: incidents.reassign and incidents.resolve"
"$BIN" eval --socket "$S" "incidents.show('$ID2')" > "$D/r5" 2>&1
grep -q "acknowledged" "$D/r5" && grep -q "reassigned" "$D/r5" && grep -q "via sms: sent" "$D/r5" && grep -q "repl:" "$D/r5"
ok $? "REPL: incidents.show has the timeline with notifications and the REPL actor"
"$BIN" eval --socket "$S" "notifications{channel = 'email'}" > "$D/r6" 2>&1
[ "$(grep -c ' sent ' "$D/r6")" = 2 ]
ok $? "REPL: notifications{channel = 'email'}"
"$BIN" eval --socket "$S" "help()" | grep "incidents.show(id)" >/dev/null
ok $? "REPL: help() lists the incident helpers"

daemon_stop
# The audit log (docs/audit.md): incident actions through the API and through signed links.
"$BIN" audit -c "$D/steward.lua" --json --limit 1000 > "$D/audit"
grep '"command":"incident.reassign"' "$D/audit" | grep "\"target\":\"$ID\"" | grep '"outcome":"ok"' | grep -q '"after_digest":"[0-9a-f]\{64\}"'
ok $? "audit: the reassignment is recorded with the incident, its outcome and a digest"
grep '"command":"incident.' "$D/audit" | grep -q '"actor":"link"'
ok $? "audit: an action through a signed link is recorded with the actor link"
grep '"command":"incident.ack"' "$D/audit" | grep -q '"outcome":"refused"'
ok $? "audit: a refused action (invalid state) is recorded as refused"
"$BIN" audit verify -c "$D/steward.lua" > /dev/null
ok $? "audit: the chain verifies"
echo "1..$n"
exit $fail
