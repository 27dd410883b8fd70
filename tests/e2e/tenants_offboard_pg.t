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
# relay FILE RC NAME: a part's TAP (plan lines dropped), numbers continuing from $n.
relay() {
    grep -v '^1\.\.' "$1"
    local m
    m=$(grep -cE '^(not )?ok ' "$1")
    n=$((n + m))
    if [ "$2" -ne 0 ]; then
        fail=1
        if ! grep -q '^not ok' "$1"; then
            n=$((n + 1))
            echo "not ok $n - $3 exited with status $2"
            tail -5 "$T/err" | sed 's/^/# /'
        fi
    fi
}

cd "$here" || exit 1
for spec in tenants_suspension tenants_offboard; do
    url=$(pg_createdb "spec_$spec") || { n=$((n + 1)); echo "not ok $n - createdb for $spec"; fail=1; continue; }
    echo "# $spec against $url"
    STEWARD_TEST_STORE=$url STEWARD_TAP_OFFSET=$n timeout 300 "$BIN" script "tests/lua/${spec}_spec.lua" \
        >"$T/out" 2>"$T/err"
    relay "$T/out" $? "$spec"
done
url=$(pg_createdb e2e_offboard) || { n=$((n + 1)); echo "not ok $n - createdb for the e2e"; fail=1; }
echo "# tests/e2e/tenants_offboard.t against $url"
# its TAP renumbered after ours
STEWARD_TEST_STORE=$url STEWARD_BIN=$BIN timeout 300 bash tests/e2e/tenants_offboard.t 2>"$T/err" |
    awk -v off=$n '/^ok [0-9]+/ { $2 = $2 + off } /^not ok [0-9]+/ { $3 = $3 + off } { print }' >"$T/out"
rc=${PIPESTATUS[0]}
relay "$T/out" "$rc" "tenants_offboard.t"
echo "1..$n"
exit $fail
