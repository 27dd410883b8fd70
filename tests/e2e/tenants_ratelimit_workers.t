#!/bin/bash
# Per-tenant ingest limits with worker processes (workers = 2): each worker keeps its own
# buckets and admits half of the tenant's rate and burst (docs/tenants.md, "Ingest rate"). A
# burst of 10 is 5 per worker: over fresh connections (the kernel spreads them over the
# workers) between 5 and 10 single events are accepted before the tenant is refused, never
# more; the 429 names the per-worker share.
set -u
export STEWARD_WORKERS=2
. "$(dirname "$0")/../support/daemon.sh"
echo "1..3"
daemon_config 'tenants = { plans = { basic = { rate = { ingest = 0.1, burst = 10 } } } },'
daemon_start || { echo "not ok 1 - the daemon did not start"; exit 1; }
B="http://127.0.0.1:$PORT"
ACME=$(curl -s -H "Authorization: Bearer $TOKEN" -d '{"role":"ingest","tenant":"acme","name":"w"}' "$B/v1/tokens" | jx 'd["token"]')
accepted=0
for i in $(seq 40); do
  st=$(curl -s -o "$D/body.$i" -w '%{http_code}' -H "Authorization: Bearer $ACME" -d '{"type":"w.one"}' "$B/v1/events")
  [ "$st" = 202 ] && accepted=$((accepted + 1))
  [ "$st" = 429 ] && last=$i
done
[ "$accepted" -ge 5 ] && [ "$accepted" -le 10 ]; ok $? "40 requests over fresh connections: $accepted accepted (5 per worker at most, 10 in all)"
[ -n "${last:-}" ]; ok $? "the rest were refused with 429"
jx 'd["error"]["details"]["limit"]["workers"] == 2 and d["error"]["details"]["limit"]["per_worker"]["burst"] == 5 and d["error"]["details"]["limit"]["per_worker"]["ingest"] == 0.05' < "$D/body.${last:-0}" >/dev/null
ok $? "the 429 names the per-worker share (2 workers: 0.05/s, burst 5): $(head -c 300 "$D/body.${last:-0}")"
daemon_stop
exit $fail
