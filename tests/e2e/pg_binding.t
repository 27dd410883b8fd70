# steward.pg against a throwaway PostgreSQL server: the checks are tests/support/pg_check.lua
# (one TAP stream). The server is stopped (-m fast) and started again during the run, through
# PG_STOP_CMD / PG_START_CMD. Skipped when PostgreSQL is not installed.
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"

trap 'pg_stop' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }

sup="source $here/tests/support/pg.sh; PG_DIR=$PG_DIR PG_PORT=$PG_PORT"
cd "$here" || exit 1
PG_STOP_CMD="$sup; pg_as \"\$PG_BIN/pg_ctl\" -D \"\$PG_DIR/data\" -m fast -w stop >/dev/null" \
    PG_START_CMD="$sup; pg_ctl_start" PG_PORT=$PG_PORT \
    timeout 300 "$BIN" script tests/support/pg_check.lua
