#!/bin/bash
# The payment specs (tests/lua/billing_{stripe,webhooks,dunning}_spec.lua) against PostgreSQL:
# the billing_payments tables (amounts NUMERIC there, TEXT on SQLite), the attempts' idempotency
# keys, the webhook events and the dunning state behave as on SQLite. Each spec gets a fresh
# database of a throwaway server; one TAP stream; skipped when PostgreSQL is not installed.
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"

T=$(mktemp -d /tmp/steward-pgt.XXXXXX)
trap 'pg_stop; rm -rf "$T"' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }

n=0
fail=0

cd "$here" || exit 1
pg_specs billing_stripe billing_webhooks billing_dunning
echo "1..$n"
exit $fail
