#!/bin/bash
# Suspension asked for by a policy (billing's dunning): a policy granted events.emit of
# tenant.suspend_requested / tenant.resume_requested suspends and resumes the event's tenant;
# the same event posted by a client through the API is not obeyed.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cat > "$D/policies/dunning.lua" <<'POL'
local events = require "steward.events"
return { name = "dunning", on = { "invoice.*" },
  capabilities = { ["events.emit"] = { "tenant.suspend_requested", "tenant.resume_requested" } },
  handle = function(ev)
    local t = ev.type == "invoice.overdue" and "tenant.suspend_requested" or "tenant.resume_requested"
    assert(events.emit({ id = "dunning:" .. ev.id, type = t, tenant = ev.tenant or ev.data.tenant,
      data = { reason = "invoice " .. tostring(ev.data.invoice) .. " overdue" } }))
  end }
POL
daemon_config 'grants = { dunning = { ["events.emit"] = { "tenant.suspend_requested", "tenant.resume_requested" } } },'
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..4"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ACME=$(api "$TOKEN" POST /v1/tokens '{"role":"viewer","tenant":"acme"}' >/dev/null; jx 'd["token"]' < "$D/body")
GLOBEX=$(api "$TOKEN" POST /v1/tokens '{"role":"viewer","tenant":"globex"}' >/dev/null; jx 'd["token"]' < "$D/body")
api "$TOKEN" POST /v1/events '{"type":"tenant.suspend_requested","tenant":"globex","data":{"reason":"by hand"}}' >/dev/null
api "$TOKEN" POST /v1/events '{"id":"i1","type":"invoice.overdue","tenant":"acme","data":{"invoice":42}}' >/dev/null
refused() { s=$(api "$ACME" GET /v1/events); [ "$s" = 403 ]; }
wait_for 10 refused; ok $? "the dunning policy's request suspended acme ($(cat "$D/body"))"
ok $([ "$(jx 'd["error"]["message"]' < "$D/body")" = "tenant acme is suspended: invoice 42 overdue" ]; echo $?) "with the policy's reason"
s=$(api "$GLOBEX" GET /v1/events)
ok $([ "$s" = 200 ]; echo $?) "a client's tenant.suspend_requested is not obeyed: globex works ($s)"
# The tenant's own events are held while it is suspended; the payment arrives as a platform
# event (no tenant) that names it.
api "$TOKEN" POST /v1/events '{"id":"i2","type":"invoice.paid","data":{"invoice":42,"tenant":"acme"}}' >/dev/null
works() { s=$(api "$ACME" GET /v1/events); [ "$s" = 200 ]; }
wait_for 10 works; ok $? "invoice paid: the policy's resume request restored acme ($s)"
daemon_stop
exit $fail
