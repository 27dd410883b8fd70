#!/bin/bash
# The revenue report on the PostgreSQL store: billing_revenue.t (invoice rows, a credit note
# whose amounts are NUMERIC there, the report's exact strings, its docs block) against a
# throwaway PostgreSQL server.
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
trap 'daemon_cleanup; pg_stop' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
STEWARD_TEST_STORE=$PG_URL bash "$here/tests/e2e/billing_revenue.t"
