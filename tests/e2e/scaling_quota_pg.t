#!/bin/bash
# tests/e2e/scaling_quota.t on a throwaway PostgreSQL 15 instead of SQLite: 50 parallel
# scale-ups against a daemon with two workers never exceed the quota, and kill -9 leaks no
# reservation (skipped without PostgreSQL).
export QUOTA_PG=1
. "$(dirname "$0")/scaling_quota.t"
