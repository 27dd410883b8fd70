#!/bin/bash
# Invoices over HTTP (docs/billing/rendering.md) on a real daemon with the shipped billing
# policies: a tenant with hostile branding (its brand name carries <script>) subscribes to a
# metered plan, its usage is recorded, the invoicing policy builds last month's invoice (TVA
# from the tenant's config.billing country) and an admin finalizes it;
# GET /v1/billing/invoices/{id}/html escapes the brand, /pdf (WeasyPrint, off the loop) read
# back with pdftotext shows the number, the total and the tenant's legal text; {id}.pdf and {id}.html answer the same; a tenant's token reads its own invoice and gets
# a 404 for another's; the page's curl block runs as written; the revenue report reads the
# real invoice (docs/billing/revenue.md).
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_setup.sh"
command -v weasyprint >/dev/null || { echo "1..0 # SKIP weasyprint is not installed (Debian package weasyprint)"; exit 0; }
command -v pdftotext >/dev/null || { echo "1..0 # SKIP pdftotext is not installed (Debian package poppler-utils)"; exit 0; }
billing_policies
daemon_config 'tenants = { plans = { basic = {} } },
  billing = { currency = "EUR", grace_period = "90d", net_payment_days = 30,
              invoices = { issuer = { name = "Steward Ops Ltd", address = "1 Ops Way", legal = "Registered in England 0000001" } },
              taxes = { rates = { { country = "FR", rate = "20", name = "TVA" } } } },'
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..19"
B="http://127.0.0.1:$PORT"
api() { curl -s -o "$D/body" -D "$D/headers" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "$B$3"; }

# acme: billing details, and a brand whose name is markup and whose footer is its legal text
s1=$(api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"acme corp","plan":"basic",
  "config":{"billing":{"country":"FR","legal_name":"acme SAS","email":"billing@acme.example","address":"1 rue de la Paix\n75002 Paris","tax_id":"FR12345678901"}},
  "branding":{"name":"<script>alert(1)</script> Acme","color":"#ff6600","footer":"Acme SAS, RCS Paris 123 456 789"}}')
s2=$(api "$TOKEN" POST /v1/tenants '{"id":"globex","name":"globex corp","plan":"basic"}')
tenant_active() { api "$TOKEN" GET "/v1/tenants/$1" >/dev/null; [ "$(jx 'd["state"]' < "$D/body")" = active ]; }
wait_for 20 tenant_active acme && wait_for 20 tenant_active globex
ok $? "tenants acme (hostile brand name) and globex are active ($s1 $s2)"
billing_catalog
LAST=$(month_start -1)
SUB=$(billing_subscribe acme "$LAST" | tr -d '"')
SUBG=$(billing_subscribe globex "$LAST" | tr -d '"')
/usr/bin/python3 - "$SUB" "$SUBG" "$LAST" > "$D/usage.json" <<'PY'
import json, sys
sub, subg, last = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(json.dumps([{"id": "u-%s-%d" % (s, i), "type": "billing.usage", "tenant": t,
       "data": {"transaction_id": "t%d" % i, "subscription": s, "code": "api_calls", "timestamp": last + 3600 + i}}
      for s, t, n in ((sub, "acme", 120), (subg, "globex", 10)) for i in range(n)]))
PY
c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" --data-binary @"$D/usage.json" "$B/v1/events")
recorded() { [ "$(beval "return require('steward.billing.usage').count({ subscription = '$1' })")" = "$2" ]; }
wait_for 20 recorded "$SUB" 120 && wait_for 20 recorded "$SUBG" 10
ok $? "subscriptions and usage recorded ($c): 120 calls for acme, 10 for globex"
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"type":"policy.schedule","data":{"policy":"billing.invoicing"}}' "$B/v1/events"
INV="inv_${SUB}_${LAST}"
INVG="inv_${SUBG}_${LAST}"
built() { [ "$(api "$TOKEN" GET "/v1/billing/invoices/$1")" = 200 ]; }
wait_for 20 built "$INV" && wait_for 20 built "$INVG"
c1=$(api "$TOKEN" POST "/v1/billing/invoices/$INV/finalize")
NUM=$(jx 'd["invoice"]["number"]' < "$D/body")
c2=$(api "$TOKEN" POST "/v1/billing/invoices/$INVG/finalize")
ok $([ "$c1" = 200 ] && [ "$c2" = 200 ] && [ -n "$NUM" ]; echo $?) "last month's invoices built by the policy and finalized ($NUM)"

s=$(api "$TOKEN" GET "/v1/billing/invoices/$INV/html")
ok $([ "$s" = 200 ] && grep -qi '^content-type: text/html' "$D/headers"; echo $?) "GET .../html: 200 text/html ($s)"
ok $(grep -q "Invoice $NUM" "$D/body" && grep -q 'EUR&nbsp;0.05' "$D/body" && grep -q 'TVA 20%</td><td class="num">EUR&nbsp;21.20' "$D/body" \
    && grep -q 'Total due</td><td class="num">EUR&nbsp;127.20' "$D/body"; echo $?) \
    "the page: number, unit price, TVA 20% and total (fee 100 + 120 calls at 0.05, + 21.20) at the currency's scale"
