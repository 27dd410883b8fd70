#!/bin/bash
# Health scores and onboarding end to end, with the shipped policies/success/health.lua and
# onboarding.lua: a tenant's events reach its onboarding milestones (GET
# /v1/success/onboarding/{tenant}), a success.health.run event scores it and keeps the history
# (GET /v1/success/health[/{tenant}], REPL health()), a failed payment drops the score and
# raises success.health_dropped, and another tenant's token sees none of it.
set -u
. "$(dirname "$0")/../support/daemon.sh"
H="Authorization: Bearer "
mkdir -p "$D/policies/success"
for f in "$here"/policies/success/*.lua; do
    case "$f" in *_spec.lua) ;; *) cp "$f" "$D/policies/success/" ;; esac
done
daemon_config "policy_config = { [\"success.health\"] = { weights = { adoption = 1, payment = 1 } } },"
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 1; }
B="http://127.0.0.1:$PORT"
api() { curl -s -H "$H$TOKEN" "$@"; }
code() { curl -s -o "$D/out" -w '%{http_code}' "$@"; }
token() { api -d "{\"role\":\"operator\",\"tenant\":\"$1\"}" "$B/v1/tokens" | jx 'd["token"]'; }
ACME=$(token acme)
BETA=$(token beta)

c=$(code -H "$H$ACME" -d '[{"type":"app.used","source":"web","data":{}},{"type":"alert.firing","source":"am","data":{}}]' "$B/v1/events")
[ "$c" = 202 ]
ok $? "acme sends its first events"
reached() { curl -s -H "$H$ACME" "$B/v1/success/onboarding/acme" | jx 'd["done"] == 2' >/dev/null; }
wait_for 10 reached
ok $? "two milestones reached: first_event and first_alert"
curl -s -H "$H$ACME" "$B/v1/success/onboarding/acme" > "$D/ob"
jx '[m["name"] for m in d["milestones"] if m["reached"]] == ["first_event", "first_alert"] and d["time_to_value"] is not None' < "$D/ob" >/dev/null
ok $? "the checklist names them in order, with a time to value"
c=$(code -H "$H$BETA" "$B/v1/success/onboarding/acme")
[ "$c" = 404 ]
ok $? "another tenant's token gets 404 for acme's checklist"

run() { api -d '{"type":"success.health.run","data":{"tenant":"acme"}}' "$B/v1/events" >/dev/null; }
scores() { curl -s -H "$H$ACME" "$B/v1/success/health/acme" | jx 'len(d["history"]) == int(arg[0])' "$1" >/dev/null; }
run
wait_for 10 scores 1
ok $? "a run scores acme and keeps it in the history"
[ "$(curl -s -H "$H$ACME" "$B/v1/success/health/acme" | jx 'd["history"][0]["score"]')" = 75 ]
ok $? "adoption 2 of 4 and a payment in good standing, equally weighted: 75"
api -d '{"type":"billing.payment.failed","tenant":"acme","data":{}}' "$B/v1/events" >/dev/null
# scores are kept per second: the next run is a new second
wait_for 5 sh -c "[ \$(date +%s) -gt $(date +%s) ]"
run
wait_for 10 scores 2
ok $? "a second run adds to the history"
[ "$(curl -s -H "$H$ACME" "$B/v1/success/health/acme" | jx 'd["history"][0]["score"]')" = 25 ]
ok $? "a failed payment takes the score to 25"
dropped() { api "$B/v1/events?type=success.health_dropped" | jx '[e for e in d["events"] if e["tenant"] == "acme" and e["data"]["previous"] == 75]' >/dev/null; }
wait_for 10 dropped
ok $? "a 50-point drop raised success.health_dropped"
[ "$(curl -s -H "$H$BETA" "$B/v1/success/health" | jx 'len(d["health"])')" = 0 ] &&
    [ "$(code -H "$H$BETA" "$B/v1/success/health/acme")" = 404 ]
ok $? "another tenant's token sees no score of acme"
[ "$(api "$B/v1/success/health" | jx 'd["health"][0]["tenant"], d["health"][0]["score"]')" = '["acme",25]' ]
ok $? "an admin sees each tenant's latest score"
"$BIN" eval --socket "$D/var/steward.sock" 'return tostring(health())' > "$D/repl"
grep -q "acme" "$D/repl" && grep -q "25" "$D/repl"
ok $? "REPL health() lists the latest scores"

# A tenant's first policy: its new version is the event tenant.policy.deployed, the milestone
# first_policy (beta has sent nothing; steward's own tenant.* events are not a first event).
mkdir -p "$D/policies/tenants/beta"
printf 'return { on = { "app.*" }, handle = function() end }\n' > "$D/policies/tenants/beta/hello.lua"
kill -HUP "$DPID"
policy_reached() {
    curl -s -H "$H$BETA" "$B/v1/success/onboarding/beta" |
        jx '[m["name"] for m in d["milestones"] if m["reached"]] == ["first_policy"]' >/dev/null
}
wait_for 10 policy_reached
ok $? "a tenant's new policy reaches its first_policy milestone"
api "$B/v1/events?type=tenant.policy.deployed" | jx 'len(d["events"]) == 1 and d["events"][0]["tenant"] == "beta" and d["events"][0]["data"]["policy"] == "tenants.beta.hello"' >/dev/null
ok $? "one tenant.policy.deployed event, beta's, naming the policy"

# A notification about beta, sent from the REPL: notification.sent, the milestone first_notification.
"$BIN" eval --socket "$D/var/steward.sock" \
    'return require("steward.notify").channel("log", { name = "t" }):send({ title = "hi", labels = { tenant = "beta" } }).status' > "$D/repl"
notified() {
    curl -s -H "$H$BETA" "$B/v1/success/onboarding/beta" |
        jx '[m["name"] for m in d["milestones"] if m["reached"]] == ["first_policy", "first_notification"]' >/dev/null
}
grep -q sent "$D/repl" && wait_for 10 notified
ok $? "a notification sent about a tenant reaches its first_notification milestone"

daemon_stop
[ "$DSTATUS" = 0 ]
ok $? "the daemon stops cleanly"
echo "1..$n"
exit $fail
