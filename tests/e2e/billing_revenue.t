#!/bin/bash
# GET /v1/billing/revenue (docs/billing/revenue.md) over invoices in the store: a yearly fee paid
# in advance is recognized day by day (March 2026: 17 of 365 days), a voided invoice nets to
# nothing, a credit note made by steward.billing.credit_notes takes its share back, every month
# reconciles (closing = opening + invoiced - recognized) and over the life Σ recognized =
# Σ invoiced; the paid basis leaves the unpaid invoice out; a tenant's token sees its own tenant
# only; a bad month is a 400 naming the parameter. The invoice rows are stored through
# steward.billing.invoice_record as finalized, paid or voided invoices.
set -u
. "$(dirname "$0")/../support/daemon.sh"
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..13"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@"; }

s1=$(api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"Acme","contact":{"email":"ops@acme.test"}}')
ACME=$(jx 'd["admin_token"]["token"]' < "$D/body")
s2=$(api "$TOKEN" POST /v1/tenants '{"id":"globex","name":"Globex","contact":{"email":"ops@globex.test"}}')
state() { api "$TOKEN" GET "/v1/tenants/$1" >/dev/null; [ "$(jx 'd["state"]' < "$D/body")" = "$2" ]; }
wait_for 20 state acme active && wait_for 20 state globex active
ok $? "tenants acme and globex are active ($s1 $s2)"

# store TENANT ID STATE KIND AMOUNT FROM TO FINALIZED [EXTRA]: one invoice row of one line
store() {
    ev "local st = require('steward.runtime.store').default()
      assert(require('steward.billing.invoices').ready(st))
      local D = require('steward.decimal').new
      local inv = { id = '$2', tenant = '$1', subscription = 'sub-$2', currency = 'EUR', series = 'INV',
        period = { from = $6, to = $7 }, issued = $8, due = $8 + 30 * 86400, finalized = $8,
        lines = { { id = 'l1', kind = '$4', amount = D('$5'), from = $6, to = $7 } },
        subtotal = D('$5'), discounts = {}, discount_total = D('0'), taxes = {}, tax_total = D('0'), credits = {},
        credit_total = D('0'), total = D('$5'), customer = { name = '$1' } }
      ${9:-}
      local body = require('steward.billing.invoice_record').stored(inv)
      return assert(st.db:exec('INSERT INTO billing_invoices (id, tenant, subscription, period_from, period_to, state, ' ..
        'series, seq, number, currency, total, body, created, updated, version) ' ..
        'VALUES (\$1, \$2, \$3, \$4, \$5, \$6, \$7, NULL, \$8, \$9, \$10, \$11, \$12, \$12, 1)',
        inv.id, inv.tenant, inv.subscription, inv.period.from, inv.period.to, '$3', 'INV', '$2', 'EUR',
        '$5', body, $8)).changes"
}
# 2026-03-15, 2027-03-15; 2026-01-01, 2026-02-01, 2026-02-03, 2026-02-10, 2026-03-20
MAR15=1773532800; MAR15N=1805068800; JAN1=1767225600; FEB1=1769904000; FEB3=1770076800; FEB10=1770681600; MAR20=1773964800
r=$(store acme acme-year paid subscription 1200.00 $MAR15 $MAR15N $MAR15 "inv.paid = $MAR20")
r=$r$(store acme acme-jan voided charge 49.00 $JAN1 $FEB1 $FEB3 "inv.voided = $FEB10")
r=$r$(store globex globex-1 finalized subscription 99.00 $JAN1 $FEB1 $JAN1)
cn=$(ev "local cn, err = require('steward.billing.credit_notes').create(require('steward.runtime.store').default(),
    'acme-year', { amount = '120.00', reason = 'service outage in April' }, 1777593600) return cn and cn.total:format(2) or err")
ok $([ "$r" = 111 ] && [ "$cn" = '"120.00"' ]; echo $?) "invoices stored ($r), a credit note of 120.00 on acme's yearly invoice ($cn)"

