#!/bin/bash
# The Alertmanager API and the alert routing engine on the PostgreSQL store: the same checks as
# tests/e2e/alerting_api.t and tests/e2e/alerting_router.t (kill -9 in the middle of a group's
# wait included), each against a database of a throwaway PostgreSQL server. One TAP stream.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/tests/support/pg.sh"
trap 'pg_stop' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
T=$(mktemp -d)
n=0 fail=0
# run NAME SCRIPT [ENV...]: runs a TAP script and renumbers its lines into this stream
run() {
    local name=$1 script=$2; shift 2
    env "$@" bash "$here/tests/e2e/$script" >"$T/out" 2>"$T/err"
    local rc=$?
    while IFS= read -r line; do
        case "$line" in
          "ok "*|"not ok "*)
            n=$((n + 1))
            st=${line%% [0-9]*}; rest=$(echo "$line" | sed -E 's/^(not )?ok [0-9]+//')
            echo "$st $n -$(echo "$rest" | sed 's/^ *-//') ($name)"
            [ "$st" = "not ok" ] && fail=1 ;;
          "#"*) echo "$line" ;;
        esac
    done <"$T/out"
    if [ $rc -ne 0 ] && [ $fail -eq 0 ]; then n=$((n + 1)); echo "not ok $n - $name exited with status $rc"; fail=1; fi
}
url_api=$(pg_createdb alerting_api) && run api alerting_api.t ALERTING_STORE= STEWARD_TEST_STORE="$url_api"
url_router=$(pg_createdb alerting_router) && run router alerting_router.t STEWARD_TEST_STORE="$url_router"
echo "1..$n"
rm -rf "$T"
exit $fail
