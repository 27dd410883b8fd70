#!/bin/bash
# Invoices over HTTP (docs/billing/rendering.md): GET /v1/billing/invoices/{id}/html and /pdf
# for a tenant with hostile branding (its brand name carries <script>): the page escapes it,
# the PDF (WeasyPrint, off the loop) read back with pdftotext shows the number, the total and
# the tenant's legal text; a tenant's token reads its own invoice and gets a 404 for another's.
# The invoices are stored through steward.billing.invoice_record into billing_invoices as a
# finalized invoice row (the plans and subscriptions that build real ones are another part).
set -u
. "$(dirname "$0")/../support/daemon.sh"
command -v weasyprint >/dev/null || { echo "1..0 # SKIP weasyprint is not installed (Debian package weasyprint)"; exit 0; }
command -v pdftotext >/dev/null || { echo "1..0 # SKIP pdftotext is not installed (Debian package poppler-utils)"; exit 0; }
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..14"
api() { curl -s -o "$D/body" -D "$D/headers" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@"; }

s1=$(api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"Acme","contact":{"email":"ops@acme.test"},
  "branding":{"name":"<script>alert(1)</script> Acme","color":"#ff6600",
  "footer":"Acme SAS, RCS Paris 123 456 789"}}')
ACME=$(jx 'd["admin_token"]["token"]' < "$D/body")
s2=$(api "$TOKEN" POST /v1/tenants '{"id":"globex","name":"Globex","contact":{"email":"ops@globex.test"}}')
state() { api "$TOKEN" GET "/v1/tenants/$1" >/dev/null; [ "$(jx 'd["state"]' < "$D/body")" = "$2" ]; }
wait_for 20 state acme active && wait_for 20 state globex active
ok $? "tenants acme (hostile brand name) and globex are active ($s1 $s2)"

# store(tenant, id, number, total): one finalized invoice row, as steward.billing.invoices keeps it
store() {
    ev "local st = require('steward.runtime.store').default()
      assert(require('steward.billing.invoices').ready(st))
      local D = require('steward.decimal').new
      local inv = { id = '$2', tenant = '$1', subscription = 'sub-$1', currency = 'EUR', series = 'INV',
        period = { from = 1793491200, to = 1796083200 }, issued = 1796083200, due = 1798675200, finalized = 1796083200,
        lines = { { id = 'l1', kind = 'subscription', description = 'Pro plan', units = D('1'), unit_amount = D('$4'),
          amount = D('$4'), from = 1793491200, to = 1796083200 } },
        subtotal = D('$4'), discounts = {}, discount_total = D('0'), taxes = {}, tax_total = D('0'), credits = {},
        credit_total = D('0'), total = D('$4'), customer = { name = '$1 legal name', country = 'FR' } }
      local body = require('steward.billing.invoice_record').stored(inv)
      return assert(st.db:exec('INSERT INTO billing_invoices (id, tenant, subscription, period_from, period_to, state, ' ..
        'series, seq, number, currency, total, body, created, updated, version) ' ..
        'VALUES (\$1, \$2, \$3, \$4, \$5, \$6, \$7, \$8, \$9, \$10, \$11, \$12, \$13, \$13, 1)',
        inv.id, inv.tenant, inv.subscription, inv.period.from, inv.period.to, 'finalized', 'INV', $5, '$3', 'EUR',
        '$4', body, 1796083200)).changes"
}
r1=$(store acme inv-acme-1 INV-000007 1234.50 7)
r2=$(store globex inv-globex-1 INV-000008 99.00 8)
ok $([ "$r1" = 1 ] && [ "$r2" = 1 ]; echo $?) "two finalized invoices stored ($r1 $r2)"

s=$(api "$TOKEN" GET /v1/billing/invoices/inv-acme-1/html)
ok $([ "$s" = 200 ] && grep -qi '^content-type: text/html' "$D/headers"; echo $?) "GET .../html: 200 text/html ($s)"
ok $(grep -q 'Invoice INV-000007' "$D/body" && grep -q 'EUR&nbsp;1,234.50' "$D/body"; echo $?) "the page: number and total at the currency's scale"
ok $(! grep -q '<script>' "$D/body" && grep -q '&lt;script&gt;alert(1)&lt;/script&gt; Acme' "$D/body"; echo $?) \
    "the tenant's brand name is escaped: no <script> in the page"
ok $(grep -qi "^content-security-policy: default-src 'none'" "$D/headers"; echo $?) "the page is served with a CSP that runs no script"

s=$(api "$TOKEN" GET /v1/billing/invoices/inv-acme-1/pdf)
cp "$D/body" "$D/inv.pdf"
ok $([ "$s" = 200 ] && grep -qi '^content-type: application/pdf' "$D/headers" && [ "$(head -c 5 "$D/inv.pdf")" = "%PDF-" ]; echo $?) \
    "GET .../pdf: 200 application/pdf ($s)"
pdftotext -layout "$D/inv.pdf" "$D/inv.txt"
ok $(grep -q 'INV-000007' "$D/inv.txt" && grep -q 'EUR 1,234.50' "$D/inv.txt" && grep -q 'Acme SAS, RCS Paris 123 456 789' "$D/inv.txt"; echo $?) \
    "pdftotext: the number, the total and the tenant's legal text"

s=$(api "$ACME" GET /v1/billing/invoices/inv-acme-1/pdf)
ok $([ "$s" = 200 ]; echo $?) "acme's token reads its own invoice's PDF ($s)"
s=$(api "$ACME" GET /v1/billing/invoices/inv-globex-1/html)
ok $([ "$s" = 404 ] && ! grep -q 'INV-000008' "$D/body"; echo $?) "acme's token asking for globex's invoice: 404, nothing of it shown ($s)"
s=$(api "$ACME" GET /v1/billing/invoices/inv-globex-1/pdf)
ok $([ "$s" = 404 ]; echo $?) "... and its PDF: 404 ($s)"
s=$(api "$TOKEN" GET /v1/billing/invoices/nope/html)
ok $([ "$s" = 404 ]; echo $?) "an unknown invoice: 404 ($s)"
s=$(api "" GET /v1/billing/invoices/inv-acme-1/pdf)
ok $([ "$s" = 401 ]; echo $?) "no token: 401 ($s)"

# docs/billing/rendering.md's block, run as it is written (our port, in a directory of ours)
r=$(store acme inv_sub_42_1793491200 INV-000042 1234.50 42)
awk -v m="<!-- rendering: pdf -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
    "$here/docs/billing/rendering.md" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" > "$D/block.sh"
out=$(cd "$D" && bash "$D/block.sh")
ok $([ "$r" = 1 ] && echo "$out" | grep -q 'Total due *EUR 1,234.50'; echo $?) "the page's curl | pdftotext block prints the total ($out)"
daemon_stop
exit $fail
