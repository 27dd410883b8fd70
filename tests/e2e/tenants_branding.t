#!/bin/bash
# White label (steward.tenants.branding, docs/tenants.md "White-label"): a notification about a
# tenant, received by a real SMTP server, comes from the tenant's sender with its footer, its
# colour and logo in the HTML part, its links on the tenant's link base, and the tenant's own
# template when it set one; a message about a tenant without a record is sent as it was.
set -u
. "$(dirname "$0")/../support/daemon.sh"
receiver_start
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..6"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@" | tr -d '"'; }
s=$(api "$TOKEN" POST /v1/tenants '{"id":"acme","name":"Acme","contact":{"email":"ops@acme.test"},
  "branding":{"name":"Acme Corp","color":"#ff6600","logo_url":"https://cdn.acme.test/logo.png",
  "email_from":"alerts@acme.test","footer":"Acme Corp, 1 Road Runner Way","link_base":"https://status.acme.test"}}')
state() { api "$TOKEN" GET /v1/tenants/acme >/dev/null; [ "$(jx 'd["state"]' < "$D/body")" = "$1" ]; }
wait_for 20 state active; ok $? "tenant acme with its branding is active ($s)"

send() { # send KEY TENANT [TEMPLATE]
    ev "local ch = require('steward.notify').channel('email', { name = 'ops-mail',
          url = 'smtp://127.0.0.1:$SPORT', from = 'steward@ops.test', to = { 'oncall@ops.test' } })
        local r, err = ch:send({ title = 'Disk full on db-1', template = ${3:-nil},
          text = 'Acknowledge: http://127.0.0.1:8080/v1/incidents/abc/ack?sig=xyz',
          url = 'http://127.0.0.1:8080/v1/incidents/abc', labels = { tenant = '$2', service = 'db' } }, { key = '$1' })
        return r and r.status or err"
}
r1=$(send k1 acme)
ev "return require('steward.tenants.branding').set_template('acme', 'incident',
      { title = '[{{brand}}] {{title}} ({{labels.service}})', text = 'Hello from {{brand}}.\n\n{{text}}' })" >/dev/null
r2=$(send k2 acme "'incident'")
r3=$(send k3 globex)
ok $([ "$r1" = sent ] && [ "$r2" = sent ] && [ "$r3" = sent ]; echo $?) "three mails sent ($r1 $r2 $r3)"
curl -s "$R/_control/wait?route=smtp&n=3&timeout=10" >/dev/null
curl -s "$R/_control/requests?route=smtp" > "$D/mails.json"

check() { /usr/bin/python3 - "$D/mails.json" "$@" <<'PY'
import json, sys, email
from email import policy
mails = [email.message_from_string(m["data"], policy=policy.default) for m in json.load(open(sys.argv[1]))]
by = {m["X-Steward-Notification"].split("/")[-1]: m for m in mails}
def parts(m):
    t = m.get_body(("plain",)); h = m.get_body(("html",))
    return (t.get_content() if t else ""), (h.get_content() if h else "")
what = sys.argv[2]
if what == "branded":
    m = by["k1"]; text, html = parts(m)
    assert m["From"].addresses[0].addr_spec == "alerts@acme.test" and m["From"].addresses[0].display_name == "Acme Corp", m["From"]
    assert "Acme Corp, 1 Road Runner Way" in text, text
    assert "https://status.acme.test/v1/incidents/abc/ack?sig=xyz" in text and "127.0.0.1:8080" not in text, text
    assert "#ff6600" in html and "https://cdn.acme.test/logo.png" in html and "Acme Corp" in html, html
    assert 'href="https://status.acme.test/v1/incidents/abc"' in html and "127.0.0.1:8080" not in html, html
elif what == "template":
    m = by["k2"]; text, html = parts(m)
    assert m["Subject"].endswith("[Acme Corp] Disk full on db-1 (db)"), m["Subject"] # after the severity
    assert text.startswith("Hello from Acme Corp.") and "Acme Corp, 1 Road Runner Way" in text, text
elif what == "plain":
    m = by["k3"]; text, html = parts(m)
    assert m["From"] == "steward@ops.test" and not m.is_multipart() and html == "", (m["From"], m.get_content_type())
    assert "http://127.0.0.1:8080/v1/incidents/abc/ack?sig=xyz" in text and "Road Runner" not in text
print("ok")
PY
}
out=$(check branded 2>&1); ok $([ "$out" = ok ]; echo $?) "acme's mail: its sender, footer, link base, colour and logo in the HTML part (${out:0:300})"
out=$(check template 2>&1); ok $([ "$out" = ok ]; echo $?) "acme's own template makes the subject and text ($(echo "$out" | tail -2))"
out=$(check plain 2>&1); ok $([ "$out" = ok ]; echo $?) "a tenant without a record: the mail as it was, plain text (${out:0:300})"
s=$(api "$TOKEN" PATCH /v1/tenants/acme '{"version":1,"branding":{"color":"orange"}}')
ok $([ "$s" = 400 ] && grep -q 'branding.color' "$D/body"; echo $?) "a bad branding field is refused naming it ($s $(head -c 200 "$D/body"))"
daemon_stop
exit $fail
