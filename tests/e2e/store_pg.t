# The PostgreSQL store backend: the store conformance specs, each against a fresh database of
# a throwaway PostgreSQL server, then PostgreSQL-specific checks (tests/support/
# store_pg_check.lua) and two instances migrating one fresh database at the same time.
# One TAP stream; skipped when PostgreSQL is not installed.
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
pg_specs store_native store_pg_pipeline store_migrate store_kv store_timers store_jobs store_decisions store_audit events ingest daemon_due alerting_engine policy_versions deploy_approvals

# The PostgreSQL-specific checks, with PG* variables for the bare "postgres:" URL.
sup="source $here/tests/support/pg.sh; PG_DIR=$PG_DIR PG_PORT=$PG_PORT"
PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=steward \
    PG_STOP_CMD="$sup; pg_ctl_stop" PG_START_CMD="$sup; pg_ctl_start" \
    STEWARD_TAP_OFFSET=$n timeout 300 "$BIN" script tests/support/store_pg_check.lua >"$T/out" 2>"$T/err"
pg_relay "$T/out" $? store_pg_check

# Two instances migrating one fresh database at once: the advisory lock serialises them.
url=$(pg_createdb race)
cat >"$T/mig.lua" <<'EOF'
local store = require "steward.runtime.store"
store.register_migrations("race", {
  { version = 1, sql = "CREATE TABLE race (id BIGINT PRIMARY KEY); SELECT pg_sleep(0.3)" },
  { version = 2, sql = "ALTER TABLE race ADD COLUMN note TEXT" },
})
local st, err = store.open(arg[1])
if not st then io.stderr:write(tostring(err), "\n"); os.exit(1) end
local v = assert(st:versions())
print(v.race, v.events)
st:close()
EOF
"$BIN" script "$T/mig.lua" "$url" >"$T/m1" 2>&1 &
p1=$!
"$BIN" script "$T/mig.lua" "$url" >"$T/m2" 2>&1 &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
n=$((n + 1))
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ]; then
    echo "ok $n - two instances migrating one fresh database at once both succeed"
else
    echo "not ok $n - two instances migrating one fresh database at once both succeed ($r1, $r2)"
    sed 's/^/# /' "$T/m1" "$T/m2"
    fail=1
fi
n=$((n + 1))
if [ "$(cat "$T/m1")" = "2	2" ] && [ "$(cat "$T/m2")" = "2	2" ]; then
    echo "ok $n - both see every version applied"
else
    echo "not ok $n - both see every version applied"
    fail=1
fi
rows=$(pg_as "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d race -Atc \
    "SELECT COUNT(*) FROM schema_version WHERE module = 'race'")
n=$((n + 1))
if [ "$rows" = 2 ]; then
    echo "ok $n - each version was recorded once"
else
    echo "not ok $n - each version was recorded once (got $rows rows)"
    fail=1
fi

echo "1..$n"
exit $fail
