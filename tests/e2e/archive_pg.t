#!/bin/bash
# Archival on the PostgreSQL store: the same checks as archive_sqlite.t
# (tests/support/archive_e2e.sh) against a throwaway PostgreSQL server.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
trap 'daemon_cleanup; pg_stop' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
STEWARD_TEST_STORE=$PG_URL
. "$here/tests/support/archive_e2e.sh"
