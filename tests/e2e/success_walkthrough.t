#!/bin/bash
# docs/customer-success.md followed block by block: its steward.lua lines (the SMTP port moved
# to an aiosmtpd of the test's), the token, the ticket by API, the mail (mail.eml) posted to
# the inbound route, the close that mails the CSAT survey, the health run and history, the
# onboarding checklist, the usage and the REPL line, each run in a directory laid out as the
# page assumes (var/ beside the files) against the daemon with the shipped policies/success.
set -u
. "$(dirname "$0")/../support/daemon.sh"
PY=/usr/bin/python3
MPID=
cleanup_all() {
    [ -n "$MPID" ] && kill "$MPID" 2>/dev/null
    daemon_cleanup
}
trap cleanup_all EXIT
W="$D/run"
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/customer-success.md"
}
sh_block() {
    block "$1" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s#^steward #\"$BIN\" #" > "$W/$1.sh"
    (cd "$W" && PATH="/usr/bin:$PATH" bash "$W/$1.sh")
}
mkdir -p "$D/var" "$W" && ln -s "$D/var" "$W/var"

mkfifo "$D/mport"
"$PY" "$here/tests/support/mail_server.py" "$D/mail.jsonl" > "$D/mport" &
MPID=$!
read -r SP < "$D/mport"

mkdir -p "$D/policies/success"
for f in "$here"/policies/success/*.lua; do
    case "$f" in *_spec.lua) ;; *) cp "$f" "$D/policies/success/" ;; esac
done
daemon_config "$(block steward.lua | sed "s/127.0.0.1:2525/127.0.0.1:$SP/")"
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 1; }
api() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }
B="http://127.0.0.1:$PORT"

sh_block tokens && jx 'd["token"]' < "$W/acme-token.json" >/dev/null
ok $? "tokens: a token of tenant acme"
sh_block ticket > "$D/ticket"
jx 'd["ticket"]["tenant"] == "acme" and d["ticket"]["state"] == "open"' < "$D/ticket" >/dev/null
ok $? "ticket: filed for acme, open"
routed() { api "$B/v1/tickets/$(jx 'd["ticket"]["id"]' < "$D/ticket")" | jx 'd["ticket"].get("queue") == "urgent"' >/dev/null; }
wait_for 10 routed
ok $? "ticket: the page's rules route it to the urgent queue"
block mail.eml | sed 's/$/\r/' > "$W/mail.eml"
sh_block inbound > "$D/inbound"
jx 'd["ticket"]["source"] == "email" and d["ticket"]["requester"] == "carol@acme.example"' < "$D/inbound" >/dev/null
ok $? "inbound: the page's mail is a ticket of acme from carol"
sh_block close > "$D/close"
jx 'd["ticket"]["state"] == "closed"' < "$D/close" >/dev/null
ok $? "close: the ticket is closed"
survey() { grep -q "/v1/csat/" "$D/mail.jsonl" 2>/dev/null; }
wait_for 10 survey
ok $? "close: the CSAT survey is mailed with its link"
sh_block health > "$D/health"
scored() { api "$B/v1/success/health/acme" | jx 'len(d["history"]) >= 1' >/dev/null; }
wait_for 10 scored
ok $? "health: acme is scored and the history has it"
sh_block onboarding > "$D/ob"
jx 'd["tenant"] == "acme" and d["milestones"][0]["name"] == "first_event"' < "$D/ob" >/dev/null
ok $? "onboarding: the checklist of acme"
sh_block usage > "$D/usage"
jx '[u for u in d["usage"] if u["tenant"] == "acme" and u["users"] == 1]' < "$D/usage" >/dev/null
ok $? "usage: acme has one active user this week"
sh_block repl > "$D/repl" 2>&1
grep -q "Invoice is wrong" "$D/repl"
ok $? "repl: tickets{tenant = \"acme\"} lists its tickets"

daemon_stop
echo "1..$n"
exit $fail