# check FILE PYTHON: asserts on the report d (amounts as strings, exact with Decimal)
check() { /usr/bin/python3 -c "
import json, sys
from decimal import Decimal as X
d = json.load(open('$D/body'))
rows = d['months']
$1
" 2>&1; }

s=$(api "$TOKEN" GET '/v1/billing/revenue?tenant=acme')
out=$(check "
for i, r in enumerate(rows):
    assert X(r['deferred_closing']) == X(r['deferred_opening']) + X(r['invoiced']) - X(r['recognized']), r
    if i: assert r['deferred_opening'] == rows[i-1]['deferred_closing'], (r, rows[i-1])
inv = sum(X(r['invoiced']) for r in rows); rec = sum(X(r['recognized']) for r in rows)
assert inv == rec == X('1080'), (inv, rec)
assert X(rows[-1]['deferred_closing']) == 0
assert rows[0]['month'] == '2026-01' and rows[-1]['month'] == '2027-03', (rows[0], rows[-1])
print('ok')")
ok $([ "$s" = 200 ] && [ "$out" = ok ]; echo $?) "acme's report: every month reconciles, Σ recognized = Σ invoiced = 1080 ($s $out)"
out=$(check "
m = {r['month']: r for r in rows}
assert m['2026-01']['recognized'] == '49' and m['2026-02']['recognized'] == '-49', (m['2026-01'], m['2026-02'])
assert m['2026-02']['invoiced'] == '0' and m['2026-03']['recognized'] == '55.89' and m['2026-03']['invoiced'] == '1200', m['2026-03']
assert m['2026-05']['invoiced'] == '-120', [r for r in rows if X(r['invoiced']) < 0]
assert isinstance(m['2026-04']['recognized'], str)
print('ok')")
ok $([ "$out" = ok ]; echo $?) "January's usage earned, then invoiced and voided in February (reversed there), March 55.89 of the year, the credit note in May ($out)"

s=$(api "$TOKEN" GET '/v1/billing/revenue?tenant=acme&basis=paid&from=2026-01&to=2026-03')
out=$(check "
assert d['basis'] == 'paid' and [r['month'] for r in rows] == ['2026-01', '2026-02', '2026-03'], rows
assert all(X(r['invoiced']) == 0 for r in rows[:2]) and rows[2]['invoiced'] == '1200', rows
print('ok')")
ok $([ "$s" = 200 ] && [ "$out" = ok ]; echo $?) "basis=paid: the unpaid voided invoice is out, the paid one counts from its payment ($s $out)"

s=$(api "$ACME" GET '/v1/billing/revenue')
out=$(check "
assert d['tenant'] == 'acme' and sum(X(r['invoiced']) for r in rows) == X('1080'), d
print('ok')")
ok $([ "$s" = 200 ] && [ "$out" = ok ]; echo $?) "acme's token: acme's report only ($s $out)"
s=$(api "$ACME" GET '/v1/billing/revenue?tenant=globex')
ok $([ "$s" = 404 ]; echo $?) "acme's token asking for globex's: 404 ($s)"
s=$(api "$TOKEN" GET '/v1/billing/revenue')
out=$(check "
assert sum(X(r['invoiced']) for r in rows) == X('1179'), rows
print('ok')")
ok $([ "$s" = 200 ] && [ "$out" = ok ]; echo $?) "no tenant: every tenant's invoices (1080 + 99) ($s $out)"
s=$(api "$TOKEN" GET '/v1/billing/revenue?from=2026-13')
ok $([ "$s" = 400 ] && grep -q '"field":"from"' "$D/body"; echo $?) "from=2026-13: 400 naming from ($s)"
s=$(api "$TOKEN" GET '/v1/billing/revenue?basis=cash')
ok $([ "$s" = 400 ] && grep -q '"field":"basis"' "$D/body"; echo $?) "basis=cash: 400 naming basis ($s)"

# the REPL's billing.revenue{}, through steward eval (a REPL session in the live daemon)
out=$(ev "local r = billing.revenue{ tenant = 'acme', from = '2026-03', to = '2026-04' }
  return r[1].month .. ' ' .. r[1].recognized .. ' ' .. r[2].deferred_closing")
ok $([ "$out" = '"2026-03 55.89 1045.48"' ]; echo $?) "the REPL's billing.revenue{tenant=, from=, to=}: rows with exact amounts ($out)"

# docs/billing/revenue.md's REPL block: its expression through steward eval prints its table
awk -v m="<!-- revenue: repl -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
    "$here/docs/billing/revenue.md" > "$D/repl.block"
expr=$(head -1 "$D/repl.block" | sed 's/^steward> //')
ev "$expr" > "$D/repl.out"
tail -n +2 "$D/repl.block" | diff - "$D/repl.out" > "$D/repl.diff"
ok $? "the page's REPL block prints what the page shows ($(head -c 300 "$D/repl.diff"))"

# docs/billing/revenue.md's curl block, run as written (our port): the answer the page shows
awk -v m="<!-- revenue: report -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
    "$here/docs/billing/revenue.md" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" > "$D/block.sh"
bash "$D/block.sh" > "$D/answer.json"
out=$(/usr/bin/python3 - "$here/docs/billing/revenue.md" "$D/answer.json" <<'PY'
import json, re, sys
page = open(sys.argv[1]).read()
want = json.loads(re.search(r"<!-- revenue: report -->\n```sh\n.*?```\n\n```json\n(.*?)```", page, re.S).group(1))
got = json.load(open(sys.argv[2]))
print("ok" if got == want else f"got {got}")
PY
)
ok $([ "$out" = ok ]; echo $?) "the page's report block answers the JSON the page shows ($out)"
daemon_stop
exit $fail
