# Exact decimals through both store backends: tests/support/decimal_store_check.lua writes 1,000
# values of many scales into a {decimal} column and reads them back, on SQLite and then on a
# throwaway PostgreSQL server (NUMERIC). One TAP stream; the PostgreSQL half is skipped when
# the server binaries are not installed.
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"

T=$(mktemp -d /tmp/steward-dect.XXXXXX)
trap 'pg_stop 2>/dev/null; rm -rf "$T"' EXIT
cd "$here" || exit 1

n=0
fail=0

STEWARD_TAP_OFFSET=$n timeout 300 "$BIN" script tests/support/decimal_store_check.lua "sqlite:$T/store.db" \
    >"$T/out" 2>"$T/err"
pg_relay "$T/out" $? sqlite

if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
    n=$((n + 1))
    echo "ok $n # skip PostgreSQL server binaries not installed"
else
    if pg_start; then
        url=$(pg_createdb decimals)
        STEWARD_TAP_OFFSET=$n timeout 300 "$BIN" script tests/support/decimal_store_check.lua "$url" \
            >"$T/out" 2>"$T/err"
        pg_relay "$T/out" $? postgres
    else
        n=$((n + 1))
        echo "not ok $n - PostgreSQL starts"
        fail=1
    fi
fi
echo "1..$n"
exit $fail
