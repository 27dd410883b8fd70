#!/bin/bash
# Invoices and credit notes through the HTTP API on a real daemon (SQLite), with the shipped
# billing policies: usage posted as billing.usage events, the invoicing policy run by its
# schedule event builds last month's draft (taxes from the tenant's country), an admin
# finalizes it (INV-000001), a tenant token reads its own invoices and never another's, a void
# keeps the number, credit notes are refused beyond what is left and numbered in their series,
# the next invoice takes the credit; refusals name the field.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_setup.sh"
echo "1..24"
billing_policies
daemon_config 'tenants = { plans = { basic = {} } },
  billing = { currency = "EUR", grace_period = "90d", taxes = { rates = { { country = "FR", rate = "20", name = "TVA" } } } },'
daemon_start || exit 1
B="http://127.0.0.1:$PORT"
H="Authorization: Bearer "
req() { curl -s -o "$D/body" -w '%{http_code}' -H "$H$1" -X "$2" ${4:+-d "$4"} "$B$3"; }

billing_tenant acme FR && billing_tenant beta DE
ok $? "tenants with billing details (config.billing) are provisioned: active"
billing_catalog
LAST=$(month_start -1)
THIS=$(month_start 0)
SUB=$(billing_subscribe acme "$LAST")
SUBB=$(billing_subscribe beta "$LAST")
[ -n "$SUB" ] && [ -n "$SUBB" ]
ok $? "two tenants subscribed to pro since the first of last month ($SUB)"

# 120 calls for acme, 10 for beta, last month, as billing.usage events
/usr/bin/python3 - "$SUB" "$SUBB" "$LAST" > "$D/usage.json" <<'PY'
import json, sys
sub, subb, last = sys.argv[1], sys.argv[2], int(sys.argv[3])
ev = [{"id": "u-%s-%d" % (s, i), "type": "billing.usage", "tenant": t,
       "data": {"transaction_id": "t%d" % i, "subscription": s, "code": "api_calls", "timestamp": last + 3600 + i}}
      for s, t, n in ((sub, "acme", 120), (subb, "beta", 10)) for i in range(n)]
print(json.dumps(ev))
PY
c=$(curl -s -o "$D/body" -w '%{http_code}' -H "$H$TOKEN" --data-binary @"$D/usage.json" "$B/v1/events")
[ "$c" = 202 ]
ok $? "130 usage events acknowledged ($c)"
recorded() { [ "$(beval "return require('steward.billing.usage').count({ subscription = '$1' })")" = "$2" ]; }
wait_for 20 recorded "$SUB" 120 && wait_for 20 recorded "$SUBB" 10
ok $? "the usage policy recorded them"

curl -s -o /dev/null -H "$H$TOKEN" -d '{"type":"policy.schedule","data":{"policy":"billing.invoicing"}}' "$B/v1/events"
INV="inv_${SUB}_${LAST}"
built() { [ "$(req "$TOKEN" GET "/v1/billing/invoices/$INV")" = 200 ]; }
wait_for 20 built
ok $? "the invoicing policy's schedule built last month's draft ($INV)"
jx 'd["invoice"]["state"] == "draft" and d["invoice"]["total"] == "127.20" and d["invoice"]["subtotal"] == "106.00"' < "$D/body" >/dev/null
ok $? "draft: fee 100 + 120 calls at 0.05 = 106.00, TVA 20 % = 21.20 ($(jx 'd["invoice"]["total"]' < "$D/body"))"
jx '[l["id"] for l in d["invoice"]["lines"]] == ["subscription", "charge:calls"] and d["invoice"]["lines"][1]["usage"]["events"] == 120' < "$D/body" >/dev/null
ok $? "a line per charge with the usage behind it"

ATOK=$(curl -s -H "$H$TOKEN" -d '{"role":"viewer","tenant":"acme"}' "$B/v1/tokens" | jx 'd["token"]')
BTOK=$(curl -s -H "$H$TOKEN" -d '{"role":"viewer","tenant":"beta"}' "$B/v1/tokens" | jx 'd["token"]')
c=$(req "$ATOK" GET "/v1/billing/invoices/$INV")
[ "$c" = 200 ]
ok $? "acme's token reads its invoice"
c=$(req "$BTOK" GET "/v1/billing/invoices/$INV")
[ "$c" = 404 ]
ok $? "beta's token gets a 404 for acme's invoice ($c)"
req "$BTOK" GET "/v1/billing/invoices" >/dev/null
jx 'len(d["invoices"]) == 1 and d["invoices"][0]["tenant"] == "beta"' < "$D/body" >/dev/null
ok $? "beta's list holds beta's invoice only"
c=$(req "$ATOK" POST "/v1/billing/invoices/$INV/finalize")
[ "$c" = 403 ]
ok $? "a viewer token does not finalize ($c)"

