#!/bin/bash
# The invoice specs on PostgreSQL (a throwaway 15, tests/support/pg.sh; skipped when it is not
# installed): tests/lua/billing_invoices_spec.lua (building, refresh, finalizing 60 invoices at
# once gap-free, pay, void, credit notes used once) runs against a fresh database, and the
# canonical JSON of its invoices is byte-identical to the same spec's on SQLite: amounts stay
# exact on both stores (NUMERIC on PostgreSQL, text on SQLite).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"
T=$(mktemp -d)
trap 'pg_stop; rm -rf "$T"' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
echo "1..3"
fail=0
BILLING_JSON_OUT="$T/sqlite.json" STEWARD_TEST_STORE="sqlite::memory:" "$BIN" script "$here/tests/lua/billing_invoices_spec.lua" \
    > "$T/sqlite.tap" 2>&1
if grep -q '^not ok' "$T/sqlite.tap" || ! grep -q '^1\.\.' "$T/sqlite.tap"; then
    echo "not ok 1 - the invoice spec on SQLite"; sed 's/^/# /' "$T/sqlite.tap" | grep -v '^# ok' | head -30; fail=1
else echo "ok 1 - the invoice spec on SQLite"; fi
URL=$(pg_createdb invoices)
BILLING_JSON_OUT="$T/pg.json" STEWARD_TEST_STORE="$URL" "$BIN" script "$here/tests/lua/billing_invoices_spec.lua" > "$T/pg.tap" 2>&1
if grep -q '^not ok' "$T/pg.tap" || ! grep -q '^1\.\.' "$T/pg.tap"; then
    echo "not ok 2 - the invoice spec on PostgreSQL"; sed 's/^/# /' "$T/pg.tap" | grep -v '^# ok' | head -30; fail=1
else echo "ok 2 - the invoice spec on PostgreSQL ($(grep -c '^ok' "$T/pg.tap") checks)"; fi
if [ -s "$T/sqlite.json" ] && cmp -s "$T/sqlite.json" "$T/pg.json"; then
    echo "ok 3 - both stores give byte-identical invoice JSON ($(wc -l < "$T/pg.json") invoices)"
else
    echo "not ok 3 - both stores give byte-identical invoice JSON"; diff "$T/sqlite.json" "$T/pg.json" | head -10 | sed 's/^/# /'; fail=1
fi
exit $fail
