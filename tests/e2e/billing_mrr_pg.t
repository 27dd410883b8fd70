#!/bin/bash
# MRR, cohorts and churn-risk signals on PostgreSQL: billing_churn_spec (the signals' table, once
# per tenant per reason per week, usage counted from the log) in a fresh database, and the whole
# docs/billing/mrr.md walkthrough (billing_mrr.t) against a daemon whose store is PostgreSQL:
# the same figures as on SQLite.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
. "$here/tests/support/pg.sh"
trap pg_stop EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
echo "1..2"
fail=0
url=$(pg_createdb billing_churn) || { echo "not ok 1 - a database"; exit 1; }
if out=$(STEWARD_TEST_STORE="$url" "$BIN" script "$here/tests/lua/billing_churn_spec.lua" 2>&1); then
    echo "ok 1 - billing_churn_spec on PostgreSQL ($(printf '%s\n' "$out" | grep -c '^ok') checks)"
else
    echo "not ok 1 - billing_churn_spec on PostgreSQL"
    printf '%s\n' "$out" | grep -v '^ok' | sed 's/^/# /'
    fail=1
fi
url=$(pg_createdb billing_mrr) || { echo "not ok 2 - a database"; exit 1; }
if out=$(STEWARD_TEST_STORE="$url" bash "$here/tests/e2e/billing_mrr.t" 2>&1) && ! printf '%s\n' "$out" | grep -q '^not ok'; then
    echo "ok 2 - billing_mrr.t on PostgreSQL ($(printf '%s\n' "$out" | grep -c '^ok') checks)"
else
    echo "not ok 2 - billing_mrr.t on PostgreSQL"
    printf '%s\n' "$out" | grep -v '^ok' | sed 's/^/# /'
    fail=1
fi
exit $fail
