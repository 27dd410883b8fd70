#!/bin/bash
# Invoices are idempotent (SQLite): one subscription, copied into two stores. Store A gets a
# usage stream of 300 billing.usage events once, then the same transactions again under new
# event ids (each recorded as a duplicate, none billed twice). Store B gets the first half, its
# daemon is killed with SIGKILL right after the acknowledgement, then the whole stream after the
# restart. The invoicing policy builds last month's invoice in each: the drafts' canonical JSON
# (invoices.json) is byte-identical, and stays so when both are finalized (only the times of
# finalization differ).
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_setup.sh"
echo "1..9"
billing_policies
CONF='tenants = { plans = { basic = {} } },
  billing = { currency = "EUR", grace_period = "90d", taxes = { rates = { { country = "FR", rate = "20", name = "TVA" } } } },'
B() { echo "http://127.0.0.1:$PORT"; }
H="Authorization: Bearer "

# ---- one subscription, in store A, copied to store B ----
export STEWARD_TEST_STORE="sqlite:$D/a.db"
daemon_config "$CONF"
daemon_start || exit 1
billing_tenant acme FR
billing_catalog
LAST=$(month_start -1)
SUB=$(billing_subscribe acme "$LAST")
daemon_stop
cp "$D/a.db" "$D/b.db"
for x in -wal -shm; do [ -f "$D/a.db$x" ] && cp "$D/a.db$x" "$D/b.db$x"; done
[ -n "$SUB" ] && [ -f "$D/b.db" ]
ok $? "a subscription since the first of last month, in two copies of one store ($SUB)"

# stream PREFIX FROM TO: usage events FROM..TO-1 as a JSON array, event ids PREFIX-i
stream() {
    /usr/bin/python3 - "$SUB" "$LAST" "$1" "$2" "$3" <<'PY'
import json, sys
sub, last, prefix, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print(json.dumps([{"id": "%s-%d" % (prefix, i), "type": "billing.usage", "tenant": "acme",
    "data": {"transaction_id": "tx-%d" % i, "subscription": sub, "code": "api_calls", "timestamp": last + 600 * i + 7}}
    for i in range(a, b)]))
PY
}
post() { curl -s -o "$D/post.out" -w '%{http_code}' -H "$H$TOKEN" --data-binary @- "$(B)/v1/events"; }
count() { beval "return require('steward.billing.usage').count({ subscription = '$SUB' })"; }
dups() { beval "return #require('steward.runtime.store').default().db:query(\"SELECT id FROM events WHERE type = 'billing.usage.duplicate'\")"; }
is() { [ "$($1)" = "$2" ]; }
# the invoice's canonical JSON, as GET /v1/billing/invoices/{id} carries it ({"invoice": ...})
invoice_json() {
    curl -s -H "$H$TOKEN" "$(B)/v1/billing/invoices/inv_${SUB}_$LAST" | sed 's/^{"invoice"://; s/}$//'
}
run_invoicing() {
    curl -s -o /dev/null -H "$H$TOKEN" -d '{"type":"policy.schedule","data":{"policy":"billing.invoicing"}}' "$(B)/v1/events"
    built() { beval "return require('steward.billing.invoices').get('inv_${SUB}_$LAST') and 'yes' or 'no'" | grep -q yes; }
    wait_for 20 built
}

# ---- A: the stream once, then its transactions again under new event ids ----
export STEWARD_TEST_STORE="sqlite:$D/a.db"
daemon_config "$CONF"
daemon_start || exit 1
c=$(stream u 0 300 | post)
wait_for 30 is count 300
ok $? "A: 300 events acknowledged ($c) and recorded"
run_invoicing
invoice_json > "$D/a1.json"
c=$(stream again 0 300 | post)
wait_for 30 is dups 300
ok $? "A: the same 300 transactions again ($c): 300 duplicates reported, still $(count) recorded"
curl -s -o /dev/null -H "$H$TOKEN" -X POST "$(B)/v1/billing/invoices/inv_${SUB}_$LAST/refresh"
invoice_json > "$D/a2.json"
cmp -s "$D/a1.json" "$D/a2.json" && grep -q '"total":"138.00"' "$D/a1.json"
ok $? "A: the draft rebuilt after the resend is byte-identical (total 138.00: 100 + 300 x 0.05 = 115, + TVA 23)"
curl -s -o "$D/afin.out" -H "$H$TOKEN" -X POST "$(B)/v1/billing/invoices/inv_${SUB}_$LAST/finalize"
invoice_json > "$D/a3.json"
daemon_stop

# ---- B: half the stream, SIGKILL after the acknowledgement, the whole stream after the restart ----
export STEWARD_TEST_STORE="sqlite:$D/b.db"
daemon_config "$CONF"
daemon_start || exit 1
c=$(stream u 0 150 | post)
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
[ "$c" = 202 ]
ok $? "B: 150 events acknowledged, then the daemon is killed with SIGKILL"
daemon_start || exit 1
c=$(stream u 0 300 | post)
wait_for 30 is count 300
ok $? "B: restarted, the whole stream posted again ($c): 300 recorded, each once"
run_invoicing
invoice_json > "$D/b1.json"
cmp -s "$D/a1.json" "$D/b1.json"
ok $? "B's draft is byte-identical to A's"
[ "$(wc -c < "$D/b1.json")" -gt 500 ] || echo "# $(cat "$D/b1.json")"
curl -s -o "$D/bfin.out" -H "$H$TOKEN" -X POST "$(B)/v1/billing/invoices/inv_${SUB}_$LAST/finalize"
invoice_json > "$D/b3.json"
daemon_stop
strip() { /usr/bin/python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in ("issued","due","finalized"): d.pop(k, None)
print(json.dumps(d, sort_keys=True))' "$1"; }
grep -q '"number":"INV-000001"' "$D/a3.json" && grep -q '"number":"INV-000001"' "$D/b3.json"
ok $? "both finalized as INV-000001"
[ "$(strip "$D/a3.json")" = "$(strip "$D/b3.json")" ]
ok $? "the finalized invoices are identical but for the times of finalization"
[ -n "${KEEP_JSON:-}" ] && cp "$D"/*.json "$KEEP_JSON"/
exit $fail
