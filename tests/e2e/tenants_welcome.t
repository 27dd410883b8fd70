#!/bin/bash
# The welcome notification of a tenant's provisioning through a real SMTP server
# (tests/support/notify_receiver.py): one message to the tenant's contact, from its branding's
# address, with the config's template and the branding's name and footer; a kill -9 right after
# it was sent and before the step was recorded sends no second one; a tenant without a contact
# address is provisioned without a message (the step says why).
. "$(dirname "$0")/../support/daemon.sh"
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || { echo "1..0 # SKIP python3-aiosmtpd is not installed"; exit 0; }
echo "1..8"
receiver_start
daemon_config "tenants = { welcome = {
    channel = { kind = \"email\", url = \"smtp://127.0.0.1:$SPORT\", starttls = \"no\", from = \"steward@example.org\" },
    template = { title = \"Welcome to {{brand}}\", text = \"Hello {{name}}, tenant {{id}} is live on plan {{plan}}.\" } } },"
daemon_start || exit 1
H="Authorization: Bearer $TOKEN"
create() { curl -s -o /dev/null -w '%{http_code}' -H "$H" -d "$1" "http://127.0.0.1:$PORT/v1/tenants"; }
is_active() { curl -s -H "$H" "http://127.0.0.1:$PORT/v1/tenants/$1" | jx 'd["state"] == "active"' >/dev/null 2>&1; }
mails() { curl -s "$R/_control/requests?route=smtp"; }

code=$(create '{"id":"acme","name":"Acme Corp","contact":{"email":"ops@acme.test"},"branding":{"name":"Acme Ops","email_from":"hello@acme.test","footer":"Acme Corp, 1 Main St"}}')
[ "$code" = 201 ] && wait_for 20 is_active acme
ok $? "acme is provisioned"
curl -s -m 20 "$R/_control/wait?route=smtp&n=1&timeout=15" >/dev/null
m=$(mails)
echo "$m" | jx 'len(d) == 1 and d[0]["to"] == ["ops@acme.test"]' >/dev/null
ok $? "one message, to the tenant's contact"
echo "$m" | jx '"hello@acme.test" in d[0]["from"]' >/dev/null
ok $? "from the branding's address"
echo "$m" | jx '"Welcome to Acme Ops" in d[0]["data"] and "Hello Acme Corp, tenant acme is live on plan basic." in d[0]["data"]' >/dev/null
ok $? "with the config's template filled in with the branding's name"
echo "$m" | jx '"Acme Corp, 1 Main St" in d[0]["data"]' >/dev/null
ok $? "and the branding's footer"

# kill -9 after the welcome was sent, before the step was recorded done
daemon_stop
export STEWARD_TENANTS_CRASH_STEP=welcome
daemon_start || exit 1
unset STEWARD_TENANTS_CRASH_STEP
create '{"id":"globex","name":"Globex","contact":{"email":"it@globex.test"}}' >/dev/null
wait "$DPID" 2>/dev/null; DPID=
daemon_start || exit 1
wait_for 20 is_active globex
runs=$(curl -s -H "$H" "http://127.0.0.1:$PORT/v1/tenants/globex/saga" | jx '[s["runs"] for s in d["steps"] if s["step"] == "welcome"][0]')
sent=$(mails | jx 'len([x for x in d if x["to"] == ["it@globex.test"]])')
[ "$runs" = 2 ] && [ "$sent" = 1 ]
ok $? "killed after sending: the step ran again ($runs runs) and the message went once ($sent)"

code=$(create '{"id":"initech","name":"Initech"}')
[ "$code" = 201 ] && wait_for 20 is_active initech
ok $? "a tenant without a contact address is provisioned"
curl -s -H "$H" "http://127.0.0.1:$PORT/v1/tenants/initech/saga" | jx '[s for s in d["steps"] if s["step"] == "welcome"][0]["result"]["skipped"] == "the tenant has no contact.email"' >/dev/null
ok $? "... and its welcome step says why nothing was sent"
daemon_stop
exit $fail
