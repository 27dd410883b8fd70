#!/bin/bash
# The capacity history in the daemon, on SQLite and then on PostgreSQL: samples recorded in the
# live daemon (as the autoscaler records them) are aggregated per minute, readable at once
# through GET /v1/capacity/series/{series}, written by the daemon's writer, and a clean stop
# writes the minute still open, so after a restart every sample is there; a bad import is a
# 400 naming the point.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
trap 'daemon_cleanup; pg_stop' EXIT

H="Authorization: Bearer "
api() { curl -s -H "$H$TOKEN" "http://127.0.0.1:$PORT$1" "${@:2}"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$1" 2>&1; }

run_backend() {
    local b=$1
    rm -rf "$D/var" "$D/steward.db"*
    daemon_config ""
    daemon_start
    ok $? "$b: the daemon starts"
    local now
    now=$(date +%s)
    # 40 samples over the two minutes before this one, 3 in a minute still open at the stop
    # (three minutes ahead: only the stop's flush writes it, not the 10 s writer)
    out=$(ev "local c = require 'steward.capacity'
      local now = $now
      for i = 0, 39 do c.record('web:rps', 10 + i, now - now % 60 - 120 + i * 3) end
      for i = 1, 3 do c.record('web:rps', 100, now - now % 60 + 180) end
      return 'recorded'")
    [ "$out" = '"recorded"' ] || [ "$out" = 'recorded' ]
    ok $? "$b: samples recorded in the live daemon ($out)"
    local q="/v1/capacity/series/web:rps?from=$((now - 600))&to=$((now + 600))"
    api "$q" | jx 'sum(p["n"] for p in d["points"]) == 43 and len(d["points"]) == 3 and all(p["t"].endswith(":00Z") for p in d["points"])' >/dev/null
    ok $? "$b: history answers every sample at once, one point per minute: $(api "$q")"
    written() { [ "$(ev "return (require('steward.runtime.store').default():query('SELECT COUNT(*) AS n FROM capacity_samples')[1].n)")" = 2 ]; }
    wait_for 30 written
    ok $? "$b: the writer stores the two closed minutes (one row each)"
    daemon_stop
    ok $DSTATUS "$b: a clean stop"
    daemon_start
    ok $? "$b: the daemon restarts"
    api "$q" | jx 'sum(p["n"] for p in d["points"]) == 43 and max(p["max"] for p in d["points"]) == 100' >/dev/null
    ok $? "$b: after the restart every sample is there, the open minute's too: $(api "$q")"
    echo '{"points": [[1796000000, 1], [1796000060, "lots"]]}' > "$D/bad.json"
    out=$(curl -s -w ' %{http_code}' -H "$H$TOKEN" -H 'Content-Type: application/json' --data-binary "@$D/bad.json" \
        "http://127.0.0.1:$PORT/v1/capacity/series/web:rps")
    echo "$out" | grep -q '"field":"points\[2\].v".* 400$'
    ok $? "$b: a bad point is a 400 naming it ($out)"
    daemon_stop
}

run_backend sqlite
pg_start || { n=$((n + 1)); echo "not ok $n - PostgreSQL starts"; echo "1..$n"; exit 1; }
export STEWARD_TEST_STORE=$PG_URL
run_backend postgres
echo "1..$n"
exit $fail