c=$(req "$TOKEN" POST "/v1/billing/invoices/$INV/finalize")
[ "$c" = 200 ] && jx 'd["invoice"]["number"] == "INV-000001" and d["invoice"]["state"] == "finalized"' < "$D/body" >/dev/null
ok $? "an admin finalizes it: INV-000001 ($c)"
jx 'd["invoice"]["customer"]["name"] == "acme SAS" and d["invoice"]["customer"]["country"] == "FR"' < "$D/body" >/dev/null
ok $? "with the customer snapshotted from the tenant's config.billing"

c=$(req "$TOKEN" POST "/v1/billing/invoices/$INV/void" '{"why":"x"}')
[ "$c" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "why"' < "$D/body" >/dev/null
ok $? "an unknown field is a 400 naming it"
c=$(req "$TOKEN" POST "/v1/billing/invoices/$INV/credit_notes" '{"amount":"500","reason":"too much"}')
[ "$c" = 400 ] && jx '"left creditable" in d["error"]["message"] and d["error"]["details"]["errors"][0]["field"] == "amount"' < "$D/body" >/dev/null
ok $? "a credit note beyond what is left: 400 on amount ($(jx 'd["error"]["message"]' < "$D/body"))"
c=$(req "$TOKEN" POST "/v1/billing/invoices/$INV/credit_notes" '{"lines":[{"line":"subscription","amount":"10"}],"reason":"outage"}')
[ "$c" = 201 ] && jx 'd["credit_note"]["number"] == "CN-000001" and d["credit_note"]["total"] == "12.00"' < "$D/body" >/dev/null
ok $? "a credit note of 10 on the fee line: CN-000001, 12.00 with its TVA ($c)"
CN=$(jx 'd["credit_note"]["id"]' < "$D/body")
c=$(req "$ATOK" GET "/v1/billing/credit_notes/$CN")
[ "$c" = 200 ] && [ "$(req "$BTOK" GET "/v1/billing/credit_notes/$CN")" = 404 ]
ok $? "acme reads its credit note, beta does not"

BINV="inv_${SUBB}_${LAST}"
c=$(req "$TOKEN" POST "/v1/billing/invoices/$BINV/finalize")
[ "$c" = 200 ] && jx 'd["invoice"]["number"] == "INV-000002" and d["invoice"]["tax_total"] == "0.00"' < "$D/body" >/dev/null
ok $? "beta's invoice is INV-000002, no tax for DE (no rate, no default) ($c)"
c=$(req "$TOKEN" POST "/v1/billing/invoices/$BINV/void" '{"reason":"issued twice"}')
[ "$c" = 200 ] && jx 'd["invoice"]["state"] == "voided" and d["invoice"]["number"] == "INV-000002"' < "$D/body" >/dev/null
ok $? "voided, it keeps its number ($c)"
c=$(req "$TOKEN" POST "/v1/billing/invoices/$BINV/finalize")
[ "$c" = 409 ]
ok $? "a voided invoice is not finalized again: 409 ($c)"
out=$(beval 'return billing.invoices{ tenant = "acme" }')
echo "$out" | grep -q 'INV-000001' && echo "$out" | grep -q 'finalized' && echo "$out" | grep -q '127.20'
ok $? "the REPL: billing.invoices{tenant=} lists acme's invoice with its number and total"
out=$(beval 'return billing.credit_notes{ tenant = "acme" }')
echo "$out" | grep -q 'CN-000001' && beval 'return help()' | grep -q 'billing.invoices'
ok $? "the REPL: billing.credit_notes{} and their lines in help()"
req "$TOKEN" GET "/v1/billing/invoices?state=bogus" >/dev/null
jx 'd["error"]["details"]["errors"][0]["field"] == "state"' < "$D/body" >/dev/null
ok $? "a bad filter is a 400 naming it"
daemon_stop
"$BIN" audit -c "$D/steward.lua" --json --limit 1000 > "$D/audit" 2>/dev/null
[ "$(grep -c '"command":"billing.invoice.change"' "$D/audit")" -ge 3 ] && grep -q '"command":"billing.credit_note.create"' "$D/audit"
ok $? "finalizing, voiding and crediting are in the audit log"
exit $fail
