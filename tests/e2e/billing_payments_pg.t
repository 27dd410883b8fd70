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
relay() {
    grep -v '^1\.\.' "$1"
    n=$((n + $(grep -cE '^(not )?ok ' "$1")))
    if [ "$2" -ne 0 ]; then
        fail=1
        if ! grep -q '^not ok' "$1"; then
            n=$((n + 1)); echo "not ok $n - $3 exited with status $2"; tail -5 "$T/err" | sed 's/^/# /'
        fi
    fi
}

cd "$here" || exit 1
for spec in billing_stripe billing_webhooks billing_dunning; do
    url=$(pg_createdb "spec_$spec") || { n=$((n + 1)); echo "not ok $n - createdb for $spec"; fail=1; continue; }
    echo "# $spec against $url"
    STEWARD_TEST_STORE=$url STEWARD_TAP_OFFSET=$n timeout 300 "$BIN" script "tests/lua/${spec}_spec.lua" >"$T/out" 2>"$T/err"
    relay "$T/out" $? "$spec"
done
echo "1..$n"
exit $fail
