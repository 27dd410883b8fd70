#!/bin/bash
# POST /v1/billing/webhooks/stripe on a real daemon, fed by the Stripe-compatible peer: when
# the answer to a collection is lost, the signed payment_intent.succeeded pays its invoice; the same event delivered again is answered
# 200 as a duplicate and applied once; a bad signature, a stale one (a captured request played
# back later) and a missing one are refused 400 and written to the audit log; the route needs
# no token (Stripe has none) and refuses everything unsigned.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_payments.sh"
echo "1..13"
peer_start || exit 1
billing_secrets
billing_config "" "" 'timeout = "1s"'
daemon_start || exit 1
billing_catalog
IW=$(invoices_for acme 1)
W="http://127.0.0.1:$PORT/v1/billing/webhooks/stripe"

# The collection's answer is lost (the peer holds it past the client's 1 s timeout): only the
# webhook tells the daemon that the card was charged.
peer POST /_peer/hold '{"path":"/v1/payment_intents"}' >/dev/null
code=$(api POST /v1/billing/payments "{\"invoice\":\"$IW\"}")
[ "$code" = 502 ] && [ "$(invoice_state "$IW")" = finalized ]
ok $? "the answer lost: 502, the invoice still unpaid ($code)"
peer POST /_peer/release >/dev/null
peer GET /_peer/events > "$D/events"
EVT=$(jx 'd["events"][0]["id"]' <"$D/events")
[ -n "$EVT" ] && jx 'd["events"][0]["type"] == "payment_intent.succeeded"' <"$D/events" >/dev/null
ok $? "the peer made the event payment_intent.succeeded ($EVT)"
peer_webhook
peer POST /_peer/replay "{\"event\":\"$EVT\"}" > "$D/r1"
jx 'd["status"] == 200' <"$D/r1" >/dev/null
ok $? "its signed delivery is answered 200 ($(cat "$D/r1"))"
[ "$(invoice_state "$IW")" = paid ]
ok $? "the webhook paid the invoice"

# the event's body as Stripe sends it, signed here by Python's hmac: a duplicate
jx 'json.dumps([e for e in d["events"] if e["id"] == arg[0]][0] | {"deliveries": None}, separators=(",", ":"))' "$EVT" <"$D/events" |
    /usr/bin/python3 -c 'import sys,json; e=json.load(sys.stdin); e.pop("deliveries"); sys.stdout.write(json.dumps(e,separators=(",",":")))' > "$D/event.json"
sign() { /usr/bin/python3 -c 'import hmac,hashlib,sys,time
t=int(sys.argv[2]) if len(sys.argv)>2 else int(time.time())
b=open(sys.argv[1],"rb").read()
print("t=%d,v1=%s" % (t, hmac.new(sys.argv[3].encode(), b"%d." % t + b, hashlib.sha256).hexdigest()))' "$D/event.json" "${2:-$(date +%s)}" "$1"; }
post() { curl -s -o "$D/body" -w '%{http_code}' -H 'Content-Type: application/json; charset=utf-8' ${1:+-H "Stripe-Signature: $1"} --data-binary @"$D/event.json" "$W"; }
code=$(post "$(sign "$WHSEC")")
[ "$code" = 200 ] && jx 'd["duplicate"] == True and d["id"] == arg[0] and d["invoice"] == arg[1]' "$EVT" "$IW" <"$D/body" >/dev/null
ok $? "the same event again, signed anew: 200, a duplicate ($code $(cat "$D/body"))"
[ "$(invoice_state "$IW")" = paid ] && [ "$(events_of billing.invoice.paid)" = 1 ]
ok $? "the invoice is paid, once (billing.invoice.paid once)"
cnt=$(ev "return #require('steward.runtime.store').default().db:query(\"SELECT id FROM events WHERE type = 'billing.payment.succeeded'\")")
[ "$cnt" = 1 ]
ok $? "billing.payment.succeeded is in the log once ($cnt)"

code=$(post "$(sign whsec_wrong)")
[ "$code" = 400 ] && jx 'd["error"]["code"] == "bad_signature" and "no v1 signature matches" in d["error"]["message"]' <"$D/body" >/dev/null
ok $? "a signature with another secret: 400 bad_signature ($code)"
code=$(post "$(sign "$WHSEC" $(( $(date +%s) - 600 )))")
[ "$code" = 400 ] && jx '"tolerance 300 s" in d["error"]["message"]' <"$D/body" >/dev/null
ok $? "a signature 10 minutes old (a replayed capture): 400 naming the tolerance ($code)"
code=$(post "")
[ "$code" = 400 ] && jx '"no Stripe-Signature header" in d["error"]["message"]' <"$D/body" >/dev/null
ok $? "no signature: 400 ($code)"
peer POST /_peer/send "{\"event\":\"$EVT\",\"signature\":\"t=1,v1=00\"}" | jx 'd["status"] == 400' >/dev/null
ok $? "the peer's delivery with a forged header: 400"
"$BIN" audit -c "$D/steward.lua" --json > "$D/audit" 2>&1
/usr/bin/python3 -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
bad=[r for r in rows if r.get("command")=="billing.webhook.stripe" and r.get("outcome")=="refused"]
sys.exit(0 if len(bad)==4 and all(r.get("actor")=="stripe webhook" for r in bad) else 1)' "$D/audit"
ok $? "the four refusals are on the audit log, each with its reason"
grep -q 'billing.webhook.stripe' "$D/audit" && grep -q 'tolerance 300 s' "$D/audit"
ok $? "the audit entries carry the reason"
daemon_stop
exit $fail
