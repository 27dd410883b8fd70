#!/bin/bash
# Plans and subscriptions through the HTTP API on a real daemon (issue 18 §2,
# docs/billing/subscriptions.md): a plan's PUT makes a new version while a subscription keeps
# its own; a subscription dated a moment later is pending and the shipped policy
# billing.subscriptions starts it on its durable timer — also when the daemon was stopped over
# the start; upgrade now, downgrade at the period's end, terminate, cancel (409 from the wrong
# state); refusals name the field; a tenant's token reads its own subscriptions only; the REPL
# lists them (billing.subscriptions{}) and the history.
. "$(dirname "$0")/../support/daemon.sh"
echo "1..17"
mkdir -p "$D/policies/billing"
cp "$here/policies/billing/subscriptions.lua" "$here/policies/billing/usage.lua" "$D/policies/billing/"
daemon_config 'tenants = { plans = { basic = {} } }, billing = { currency = "EUR" },'
daemon_start || exit 1
. "$here/tests/support/billing_api.sh"
state_is() { req "$H" GET /v1/billing/subscriptions/$1 >/dev/null; jx 'd["subscription"]["state"] == arg[0]' "$2" <"$D/body" >/dev/null; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

billing_two_tenants
ok $? "two tenants"

code=$(req "$H" POST /v1/billing/plans '{"code":"starter","interval":"monthly","amount":"19.00"}')
code2=$(req "$H" POST /v1/billing/plans '{"code":"pro","interval":"monthly","amount":"49.00","trial_days":14}')
code3=$(req "$H" PUT /v1/billing/plans/starter '{"interval":"monthly","amount":"24.00"}')
[ "$code$code2$code3" = 201201200 ] && jx 'd["plan"]["version"] == 2 and d["plan"]["amount"] == "24"' <"$D/body" >/dev/null
ok $? "plans created; PUT makes version 2 ($code $code2 $code3)"
req "$H" GET "/v1/billing/plans/starter?version=1" >/dev/null
jx 'd["plan"]["version"] == 1 and d["plan"]["amount"] == "19"' <"$D/body" >/dev/null
ok $? "GET /v1/billing/plans/starter?version=1: the old version, as it was"
code=$(req "$H" POST /v1/billing/plans '{"code":"x","interval":"monthly","amount":"1","charges":[{"metric":"nope","model":"standard"}]}')
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "charges[1].metric"' <"$D/body" >/dev/null
ok $? "a charge on an unknown metric: 400 naming charges[1].metric ($code)"

code=$(req "$H" POST /v1/billing/subscriptions '{"tenant":"acme","plan":"starter","external_id":"acme-main"}')
SA=$(jx 'd["subscription"]["id"]' <"$D/body")
[ "$code" = 201 ] && jx 'd["subscription"]["state"] == "active" and d["subscription"]["plan_version"] == 2 and d["subscription"]["billing_time"] == "calendar"' <"$D/body" >/dev/null
ok $? "POST /v1/billing/subscriptions: active now, on the plan's latest version ($code)"
code=$(req "$H" POST /v1/billing/subscriptions '{"tenant":"acme","plan":"starter","billing_time":"sometimes"}')
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "billing_time"' <"$D/body" >/dev/null
ok $? "a bad billing_time: 400 naming it ($code)"

# a start a few seconds ahead: pending, then started by the policy on its timer
start=$(( $(date +%s) + 3 ))
req "$H" POST /v1/billing/subscriptions "{\"tenant\":\"globex\",\"plan\":\"pro\",\"started\":\"$(iso $start)\"}" >/dev/null
SG=$(jx 'd["subscription"]["id"]' <"$D/body")
jx 'd["subscription"]["state"] == "pending" and d["subscription"]["trial_ends"] is not None' <"$D/body" >/dev/null
ok $? "dated later: pending, with its trial's end"
wait_for 20 state_is "$SG" active
ok $? "the policy billing.subscriptions starts it when its timer fires"

# the daemon stopped over the start: the timer fires after the restart
start=$(( $(date +%s) + 2 ))
req "$H" POST /v1/billing/subscriptions "{\"tenant\":\"globex\",\"plan\":\"starter\",\"started\":\"$(iso $start)\"}" >/dev/null
SR=$(jx 'd["subscription"]["id"]' <"$D/body")
daemon_stop
until [ "$(date +%s)" -gt "$start" ]; do sleep 0.2; done
daemon_start || exit 1
U="http://127.0.0.1:$PORT"
wait_for 20 state_is "$SR" active
ok $? "stopped over its start: started after the restart (the timer is durable)"

code=$(req "$H" POST /v1/billing/subscriptions/$SA/upgrade '{"plan":"pro"}')
SU=$(jx 'd["subscription"]["id"]' <"$D/body")
[ "$code" = 200 ] && jx 'd["subscription"]["previous"] == arg[0] and d["subscription"]["plan"] == "pro" and d["subscription"]["external_id"] == "acme-main"' "$SA" <"$D/body" >/dev/null && state_is "$SA" terminated
ok $? "upgrade: the new subscription now, the old one terminated ($code)"
code=$(req "$H" POST /v1/billing/subscriptions/$SU/downgrade '{"plan":"starter"}')
SD=$(jx 'd["subscription"]["id"]' <"$D/body")
first_next=$(python3 -c 'import datetime; d=datetime.datetime.utcnow(); print((datetime.datetime(d.year+(d.month==12), d.month%12+1, 1)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
[ "$code" = 200 ] && jx 'd["subscription"]["state"] == "pending" and d["subscription"]["started"] == arg[0]' "$first_next" <"$D/body" >/dev/null
ok $? "downgrade: pending, starting at the first of next month ($code)"
code=$(req "$H" POST /v1/billing/subscriptions/$SD/cancel)
code2=$(req "$H" POST /v1/billing/subscriptions/$SU/cancel)
[ "$code" = 200 ] && [ "$code2" = 409 ] && state_is "$SD" canceled
ok $? "cancel: the pending downgrade is canceled; an active one is a 409 ($code $code2)"
code=$(req "$H" POST /v1/billing/subscriptions/$SU/terminate)
code2=$(req "$H" POST /v1/billing/subscriptions/$SU/terminate)
[ "$code" = 200 ] && [ "$code2" = 409 ] && state_is "$SU" terminated
ok $? "terminate: now; twice is a 409 ($code $code2)"
code=$(req "$H" POST /v1/billing/subscriptions/$SU/pause)
[ "$code" = 404 ]
ok $? "an unknown action is a 404 ($code)"

code=$(req "Authorization: Bearer $ATOK" GET /v1/billing/subscriptions)
[ "$code" = 200 ] && jx 'len(d["subscriptions"]) == 2 and all(s["tenant"] == "acme" for s in d["subscriptions"])' <"$D/body" >/dev/null
code2=$(req "Authorization: Bearer $ATOK" GET /v1/billing/subscriptions/$SG)
code3=$(req "Authorization: Bearer $ATOK" POST /v1/billing/subscriptions/$SA/terminate)
[ "$code2" = 404 ] && [ "$code3" = 403 ]
ok $? "acme's token: its own 2 subscriptions; globex's is a 404; changes are an admin's (403) ($code $code2 $code3)"

out=$("$BIN" eval --socket "$D/var/steward.sock" 'return billing.subscriptions{tenant = "globex"}' 2>&1)
echo "$out" | grep -q "$SG" && echo "$out" | grep -q "pro@1" && echo "$out" | grep -q "active"
ok $? "REPL: billing.subscriptions{tenant=} lists them"
out=$("$BIN" eval --socket "$D/var/steward.sock" 'return billing.history{tenant = "acme"}' 2>&1)
echo "$out" | grep -q "upgraded" && echo "$out" | grep -q "terminated"
ok $? "REPL: billing.history{} shows the changes"
exit $fail
