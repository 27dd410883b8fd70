#!/bin/bash
# tests/e2e/workers.t on a throwaway PostgreSQL 15 instead of SQLite: two workers under one
# supervisor, the leader on the advisory lock, the same checks (skipped without PostgreSQL).
export WORKERS_PG=1
. "$(dirname "$0")/workers.t"
