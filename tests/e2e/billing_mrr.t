#!/bin/bash
# docs/billing/mrr.md followed block by block against a daemon with the shipped policies/billing:
# tenants and plans by API, real subscriptions (creations, an upgrade, terminations, a downgrade
# that starts on its durable timer, a return) dated in the past through the admin socket, then
# GET /v1/billing/mrr (each month's movements, the identity on the shown and the exact values,
# EUR apart), GET /v1/billing/cohorts, a tenant's token refused, bad parameters named, the
# REPL's billing.mrr{}, and a termination by API that raises billing.churn_risk through the policy.
set -u
. "$(dirname "$0")/../support/daemon.sh"
W="$D/run"
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/billing/mrr.md"
}
sh_block() {
    block "$1" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s#^steward #\"$BIN\" #" > "$W/$1.sh"
    (cd "$W" && PATH="/usr/bin:$PATH" TOKEN="$TOKEN" bash "$W/$1.sh")
}
mkdir -p "$D/var" "$W" && ln -s "$D/var" "$W/var"
mkdir -p "$D/policies/billing"
for f in "$here"/policies/billing/*.lua; do
    case "$f" in *_spec.lua) ;; *) cp "$f" "$D/policies/billing/" ;; esac
done
daemon_config "$(block steward.lua)"
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 1; }
B="http://127.0.0.1:$PORT"
api() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }
PY=/usr/bin/python3
# okd STATUS NAME FILE: ok, and on a failure the file it read, as TAP comments
okd() { local st=$1; ok "$st" "$2"; [ "$st" -eq 0 ] || sed 's/^/# /' "$3"; }

sh_block tenants > "$D/tenants"
[ "$(grep -c '"state":"requested"' "$D/tenants")" -eq 4 ]
okd $? "tenants: acme, bolt, cyan and euro by API" "$D/tenants"

sh_block plans > "$D/plans"
[ "$(grep -c '"version":1' "$D/plans")" -eq 6 ]
okd $? "plans: six plans by API" "$D/plans"

block history.lua > "$W/history.lua"
sh_block history > "$D/history" 2>&1
grep -q "ok" "$D/history"
okd $? "history: plans and subscriptions made through steward.billing.subscriptions" "$D/history"


# acme's downgrade starts on June 1st through its durable timer (that date is past: at once)
june() {
    api "$B/v1/billing/mrr?from=2026-06&to=2026-06&currency=USD" | jx 'd["mrr"][0]["contraction"] == "50.00"' >/dev/null
}
wait_for 15 june
ok $? "the downgrade's subscription started on its timer: June's contraction"

sh_block mrr > "$D/mrr"
"$PY" - "$D/mrr" <<'PY'
import json, sys
from decimal import Decimal as D
rows = json.load(open(sys.argv[1]))["mrr"]
want = {  # month: start, new, expansion, contraction, churn, reactivation, end
    "2026-01": ("0.00", "200.00", "0.00", "0.00", "0.00", "0.00", "200.00"),
    "2026-02": ("200.00", "0.00", "50.00", "0.00", "0.00", "0.00", "250.00"),
    "2026-03": ("250.00", "0.00", "0.00", "0.00", "100.00", "0.00", "150.00"),
    "2026-04": ("150.00", "0.00", "20.00", "0.00", "0.00", "0.00", "170.00"),
    "2026-05": ("170.00", "0.00", "0.00", "20.00", "0.00", "108.33", "258.33"),
    "2026-06": ("258.33", "0.00", "0.00", "50.00", "0.00", "0.00", "208.33"),
}
keys = ("mrr_start", "new", "expansion", "contraction", "churn", "reactivation", "mrr_end")
got = {r["month"]: tuple(r[k] for k in keys) for r in rows if r["currency"] == "USD"}
bad = [m for m in want if got.get(m) != want[m]]
for m in bad: print("# %s: got %s, want %s" % (m, got.get(m), want[m]))
for r in rows:
    s, n, e, c, ch, re, end = (D(r[k]) for k in keys)
    if s + n + e - c - ch + re != end: bad.append(r["month"]); print("# does not reconcile:", r)
sys.exit(1 if bad or len(rows) != 6 else 0)
PY
ok $? "mrr: January new, February expansion (cyan's new-then-churn unseen), March churn, April expansion, May contraction and reactivation, June's downgrade; each month reconciles"

api "$B/v1/billing/mrr?from=2026-01&to=2026-05&currency=USD&exact=true" > "$D/exact"
"$PY" - "$D/exact" <<'PY'
import json, sys
from fractions import Fraction as F
rows = json.load(open(sys.argv[1]))["mrr"]
keys = ("mrr_start", "new", "expansion", "contraction", "churn", "reactivation", "mrr_end")
prev, good = None, True
for r in rows:
    s, n, e, c, ch, re, end = (F(r[k]) for k in keys)
    good = good and s + n + e - c - ch + re == end and (prev is None or prev == s)
    prev = end
sys.exit(0 if good and rows[-1]["reactivation"] == "325/3" and rows[-1]["mrr_end"] == "775/3" else 1)
PY
ok $? "mrr exact: 25 a week is 325/3 a month; every month reconciles exactly and chains into the next"

api "$B/v1/billing/mrr?from=2026-01&to=2026-01" | jx '[[r["currency"], r["mrr_end"]] for r in d["mrr"]] == [["EUR", "10.00"], ["USD", "200.00"]]' >/dev/null
ok $? "mrr: one series per currency (EUR quarterly 30 is 10.00 a month), no exchange rate"

# a trial pays nothing: dune starts on July 25th with a 14-day trial, so it is new in August
api "$B/v1/tenants" -d '{"id": "dune", "name": "dune"}' >/dev/null
api "$B/v1/billing/plans" -d '{"code": "trial", "name": "trial", "interval": "monthly", "amount": "40", "currency": "USD", "trial_days": 14}' >/dev/null
"$BIN" eval --socket "$D/var/steward.sock" 'local s = require("steward.billing.subscriptions")
  local at = 1767225600 + (181 + 24) * 86400 -- 2026-07-25
  return assert(s.create({ tenant = "dune", plan = "trial", started = at }, at)).trial_ends - at' > "$D/trial" 2>&1
api "$B/v1/billing/mrr?from=2026-07&to=2026-08&tenant=dune" |
    jx '[[r["month"], r["new"], r["mrr_end"]] for r in d["mrr"]] == [["2026-07", "0.00", "0.00"], ["2026-08", "40.00", "40.00"]]' > "$D/trial-mrr" 2>&1
okd $? "a 14-day trial from July 25th pays nothing in July: new in August" "$D/trial"

api "$B/v1/billing/mrr?from=2026-05&to=2026-05&currency=USD&detail=true" |
    jx 'sorted([m["tenant"], m["kind"], m["amount"]] for m in d["mrr"][0]["movements"]) == [["acme", "contraction", "20.00"], ["bolt", "reactivation", "108.33"]]' >/dev/null
ok $? "mrr detail: May's movements per tenant"

sh_block cohorts > "$D/cohorts"
jx '[[c["cohort"], c["size"], c["mrr"], [[m["customers"], m["logo_retention"], m["revenue_retention"]] for m in c["months"]]] for c in d["cohorts"]] == [["2026-01", 2, "200.00", [[2, "100.00", "100.00"], [2, "100.00", "125.00"], [1, "50.00", "75.00"], [1, "50.00", "85.00"], [2, "100.00", "129.17"], [2, "100.00", "104.17"]]]]' < "$D/cohorts" >/dev/null
okd $? "cohorts: January's logos and net revenue month by month (bolt's return counts in its cohort)" "$D/cohorts"

api -d '{"role": "operator", "tenant": "acme", "name": "acme-app"}' "$B/v1/tokens" > "$D/acme-token"
ACME=$(jx 'd["token"]' < "$D/acme-token")
code=$(curl -s -o "$D/403" -w '%{http_code}' -H "Authorization: Bearer $ACME" "$B/v1/billing/mrr")
[ "$code" = 403 ] && grep -q "not tenant-scoped" "$D/403"
ok $? "a tenant's token is refused: 403"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ACME" "$B/v1/billing/cohorts")
[ "$code" = 403 ]
ok $? "... on cohorts too"

code=$(curl -s -o "$D/400" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B/v1/billing/mrr?currency=XXY")
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "currency"' < "$D/400" >/dev/null
ok $? "an unknown currency is a 400 naming currency"
code=$(curl -s -o "$D/400" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B/v1/billing/cohorts?from=2026-13")
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "from"' < "$D/400" >/dev/null
ok $? "a bad month is a 400 naming from"
code=$(curl -s -o "$D/400" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B/v1/billing/mrr?from=2026-05&to=2026-01")
[ "$code" = 400 ]
ok $? "to before from is a 400"

sh_block repl > "$D/repl" 2>&1
grep -q "mrr_start" "$D/repl" && grep -q "2026-05.*108.33.*258.33" "$D/repl"
okd $? "repl: billing.mrr{} shows the months" "$D/repl"

"$BIN" eval --socket "$D/var/steward.sock" 'billing.cohorts{from = "2026-01", to = "2026-06", currency = "USD"}' > "$D/repl-cohorts" 2>&1
grep -q "2026-01.*100.00 100.00 50.00 50.00 100.00 100.00.*100.00 125.00 75.00 85.00 129.17 104.17" "$D/repl-cohorts"
okd $? "repl: billing.cohorts{} shows January's retention month by month" "$D/repl-cohorts"
"$BIN" eval --socket "$D/var/steward.sock" 'billing.churn{tenant = "acme"}' > "$D/repl-churn" 2>&1
grep -q "acme.*2026-05-04.*downgrade.*60" "$D/repl-churn" && grep -q "acme.*2026-05-04.*contraction.*30" "$D/repl-churn"
okd $? "repl: billing.churn{} lists acme's signals" "$D/repl-churn"

sh_block churn > "$D/churn" 2>&1
grep -q '"state":"terminated"' "$D/churn"
okd $? "churn: bolt's subscription terminated by API" "$D/churn"
# bolt churned in March (the week of 02-23, from the history) and now again: two signals
signalled() {
    api "$B/v1/events?type=billing.churn_risk&tenant=bolt" |
        jx '[[e["data"]["reason"], e["data"]["reasons"], e["data"]["score"]] for e in d["events"] if e["data"]["week"] != "2026-02-23"] == [["churn", ["churn"], 60]] and len(d["events"]) == 2' >/dev/null
}
wait_for 15 signalled
okd $? "churn: bolt's last subscription ended: billing.churn_risk this week with reason churn, score 60" "$D/churn"

api "$B/v1/events?type=billing.churn_risk&tenant=acme" > "$D/acme-risk"
jx '[[e["data"]["reason"], e["data"]["week"], e["data"]["reasons"], e["data"]["score"]] for e in d["events"]] == [["contraction", "2026-05-04", ["contraction"], 30], ["downgrade", "2026-05-04", ["contraction", "downgrade"], 60]]' < "$D/acme-risk" >/dev/null
okd $? "churn: acme's second subscription ended (it keeps max): contraction; its downgrade the same week adds up to 60" "$D/acme-risk"

daemon_stop
echo "1..$n"
exit $fail
