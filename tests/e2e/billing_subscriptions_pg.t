#!/bin/bash
# The billing store side of h4 on PostgreSQL (issue 18: "the store keeps them exact on both
# backends"): the specs of metrics and plans, subscriptions (timers, history, due), usage,
# coupons and wallets run against a throwaway PostgreSQL cluster, each in a fresh database,
# as they run against SQLite by default. Amounts go through NUMERIC columns and come back as
# the same decimals.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
. "$here/tests/support/pg.sh"
trap pg_stop EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
specs="plans subscriptions usage coupons wallets"
echo "1..5"
n=0
fail=0
for s in $specs; do
  n=$((n + 1))
  url=$(pg_createdb "billing_$s") || { echo "not ok $n - $s: a database"; fail=1; continue; }
  if out=$(STEWARD_TEST_STORE="$url" "$BIN" script "$here/tests/lua/billing_${s}_spec.lua" 2>&1); then
    echo "ok $n - billing_${s}_spec on PostgreSQL ($(printf '%s\n' "$out" | grep -c '^ok') checks)"
  else
    echo "not ok $n - billing_${s}_spec on PostgreSQL"
    printf '%s\n' "$out" | grep -v '^ok' | sed 's/^/# /'
    fail=1
  fi
done
exit $fail
