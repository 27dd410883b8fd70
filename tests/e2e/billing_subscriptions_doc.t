#!/bin/bash
# docs/billing/subscriptions.md and docs/billing/usage.md followed block by block: the page's
# configuration lines, then each shell block (curl against the daemon, steward eval) run in
# one shell in the pages' order, as a reader would paste them, with what each answers checked.
set -u
. "$(dirname "$0")/../support/daemon.sh"
echo "1..9"
# block PAGE NAME: the code block after "<!-- walkthrough: NAME -->" in docs/billing/PAGE.md
block() {
  awk -v m="<!-- walkthrough: $2 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
    "$here/docs/billing/$1.md"
}
# docs JSON answers follow one another without newlines: a list of them
answers() { /usr/bin/python3 -c '
import json, sys
s, d, out, i = sys.stdin.read(), json.JSONDecoder(), [], 0
while i < len(s):
    if s[i].isspace(): i += 1; continue
    v, i = d.raw_decode(s, i); out.append(v)
print(json.dumps(out))'; }
mkdir -p "$D/policies/billing"
cp "$here/policies/billing/usage.lua" "$here/policies/billing/subscriptions.lua" "$D/policies/billing/"
daemon_config "tenants = { plans = { basic = {} } }, $(block subscriptions config)"
daemon_start || exit 1
STEWARD="http://127.0.0.1:$PORT"
H="Authorization: Bearer $TOKEN"
is_active() { curl -s -H "$H" "$STEWARD/v1/tenants/$1" | jx 'd["state"] == "active"' >/dev/null; }
curl -s -o /dev/null -H "$H" -d '{"id":"acme","name":"Acme"}' "$STEWARD/v1/tenants"
curl -s -o /dev/null -H "$H" -d '{"id":"globex","name":"Globex"}' "$STEWARD/v1/tenants"
wait_for 20 is_active acme && wait_for 20 is_active globex
ok $? "the page's configuration; tenants acme and globex"
export STEWARD TOKEN
steward() { "$BIN" "$@" --socket "$D/var/steward.sock"; }
# run PAGE NAME: the block in this shell (its variables stay for the next ones), output kept
run() { block "$1" "$2" > "$D/$2.sh"; [ -s "$D/$2.sh" ] || { echo "# no block $2"; return 1; }; . "$D/$2.sh" > "$D/$2.out" 2>&1; }

run subscriptions plan && answers <"$D/plan.out" | jx 'd[0]["metric"]["code"] == "api_calls" and d[1]["plan"]["version"] == 1 and d[1]["plan"]["amount"] == "49" and d[1]["plan"]["currency"] == "EUR"' >/dev/null
ok $? "plan: a metric and the plan Pro, in the configured currency"
run subscriptions subscribe && answers <"$D/subscribe.out" | jx 'd[0]["subscription"]["state"] == "active" and d[0]["subscription"]["trial_ends"] and d[1]["subscription"]["state"] == "pending" and d[1]["subscription"]["billing_time"] == "anniversary"' >/dev/null
ok $? "subscribe: acme active with a trial, globex pending until next month"
run subscriptions change && answers <"$D/change.out" | jx 'd[0]["plan"]["version"] == 2 and d[2]["subscription"]["state"] == "pending" and d[2]["subscription"]["plan_version"] == 2 and d[2]["subscription"]["previous"] == arg[0]' "$TEAM" >/dev/null
ok $? "change: version 2, an upgrade to team now, a pending downgrade to pro@2"
curl -s -H "$H" "$STEWARD/v1/billing/subscriptions/$SUB" | jx 'd["subscription"]["state"] == "terminated" and d["subscription"]["next"] == arg[0]' "$TEAM" >/dev/null
ok $? "the upgraded subscription is terminated, pointing at team"
run subscriptions repl && grep -q "team@1" "$D/repl.out" && grep -q "pending" "$D/repl.out" && grep -q "upgraded" "$D/repl.out"
ok $? "repl: billing.subscriptions{} and billing.history{}"
run usage usage && answers <"$D/usage.out" | jx 'd[0]["accepted"] == 2 and d[0]["duplicates"] == 1 and [e["status"] for e in d[0]["events"]] == ["accepted","accepted","duplicate"]' >/dev/null
ok $? "usage: two accepted, the re-send a duplicate"
recorded() { run usage usage-read && answers <"$D/usage-read.out" | jx 'len(d[0]["usage"]) == 2' >/dev/null; }
wait_for 20 recorded
ok $? "usage-read: the policy recorded both"
run usage usage-bad; answers <"$D/usage-bad.out" | jx 'd[0]["error"]["details"]["errors"][0]["field"] == "events[1].properties.gb"' >/dev/null
ok $? "usage-bad: refused naming events[1].properties.gb"
exit $fail
