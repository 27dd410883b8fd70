#!/bin/bash
# Support tickets end to end, with the shipped policies/success/tickets.lua: a ticket filed by a
# tenant's token (and refused for another tenant), routed to its queue; filed by mail through
# an aiosmtpd relay that posts the message as message/rfc822 (tests/support/success_relay.py),
# once per Message-ID, and a multipart mail refused with the header named; an SLA that passes
# with the ticket open raises TicketSLABreached in the alerting pipeline; closing the ticket
# mails the CSAT survey (aiosmtpd, tests/support/mail_server.py) whose signed link answers a
# form and records the score once; CSAT and usage figures per tenant.
set -u
. "$(dirname "$0")/../support/daemon.sh"
PY=/usr/bin/python3
MPID=
LPID=
cleanup_all() {
    [ -n "$MPID" ] && kill "$MPID" 2>/dev/null
    [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
    daemon_cleanup
}
trap cleanup_all EXIT
H="Authorization: Bearer "

# the SMTP server that receives the CSAT mail
mkfifo "$D/mport"
"$PY" "$here/tests/support/mail_server.py" "$D/mail.jsonl" > "$D/mport" &
MPID=$!
read -r SP < "$D/mport"

mkdir -p "$D/policies/success"
for f in "$here"/policies/success/*.lua; do
    case "$f" in *_spec.lua) ;; *) cp "$f" "$D/policies/success/" ;; esac
done
daemon_config "tenants = { plans = { basic = {}, enterprise = {} } },
  policy_config = { [\"success.tickets\"] = {
    rules = { { match = { severity = \"urgent\" }, queue = \"urgent\", sla = \"1s\" },
              { match = { plan = \"enterprise\" }, queue = \"enterprise\" } },
    csat = { channel = \"email\", url = \"smtp://127.0.0.1:$SP\", from = \"support@example.org\" } } },"
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 1; }
B="http://127.0.0.1:$PORT"
api() { curl -s -H "$H$TOKEN" "$@"; }
code() { curl -s -o "$D/out" -w '%{http_code}' "$@"; }
token() { api -d "{\"role\":\"operator\",\"tenant\":\"$1\"}" "$B/v1/tokens" | jx 'd["token"]'; }
ACME=$(token acme)
BETA=$(token beta)

# ---- by API ----
c=$(code -H "$H$ACME" -d '{"subject":"cannot log in","requester":"ann@acme.example","severity":"urgent"}' "$B/v1/tickets")
ID=$(jx 'd["ticket"]["id"]' < "$D/out")
[ "$c" = 201 ] && [ "$(jx 'd["ticket"]["tenant"]' < "$D/out")" = acme ]
ok $? "a tenant's token files a ticket for its tenant (201, tenant acme)"
c=$(code -H "$H$ACME" -d '{"subject":"x","requester":"ann@acme.example","tenant":"beta"}' "$B/v1/tickets")
[ "$c" = 403 ]
ok $? "a tenant's token cannot file for another tenant (403)"
c=$(code -H "$H$ACME" -d '{"subject":"x","requester":"not-an-address"}' "$B/v1/tickets")
[ "$c" = 400 ] && jx 'd["error"]["message"]' < "$D/out" | grep -q '^requester: an email address expected'
ok $? "a bad field is a 400 naming it"
c=$(code -H "$H$ACME" -d '{"subject":"x","requester":"ann@acme.example","colour":"red"}' "$B/v1/tickets")
[ "$c" = 400 ] && [ "$(jx 'd["error"]["details"]["errors"][0]["field"]' < "$D/out")" = colour ]
ok $? "an unknown field is a 400 naming it"
c=$(code -H "$H$BETA" "$B/v1/tickets/$ID")
[ "$c" = 404 ] && ! grep -q "cannot log in" "$D/out"
ok $? "another tenant's token gets 404 and no data for the ticket"
[ "$(curl -s -H "$H$BETA" "$B/v1/tickets" | jx 'len(d["tickets"])')" = 0 ]
ok $? "another tenant's list is empty"
routed() { [ "$(curl -s -H "$H$ACME" "$B/v1/tickets/$ID" | jx 'd["ticket"].get("queue")')" = urgent ]; }
wait_for 10 routed
ok $? "the routing policy put the urgent ticket in the urgent queue"

# ---- the plan from the tenant's record (steward.tenants) ----
if [ -f "$here/scripts/steward/tenants.lua" ]; then
    c=$(code -H "$H$TOKEN" -d '{"id":"ent","name":"Ent","plan":"enterprise","contact":{"email":"ops@ent.example"}}' "$B/v1/tenants")
    c2=$(code -H "$H$TOKEN" -d '{"tenant":"ent","subject":"slow","requester":"eve@ent.example"}' "$B/v1/tickets")
    EID=$(jx 'd["ticket"]["id"]' < "$D/out")
    [ "$c" = 201 ] && [ "$c2" = 201 ] && [ "$(jx 'd["ticket"]["plan"]' < "$D/out")" = enterprise ]
    ok $? "a ticket of a tenant with a record takes its plan (enterprise)"
    ent_routed() { [ "$(api "$B/v1/tickets/$EID" | jx 'd["ticket"].get("queue")')" = enterprise ]; }
    wait_for 10 ent_routed
    ok $? "and the plan rule routes it to the enterprise queue"
fi

# ---- SLA breach -> alert ----
breached() { api "$B/api/v2/alerts" | jx '[a for a in d if a["labels"]["alertname"] == "TicketSLABreached" and a["labels"]["ticket"] == arg[0]]' "$ID" >/dev/null; }
wait_for 15 breached
ok $? "the SLA passed with the ticket open: TicketSLABreached fires in the alerting pipeline"
# (the alert can be visible a moment before the ticket's own row says so: wait for it)
marked() { [ "$(curl -s -H "$H$ACME" "$B/v1/tickets/$ID" | jx 'd["ticket"]["breached"]')" = true ]; }
wait_for 10 marked
ok $? "the ticket is marked breached"

# ---- by mail ----
: > "$D/relay.jsonl"
mkfifo "$D/lport"
"$PY" "$here/tests/support/success_relay.py" "$B/v1/tickets/inbound" "$TOKEN" "$D/relay.jsonl" > "$D/lport" &
LPID=$!
read -r LP < "$D/lport"
"$PY" "$here/tests/support/success_mail.py" "$LP" "Support <support+acme@example.org>" "Invoice is wrong" "Line 3 is doubled." >/dev/null
ok $? "the relay accepts a plain-text mail to support+acme@"
mailed() { curl -s -H "$H$ACME" "$B/v1/tickets" | jx '[t for t in d["tickets"] if t["source"] == "email"]' >/dev/null; }
wait_for 10 mailed
ok $? "the mail became a ticket of tenant acme"
curl -s -H "$H$ACME" "$B/v1/tickets" | jx '[t for t in d["tickets"] if t["source"] == "email"][0]' > "$D/mt"
[ "$(jx 'd["requester"]' < "$D/mt")" = carol@acme.example ] && [ "$(jx 'd["subject"]' < "$D/mt")" = "Invoice is wrong" ] &&
    jx 'd["body"]' < "$D/mt" | grep -q "Line 3 is doubled."
ok $? "From, Subject and the text body are the ticket's requester, subject and body"
head -1 "$D/relay.jsonl" > "$D/first"
MSG=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$D/first")
[ "$MSG" = 201 ]
ok $? "steward answered the relay 201"
# the same message delivered twice (an MTA retry) is one ticket
printf 'From: dave@acme.example\r\nTo: support+acme@example.org\r\nSubject: twice\r\nMessage-ID: <twice@acme.example>\r\n\r\nhello\r\n' > "$D/m.eml"
c1=$(code -H "$H$TOKEN" -H 'Content-Type: message/rfc822' --data-binary @"$D/m.eml" "$B/v1/tickets/inbound")
c2=$(code -H "$H$TOKEN" -H 'Content-Type: message/rfc822' --data-binary @"$D/m.eml" "$B/v1/tickets/inbound")
[ "$c1" = 201 ] && [ "$c2" = 200 ] && [ "$(jx 'd["duplicate"]' < "$D/out")" = true ] &&
    [ "$(curl -s -H "$H$ACME" "$B/v1/tickets" | jx 'len([t for t in d["tickets"] if t["subject"] == "twice"])')" = 1 ]
ok $? "a message delivered twice (one Message-ID) is one ticket (201, then 200 duplicate)"
"$PY" "$here/tests/support/success_mail.py" "$LP" "support+acme@example.org" "Fancy" "rich text" html > "$D/refused"
rc=$?; [ $rc = 1 ] && grep -q "HTTP 422" "$D/refused" && tail -1 "$D/relay.jsonl" | grep -q 'Content-Type: multipart.*alternative is not accepted'
ok $? "a multipart mail is refused (422) with the header named, and bounced by the relay"
c=$(code -H "$H$TOKEN" -H 'Content-Type: message/rfc822' --data-binary $'From: x@y.z\r\nSubject: s\r\nMessage-ID: <a@b>\r\n\r\nhi' "$B/v1/tickets/inbound")
[ "$c" = 422 ] && jx 'd["error"]["message"]' < "$D/out" | grep -q '^To: no tenant'
ok $? "a mail without a tenant in its recipient is refused, naming To"
c=$(code -H "$H$TOKEN" -H 'Content-Type: text/plain' --data-binary 'hello' "$B/v1/tickets/inbound")
[ "$c" = 415 ]
ok $? "a body that is no mail is a 415"

# ---- close -> CSAT mail -> signed link, once ----
c=$(code -H "$H$TOKEN" -X POST "$B/v1/tickets/$ID/close")
[ "$c" = 200 ] && [ "$(jx 'd["ticket"]["state"]' < "$D/out")" = closed ]
ok $? "an operator closes the ticket"
csat_mail() { grep -q "v1/csat/$ID/rate" "$D/mail.jsonl" 2>/dev/null; }
wait_for 10 csat_mail
ok $? "closing it mails the CSAT survey with its signed link"
"$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["to"][0])' "$D/mail.jsonl" | grep -q '^ann@acme.example$'
ok $? "the survey goes to the requester"
LINK=$(grep -o "http://[^ \"\\\\]*v1/csat/$ID/rate?exp=[0-9]*&sig=[0-9a-f]*" "$D/mail.jsonl" | head -1)
c=$(code "$LINK")
[ "$c" = 200 ] && grep -q 'name="score"' "$D/out" && grep -q "cannot log in" "$D/out"
ok $? "the link (GET) answers the survey form, without a token"
SIG=${LINK##*sig=}
POSTURL=${LINK%%&sig=*}
c=$(code -H 'Content-Type: application/x-www-form-urlencoded' -H 'Accept: text/html' -d "sig=$SIG&score=5&comment=fast+and+kind" "$POSTURL")
[ "$c" = 200 ] && grep -q "Thank you" "$D/out"
ok $? "posting the form records the score (200, thank-you page)"
c=$(code -H 'Content-Type: application/x-www-form-urlencoded' -d "sig=$SIG&score=1" "$POSTURL")
[ "$c" = 409 ] && grep -q "already answered" "$D/out"
ok $? "a second answer is refused (409 already answered)"
case "$SIG" in *0) BAD=${SIG%?}1 ;; *) BAD=${SIG%?}0 ;; esac # one hex digit changed
c=$(code -H 'Content-Type: application/x-www-form-urlencoded' -d "sig=$BAD&score=1" "$POSTURL")
[ "$c" = 403 ]
ok $? "a tampered signature is refused (403)"
[ "$(curl -s -H "$H$ACME" "$B/v1/tickets/$ID" | jx 'd["ticket"]["csat"]["score"]')" = 5 ]
ok $? "the answer is stored with the ticket: score 5"
curl -s -H "$H$ACME" "$B/v1/csat" > "$D/csat"
[ "$(jx 'd["csat"][0]["answers"], d["csat"][0]["average"], d["csat"][0]["queue"]' < "$D/csat")" = '[1,5,"urgent"]' ]
ok $? "CSAT per tenant and queue: 1 answer, average 5, queue urgent"
[ "$(curl -s -H "$H$BETA" "$B/v1/csat" | jx 'len(d["csat"])')" = 0 ]
ok $? "another tenant's token sees no CSAT of acme"

# ---- usage ----
curl -s -H "$H$ACME" "$B/v1/success/usage" > "$D/usage"
jx 'd["usage"][0]["tenant"] == "acme" and d["usage"][0]["users"] == 1 and "/v1/tickets" in d["usage"][0]["routes"]' < "$D/usage" >/dev/null
ok $? "usage: acme's token is an active user, and /v1/tickets a route it used"
api "$B/metrics" | grep -q '^steward_success_active_users{tenant="acme"} 1'
ok $? "the active users per tenant are a Prometheus gauge"

daemon_stop
[ "$DSTATUS" = 0 ]
ok $? "the daemon stops cleanly"
echo "1..$n"
exit $fail
