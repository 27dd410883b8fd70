#!/bin/bash
# Usage ingestion on a real daemon (issue 18 §2, docs/billing/usage.md): POST /v1/billing/usage
# validates each event (a refusal names the field and the index), answers which were
# duplicates, appends the others to the event log; the shipped policy billing.usage records
# each once per (subscription, transaction_id) — the same id on another subscription is
# another event; a re-send is a duplicate (answered and announced as billing.usage.duplicate);
# a tenant's token posts and reads usage of its own subscriptions only (another tenant's is a
# 404); and after a kill -9 every acknowledged event is recorded exactly once.
. "$(dirname "$0")/../support/daemon.sh"
echo "1..20"
mkdir -p "$D/policies/billing"
cp "$here/policies/billing/usage.lua" "$here/policies/billing/subscriptions.lua" "$D/policies/billing/"
daemon_config 'tenants = { plans = { basic = { rate = { ingest = 100000, burst = 100000 } } } },
  billing = { currency = "EUR", grace_period = "1d" },'
daemon_start || exit 1
. "$here/tests/support/billing_api.sh"

billing_two_tenants
ok $? "two tenants, active"

code=$(req "$H" POST /v1/billing/metrics '{"code":"api_calls","aggregation":"count"}')
code2=$(req "$H" POST /v1/billing/metrics '{"code":"storage","aggregation":"max"}')
[ "$code" = 201 ] && [ "$code2" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "field"' <"$D/body" >/dev/null
ok $? "POST /v1/billing/metrics: 201; a max metric without its field is a 400 naming it ($code $code2)"

code=$(req "$H" POST /v1/billing/plans '{"code":"pro","interval":"monthly","amount":"49.00","charges":[{"metric":"api_calls","model":"standard","properties":{"amount":"0.002"}}]}')
[ "$code" = 201 ] && jx 'd["plan"]["amount"] == "49" and d["plan"]["currency"] == "EUR" and d["plan"]["charges"][0]["properties"]["amount"] == "0.002"' <"$D/body" >/dev/null
ok $? "POST /v1/billing/plans: 201, amounts as exact strings, the configured currency ($code)"

for t in acme globex; do
  req "$H" POST /v1/billing/subscriptions "{\"tenant\":\"$t\",\"plan\":\"pro\",\"started\":\"2026-01-01T00:00:00Z\"}" >/dev/null
  eval "S_$t=\$(jx 'd[\"subscription\"][\"id\"]' <\"\$D/body\")"
done
[ -n "$S_acme" ] && [ -n "$S_globex" ] && jx 'd["subscription"]["state"] == "active"' <"$D/body" >/dev/null
ok $? "a subscription for each tenant, active"

TS=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)
ev() { printf '{"transaction_id":"%s","subscription":"%s","code":"api_calls","timestamp":"%s","properties":{"region":"eu"}}' "$1" "$2" "${3:-$TS}"; }
code=$(req "$H" POST /v1/billing/usage "{\"events\":[$(ev t1 "$S_acme"),$(ev t2 "$S_acme"),$(ev t1 "$S_acme"),$(ev t1 "$S_globex")]}")
[ "$code" = 202 ] && jx 'd["accepted"] == 3 and d["duplicates"] == 1 and [e["status"] for e in d["events"]] == ["accepted","accepted","duplicate","accepted"]' <"$D/body" >/dev/null
ok $? "a batch: t1 twice on one subscription is a duplicate, t1 on another subscription is another event ($code)"

recorded() { req "$H" GET "/v1/billing/usage?subscription=$1" >/dev/null; jx 'len(d["usage"]) == int(arg[0])' "$2" <"$D/body" >/dev/null; }
wait_for 20 recorded "$S_acme" 2 && wait_for 20 recorded "$S_globex" 1
ok $? "the policy billing.usage recorded them: 2 for acme, 1 for globex"
req "$H" GET "/v1/billing/usage?subscription=$S_acme" >/dev/null
jx 'd["usage"][0]["timestamp"] == arg[0] and d["usage"][0]["properties"]["region"] == "eu"' "$TS" <"$D/body" >/dev/null
ok $? "GET /v1/billing/usage: the events with their timestamp and properties"

code=$(req "$H" POST /v1/billing/usage "$(ev t1 "$S_acme" "$(date -u -d '-2 min' +%Y-%m-%dT%H:%M:%SZ)")")
[ "$code" = 200 ] && jx 'd["accepted"] == 0 and d["duplicates"] == 1' <"$D/body" >/dev/null
ok $? "a correction re-sent with a known id is a duplicate, not applied ($code)"
dup() { req "$H" GET "/v1/events?type=billing.usage.duplicate" >/dev/null; jx 'len(d["events"]) >= 2' <"$D/body" >/dev/null; }
wait_for 10 dup && jx 'any(e["data"]["transaction_id"] == "t1" for e in d["events"])' <"$D/body" >/dev/null
ok $? "duplicates are announced as billing.usage.duplicate events"
recorded "$S_acme" 2
ok $? "still 2 usage events for acme"

