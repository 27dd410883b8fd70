#!/bin/bash
# Charges paid in advance on a real daemon with the shipped billing policies (SQLite): a plan
# whose API calls are paid in advance (0.50 EUR each) and a tenant in France (TVA 20 %). Each
# usage event gets its fee at once on an invoice of its own, finalized with its number
# (0.50 + 0.10 TVA); the daemon is killed with SIGKILL right after the second event is
# acknowledged, and after the restart the second event is posted again and the first re-sent
# under a new event id (a duplicate): three events, three fees, three invoices, none twice.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/billing_setup.sh"
echo "1..6"
billing_policies
export STEWARD_TEST_STORE="sqlite:$D/adv.db"
daemon_config 'tenants = { plans = { basic = {} } },
  billing = { currency = "EUR", grace_period = "90d", taxes = { rates = { { country = "FR", rate = "20", name = "TVA" } } } },'
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
H="Authorization: Bearer "
billing_tenant acme FR
START=$(month_start 0)
SUB=$(beval "local st = require('steward.runtime.store').default()
  assert(require('steward.billing.metrics').create(st, { code = 'api_calls', name = 'API calls', aggregation = 'count' }))
  assert(require('steward.billing.plans').create(st, { code = 'adv', name = 'Advance', interval = 'monthly', amount = '0',
    currency = 'EUR', charges = { { id = 'calls', metric = 'api_calls', model = 'standard', pay_in_advance = true,
    properties = { amount = '0.50' } } } }))
  return assert(require('steward.billing.subscriptions').create(st, { tenant = 'acme', plan = 'adv', started = $START })).id")
[ -n "$SUB" ]
ok $? "a subscription to a plan whose calls are paid in advance ($SUB)"

# post EVENT_ID TX: one billing.usage event into the event log
post() {
    curl -s -o /dev/null -w '%{http_code}' -H "$H$TOKEN" -d "[{\"id\":\"$1\",\"type\":\"billing.usage\",\"tenant\":\"acme\",
      \"data\":{\"transaction_id\":\"$2\",\"subscription\":\"$SUB\",\"code\":\"api_calls\",\"timestamp\":$((START + 60))}}]" \
      "http://127.0.0.1:$PORT/v1/events"
}
# the invoices of the subscription's fees paid in advance: "number total" per line, by number
advance() {
    beval "local out = {}
      for _, i in ipairs(require('steward.billing.invoices').list({ subscription = '$SUB', limit = 100 })) do
        if i.advance then out[#out + 1] = tostring(i.number) .. ':' .. i.total:format(2) .. ':' .. i.state end
      end
      table.sort(out)
      return table.concat(out, ' ')"
}
count_advance() { [ "$(advance | tr ' ' '\n' | grep -c finalized)" = "$1" ]; }

c1=$(post u-1 tx-1)
wait_for 20 count_advance 1
ok $? "the first event ($c1): its fee on an invoice of its own, finalized at once ($(advance))"
c2=$(post u-2 tx-2)
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
[ "$c2" = 202 ]
ok $? "the second event acknowledged ($c2), then the daemon is killed with SIGKILL"
daemon_start || exit 1
c2b=$(post u-2 tx-2)
c3=$(post u-3 tx-3)
c1b=$(post again-1 tx-1)
dup() { [ "$(beval "return #require('steward.runtime.store').default().db:query(\"SELECT id FROM events WHERE type = 'billing.usage.duplicate'\")")" = 1 ]; }
wait_for 20 count_advance 3 && wait_for 20 dup
ok $? "restarted: the second posted again ($c2b), a third ($c3), the first re-sent ($c1b, a duplicate): three fees"
A=$(advance)
set -- $A
[ $# = 3 ] && echo "$A" | grep -q ':0.60:finalized' && [ "$(echo "$A" | tr ' ' '\n' | cut -d: -f2 | sort -u)" = 0.60 ]
ok $? "three invoices of 0.60 each (0.50 + TVA 0.10), no fee twice: $A"
nums=$(echo "$A" | tr ' ' '\n' | cut -d: -f1 | sed 's/.*-0*//' | tr '\n' ' ')
[ "$nums" = "1 2 3 " ]
ok $? "numbered without a gap: $nums"
daemon_stop
exit $fail
