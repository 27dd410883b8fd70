#!/bin/bash
# tests/e2e/scaling_lifecycle.t with the store on PostgreSQL: the autoscaler's state (kv),
# decisions and events on the other backend, a restart keeping the stabilization history.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/support/pg.sh"
pg_start || { echo "1..0 # SKIP PostgreSQL did not start"; exit 0; }
trap pg_stop EXIT
STEWARD_TEST_STORE=$PG_URL bash "$here/tests/e2e/scaling_lifecycle.t"