code=$(req "$H" POST /v1/billing/usage "$(ev old "$S_acme" 2026-01-02T10:00:00Z)")
[ "$code" = 200 ] && jx 'd["late"] == 1 and d["events"][0]["status"] == "late"' <"$D/body" >/dev/null
ok $? "an event of a period closed more than grace_period (1d) ago is refused as late ($code)"
late_ev() { req "$H" GET "/v1/events?type=billing.usage.late" >/dev/null; jx 'len(d["events"]) == 1' <"$D/body" >/dev/null; }
wait_for 10 late_ev
ok $? "and announced as billing.usage.late"
code=$(req "$H" POST /v1/billing/usage "{\"events\":[$(ev t9 "$S_acme"),{\"transaction_id\":\"x\",\"subscription\":\"$S_acme\"}]}")
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "events[2].code" and d["error"]["details"]["errors"][0]["index"] == 2' <"$D/body" >/dev/null
ok $? "a bad event refuses the batch, naming events[2].code ($code)"
code=$(req "$H" POST /v1/billing/usage "{\"transaction_id\":\"a\",\"subscription\":\"$S_acme\",\"code\":\"api_calls\",\"properties\":{\"gb\":1.5}}")
[ "$code" = 400 ] && jx '"properties.gb" in d["error"]["message"] and "as a string" in d["error"]["message"]' <"$D/body" >/dev/null
ok $? "an amount sent as a JSON number with a fraction is refused: send it as a string ($code)"
code=$(req "$H" POST /v1/billing/usage "{\"transaction_id\":\"a\",\"subscription\":\"$S_acme\",\"code\":\"nope\"}")
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "code"' <"$D/body" >/dev/null
ok $? "an unknown metric code is a 400 naming code ($code)"

# tenant tokens: their own subscriptions only
code=$(req "Authorization: Bearer $GTOK" POST /v1/billing/usage "$(ev g1 "$S_acme")")
code2=$(req "Authorization: Bearer $GTOK" GET "/v1/billing/usage?subscription=$S_acme")
code3=$(req "Authorization: Bearer $GTOK" GET "/v1/billing/subscriptions/$S_acme")
[ "$code" = 404 ] && [ "$code2" = 404 ] && [ "$code3" = 404 ]
ok $? "globex's token: acme's subscription is a 404 to post usage, read usage or read it ($code $code2 $code3)"
code=$(req "Authorization: Bearer $GTOK" POST /v1/billing/usage "$(ev g1 "$S_globex")")
code2=$(req "Authorization: Bearer $GTOK" GET /v1/billing/subscriptions)
[ "$code" = 202 ] && [ "$code2" = 200 ] && jx '[s["tenant"] for s in d["subscriptions"]] == ["globex"]' <"$D/body" >/dev/null
ok $? "globex's token posts usage for its own subscription and lists only its own ($code $code2)"
code=$(req "Authorization: Bearer $ATOK" POST /v1/billing/subscriptions "{\"tenant\":\"acme\",\"plan\":\"pro\"}")
[ "$code" = 403 ]
ok $? "a tenant's token cannot create subscriptions ($code)"

# kill -9: every acknowledged event is recorded exactly once after the restart
acked=0
for b in 1 2 3 4 5; do
  body=$(python3 -c "import json,sys; print(json.dumps({'events':[{'transaction_id':'k%d-%d'%(int(sys.argv[1]),i),'subscription':sys.argv[2],'code':'api_calls','timestamp':sys.argv[3]} for i in range(100)]}))" "$b" "$S_acme" "$TS")
  code=$(req "$H" POST /v1/billing/usage "$body")
  [ "$code" = 202 ] && acked=$((acked + $(jx 'd["accepted"]' <"$D/body")))
done
daemon_stop KILL
daemon_start || exit 1
U="http://127.0.0.1:$PORT"
H="Authorization: Bearer $TOKEN"
wait_for 30 recorded "$S_acme" $((acked + 2))
ok $? "after kill -9 and a restart, all $acked acknowledged events are recorded"
req "$H" GET "/v1/billing/usage?subscription=$S_acme" >/dev/null
jx 'len(d["usage"]) == len(set(u["transaction_id"] for u in d["usage"]))' <"$D/body" >/dev/null
ok $? "each exactly once"
exit $fail
