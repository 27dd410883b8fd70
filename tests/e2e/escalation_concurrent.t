#!/bin/bash
# gh issue 13 §6: the targets of one escalation step are notified concurrently. A step with two
# targets, an SMS channel whose first request is held unanswered by the receiver (it times
# out) and then answered 500, and a Slack channel that works. The Slack message must arrive
# while the SMS's first attempt is still waiting (before its retries are exhausted), and the
# incident's timeline must show every attempt of each target. Order of events is checked, not
# timings: the held request cannot end before its timeout, whatever the machine's speed.
set -u
. "$(dirname "$0")/../support/daemon.sh"
PY=/usr/bin/python3

n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
H="Authorization: Bearer "
# j FILE EXPR: evaluates a Python expression over the JSON in FILE (bound to d)
j() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# wait_for SECONDS CMD...: runs CMD every 50 ms until it succeeds; 1 on timeout.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

receiver_start
ctl() { curl -s "$R/_control/$1"; }

mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/incidents.lua" "$D/policies/alerting/incidents.lua"
# The failing target comes first: sent one after the other, Slack would wait for all of its
# attempts.
cat > "$D/policies/lib/alerting/config.lua" <<CFG
return {
  channels = {
    sms = { kind = "sms", account_sid = "AC0123456789abcdef0123456789abcdef", auth_token = "a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2",
            from = "+15550000000", to = "+15550100001", base_url = "$R", retries = 2, timeout = "1s",
            backoff = { base = "100ms", jitter = false } },
    ["slack-ops"] = { kind = "slack", webhook_url = "$R/slack/T0/B0/ops", retries = 2 },
  },
  escalation_policies = {
    ops = { rules = { { delay = "0s", targets = { { channel = "sms" }, { channel = "slack-ops" } } } } },
  },
}
CFG
cat > "$D/policies/page.lua" <<'POL'
local incidents = require "steward.alerting.incidents"
return {
  name = "alerting.page", capabilities = { "alerting" },
  on = { "page.requested" },
  handle = function(ev)
    assert(incidents.trigger({ key = ev.data.key, service = "db", title = "concurrent targets",
      escalation = "ops", source = "page" }))
  end,
}
POL

# The SMS's first request is held (never answered: the channel's 1 s timeout ends it), the
# next two get 500: three attempts, all failed.
curl -s -o /dev/null -d '{"route": "twilio", "responses": [{"hold": true}, {"status": 500, "body": "down"},
  {"status": 500, "body": "down"}]}' "$R/_control/plan"

daemon_config ""
daemon_start || { echo "1..0 # the daemon did not start"; exit 1; }

curl -s -o /dev/null -H "$H$TOKEN" -H 'Content-Type: application/json' \
  -d '{"type":"page.requested","data":{"key":"concurrent/1"}}' "http://127.0.0.1:$PORT/v1/events"

incident_id() {
    curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT/v1/incidents?service=db" > "$D/l.json" &&
      ID=$(j "$D/l.json" 'd["incidents"][0]["id"]' 2>/dev/null) && [ -n "$ID" ]
}
wait_for 20 incident_id
ok $? "the incident is open"
# both targets have their outcome on the timeline
both_done() {
    curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT/v1/incidents/$ID" > "$D/i.json" &&
      [ "$(j "$D/i.json" 'len([e for e in d["timeline"] if e["kind"] == "notification"])' 2>/dev/null)" = 2 ]
}
wait_for 30 both_done
ok $? "both targets have a notification outcome on the timeline"

ctl requests > "$D/r.json"
[ "$(j "$D/r.json" '[r["route"] for r in d if r["route"] in ("twilio", "slack")]')" = \
  "['twilio', 'slack', 'twilio', 'twilio']" ] ||
[ "$(j "$D/r.json" '[r["route"] for r in d if r["route"] in ("twilio", "slack")]')" = \
  "['slack', 'twilio', 'twilio', 'twilio']" ]
ok $? "Slack was notified while the SMS's first attempt was still waiting (receiver saw: $(j "$D/r.json" '[r["route"] for r in d]'))"
[ "$(j "$D/r.json" 'all(r["valid"] for r in d if r["route"] == "slack")')" = True ]
ok $? "the Slack message is in Slack's shape"

# kind, channel, attempt, outcome of each notification entry, in timeline order
j "$D/i.json" '"\n".join("%s %s %s %s" % (e["kind"], e["data"]["channel"], e["data"].get("attempt", "-"), e["data"]["outcome"]) for e in d["timeline"] if e["kind"].startswith("notification"))' > "$D/tl.txt"
sed 's/^/# /' "$D/tl.txt"
first_sms=$(grep -n '^notification_attempt sms' "$D/tl.txt" | head -1 | cut -d: -f1)
slack_sent=$(grep -n '^notification slack-ops' "$D/tl.txt" | cut -d: -f1)
[ -n "$first_sms" ] && [ -n "$slack_sent" ] && [ "$slack_sent" -lt "$first_sms" ]
ok $? "on the timeline, Slack's outcome (sent) comes before the SMS's first attempt ended"
[ "$(grep ' sms ' "$D/tl.txt" | tr '\n' '|')" = \
  "notification_attempt sms 1 retry|notification_attempt sms 2 retry|notification_attempt sms 3 failed|notification sms - failed|" ]
ok $? "the SMS target: one timeline entry per attempt (retry, retry, failed), then its outcome"
[ "$(grep ' slack-ops ' "$D/tl.txt" | tr '\n' '|')" = \
  "notification_attempt slack-ops 1 sent|notification slack-ops - sent|" ]
ok $? "the Slack target: one attempt, sent"
[ "$(j "$D/i.json" '[(e["data"]["target"], e["data"]["step"], e["data"]["loop"], e["data"].get("status")) for e in d["timeline"] if e["kind"] == "notification_attempt" and e["data"]["channel"] == "sms"]')" = \
  "[('channel:sms', 1, 0, None), ('channel:sms', 1, 0, 500), ('channel:sms', 1, 0, 500)]" ]
ok $? "each attempt names its target, step, loop and HTTP status"
[ "$(j "$D/i.json" '[("imed out" in e["data"]["error"], e["data"]["retry_in"]) for e in d["timeline"] if e["kind"] == "notification_attempt" and e["data"]["attempt"] == 1 and e["data"]["channel"] == "sms"]')" = \
  "[(True, 0.1)]" ]
ok $? "the held attempt failed by timeout and says when the next one comes"

"$BIN" eval --socket "$D/var/steward.sock" "incidents.show('$ID')" > "$D/show.txt" 2>&1
grep -q 'step 1 channel:sms via sms: attempt 2 retry (HTTP 500: down), next in 0.2s' "$D/show.txt"
ok $? "REPL: incidents.show lists each attempt" || sed 's/^/# /' "$D/show.txt"

daemon_stop
echo "1..$n"
exit $fail
