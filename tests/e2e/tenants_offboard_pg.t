# Suspension and offboarding on the PostgreSQL store: the specs (tests/lua/
# tenants_{suspension,offboard}_spec.lua) and the offboarding end to end (tests/e2e/
# tenants_offboard.t), each against a fresh database of a throwaway PostgreSQL server
# (information_schema instead of sqlite_master, the tables discovered by their tenant column).
# One TAP stream.
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
pg_specs tenants_suspension tenants_offboard
url=$(pg_createdb e2e_offboard) || { n=$((n + 1)); echo "not ok $n - createdb for the e2e"; fail=1; }
echo "# tests/e2e/tenants_offboard.t against $url"
# its TAP renumbered after ours
STEWARD_TEST_STORE=$url STEWARD_BIN=$BIN timeout 300 bash tests/e2e/tenants_offboard.t 2>"$T/err" |
    awk -v off=$n '/^ok [0-9]+/ { $2 = $2 + off } /^not ok [0-9]+/ { $3 = $3 + off } { print }' >"$T/out"
rc=${PIPESTATUS[0]}
pg_relay "$T/out" "$rc" "tenants_offboard.t"
echo "1..$n"
exit $fail
