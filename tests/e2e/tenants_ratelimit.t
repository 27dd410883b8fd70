#!/bin/bash
# Per-tenant ingest rate limits (issue 17 §2): a tenant token's POST /v1/events is held to its
# plan's token bucket (config `tenants`), answered 429 with Retry-After (whole seconds) and a
# body naming the tenant and the limit; another tenant is untouched; a token without a tenant
# is not limited; once Retry-After has passed the tenant is admitted again; a bad `tenants`
# config stops start-up naming the field.
set -u
. "$(dirname "$0")/../support/daemon.sh"
echo "1..14"
daemon_config 'tenants = { default_plan = "basic",
    plans = { basic = { rate = { ingest = 0.2, burst = 6 }, budgets = { queue_share = 1 } } } },'
daemon_start || { echo "not ok 1 - the daemon did not start"; exit 1; }
B="http://127.0.0.1:$PORT"
mk() { curl -s -H "Authorization: Bearer $TOKEN" -d "{\"role\":\"ingest\",\"tenant\":\"$1\",\"name\":\"$1\"}" "$B/v1/tokens" | jx 'd["token"]'; }
ACME=$(mk acme); GLOBEX=$(mk globex)
# post TOKEN BODY -> "status" and the body in $D/body, the headers in $D/head
post() { curl -s -o "$D/body" -D "$D/head" -w '%{http_code}' -H "Authorization: Bearer $1" -d "$2" "$B/v1/events"; }

codes=""
for i in $(seq 6); do codes="$codes$(post "$ACME" "{\"type\":\"rl.one\",\"data\":{\"i\":$i}}") "; done
[ "$codes" = "202 202 202 202 202 202 " ]; ok $? "a full bucket admits the burst (6 events of acme: $codes)"
st=$(post "$ACME" '{"type":"rl.one"}')
[ "$st" = 429 ]; ok $? "the next one is refused: 429 ($st)"
ra=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "$D/head" | tr -d '\r')
[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 5 ]; ok $? "with Retry-After in whole seconds ($ra; one token takes 5 s at 0.2/s)"
jx 'd["error"]["code"] == "rate_limited" and d["error"]["details"]["tenant"] == "acme"' < "$D/body" >/dev/null
ok $? "the body says rate_limited and names the tenant: $(head -c 300 "$D/body")"
jx 'd["error"]["details"]["limit"]["ingest"] == 0.2 and d["error"]["details"]["limit"]["burst"] == 6 and "0.2 events/s" in d["error"]["message"]' < "$D/body" >/dev/null
ok $? "and its limit (0.2 events/s, burst 6)"
st=$(post "$GLOBEX" '[{"type":"rl.one"},{"type":"rl.one"}]')
[ "$st" = 202 ]; ok $? "another tenant is admitted meanwhile ($st)"
st=$(post "$TOKEN" '{"type":"rl.one","tenant":"acme"}')
[ "$st" = 202 ]; ok $? "a token without a tenant is not held to acme's limit ($st)"
n=$(curl -s -H "Authorization: Bearer $TOKEN" "$B/v1/events?tenant=acme&type=rl.one&limit=1000" | jx 'len(d["events"])')
[ "$n" = 7 ]; ok $? "nothing refused was stored: 6 + 1 acme events in the log ($n)"

# A batch is charged whole: after the refill, one batch of 20 is admitted and the bucket
# owes for it, so the next request is refused for several seconds.
wait_for 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $ACME' -d '{\"type\":\"rl.two\"}' $B/v1/events)\" = 202 ]"
ok $? "after Retry-After the tenant is admitted again (polled, bounded)"
batch=$(/usr/bin/python3 -c 'import json; print(json.dumps([{"type":"rl.batch","data":{"i":i}} for i in range(20)]))')
wait_for 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $ACME' -d '$batch' $B/v1/events)\" = 202 ]"
ok $? "a batch of 20 (larger than the burst) is admitted once the bucket holds a token"
st=$(post "$ACME" '{"type":"rl.one"}')
ra=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "$D/head" | tr -d '\r')
[ "$st" = 429 ] && [ "$ra" -ge 90 ]; ok $? "and its debt delays the next request: 429, Retry-After $ra s (>= 90: 19 owed at 0.2/s)"
m=$(curl -s -H "Authorization: Bearer $TOKEN" "$B/metrics" | grep '^steward_tenant_ingest_limited_total{tenant="acme"}')
[ -n "$m" ]; ok $? "/metrics counts the refusals by tenant ($m)"
daemon_stop

# A bad plan stops start-up with the field named.
daemon_config 'tenants = { plans = { basic = { rate = { ingest = -1 } } } },'
out=$("$BIN" run -c "$D/steward.lua" 2>&1)
echo "$out" | grep -q 'tenants.*plans.basic.rate.ingest'; ok $? "a negative rate is refused at start-up, naming tenants ... plans.basic.rate.ingest"
daemon_config 'tenants = { plans = { basic = { budgets = { colour = 1 } } } },'
out=$("$BIN" run -c "$D/steward.lua" 2>&1)
echo "$out" | grep -q 'tenants.*plans.basic.budgets.colour: unknown field'; ok $? "an unknown budget field is refused, naming it"
exit $fail