ok $(grep -q 'acme SAS<br>1 rue de la Paix<br>75002 Paris' "$D/body" && grep -q 'Tax ID: FR12345678901' "$D/body" \
    && grep -q '120 events' "$D/body" && grep -q 'Payment due by .* (net 30 days)' "$D/body"; echo $?) \
    "the customer snapshot (legal name, address, tax id), the usage behind the charge line, the payment terms"
ok $(! grep -q '<script>' "$D/body" && grep -q '&lt;script&gt;alert(1)&lt;/script&gt; Acme' "$D/body"; echo $?) \
    "the tenant's brand name is escaped: no <script> in the page"
ok $(grep -qi "^content-security-policy: default-src 'none'" "$D/headers"; echo $?) "the page is served with a CSP that runs no script"

s=$(api "$TOKEN" GET "/v1/billing/invoices/$INV/pdf")
cp "$D/body" "$D/inv.pdf"
ok $([ "$s" = 200 ] && grep -qi '^content-type: application/pdf' "$D/headers" && [ "$(head -c 5 "$D/inv.pdf")" = "%PDF-" ]; echo $?) \
    "GET .../pdf: 200 application/pdf ($s)"
pdftotext -layout "$D/inv.pdf" "$D/inv.txt"
ok $(grep -q "$NUM" "$D/inv.txt" && grep -q 'Total due *EUR 127.20' "$D/inv.txt" && grep -q 'Acme SAS, RCS Paris 123 456 789' "$D/inv.txt"; echo $?) \
    "pdftotext: the number, the total and the tenant's legal text"
ok $(grep -q 'Steward Ops Ltd' "$D/inv.txt" && grep -q '1 Ops Way' "$D/inv.txt" && grep -q 'Registered in England 0000001' "$D/inv.txt" \
    && [ "$(beval "return require('steward.billing.invoices').get('$INV').issuer.name")" = "Steward Ops Ltd" ]; echo $?) \
    "pdftotext: the issuer (billing.invoices.issuer) snapshotted on the finalized invoice: name, address, legal text"
s=$(api "$TOKEN" GET "/v1/billing/invoices/$INV.pdf")
s2=$(api "$TOKEN" GET "/v1/billing/invoices/$INV.html")
ok $([ "$s" = 200 ] && [ "$s2" = 200 ] && grep -q "Invoice $NUM" "$D/body"; echo $?) "{id}.pdf and {id}.html answer the same ($s $s2)"

ATOK=$(curl -s -H "Authorization: Bearer $TOKEN" -d '{"role":"viewer","tenant":"acme"}' "$B/v1/tokens" | jx 'd["token"]')
s=$(api "$ATOK" GET "/v1/billing/invoices/$INV/pdf")
ok $([ "$s" = 200 ]; echo $?) "acme's token reads its own invoice's PDF ($s)"
s=$(api "$ATOK" GET "/v1/billing/invoices/$INVG/html")
ok $([ "$s" = 404 ] && ! grep -q 'globex' "$D/body"; echo $?) "acme's token asking for globex's invoice: 404, nothing of it shown ($s)"
s=$(api "$ATOK" GET "/v1/billing/invoices/$INVG.pdf")
s2=$(api "$ATOK" GET "/v1/billing/invoices/$INVG/pdf")
ok $([ "$s" = 404 ] && [ "$s2" = 404 ]; echo $?) "... and its PDF, either form: 404 ($s $s2)"
s=$(api "$TOKEN" GET /v1/billing/invoices/nope/html)
ok $([ "$s" = 404 ]; echo $?) "an unknown invoice: 404 ($s)"
s=$(api "" GET "/v1/billing/invoices/$INV/pdf")
ok $([ "$s" = 401 ]; echo $?) "no token: 401 ($s)"

# the same real invoice in the revenue report: last month's fee (ratable) and usage (at the
# period's end) earned last month, invoiced this month when finalized
s=$(api "$TOKEN" GET "/v1/billing/revenue?tenant=acme")
out=$(/usr/bin/python3 -c "
import json
rows = json.load(open('$D/body'))['months']
assert [(r['invoiced'], r['recognized'], r['deferred_closing']) for r in rows] == [('0', '106', '-106'), ('106', '0', '0')], rows
print('ok')" 2>&1)
ok $([ "$s" = 200 ] && [ "$out" = ok ]; echo $?) "the revenue report of the real invoice: 106 (its TVA is not revenue) earned last month, invoiced this month ($s $out)"

# docs/billing/rendering.md's block, run as written (our port, our invoice id, in a directory of ours)
awk -v m="<!-- rendering: pdf -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
    "$here/docs/billing/rendering.md" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s/inv_sub_42_1793491200/$INV/g" > "$D/block.sh"
out=$(cd "$D" && bash "$D/block.sh")
ok $(echo "$out" | grep -q 'Total due *EUR 127.20'; echo $?) "the page's curl | pdftotext block prints the total ($out)"
daemon_stop
exit $fail
