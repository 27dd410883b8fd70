#!/bin/bash
# gh issue 13 §2, on PostgreSQL: /readyz sees a stuck store. Every process of the test's
# PostgreSQL is stopped with SIGSTOP, so the daemon's connections stay open and its queries
# get no answer (no error either); /readyz answers 503 naming the store within its bound
# (limits.ready_timeout), and 200 again after SIGCONT. Skipped when PostgreSQL is not installed.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/pg.sh"
STOPPED=
# pg_pids: the postmaster and its children.
pg_pids() {
    /usr/bin/python3 - "$PG_DIR/data/postmaster.pid" <<'PY'
import os, sys
pm = int(open(sys.argv[1]).readline())
out = [pm]
for p in os.listdir("/proc"):
    if p.isdigit():
        try: stat = open("/proc/%s/stat" % p).read()
        except OSError: continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pm: out.append(int(p))
print(" ".join(map(str, out)))
PY
}
cleanup_all() {
    [ -n "$STOPPED" ] && kill -CONT $STOPPED 2>/dev/null
    daemon_cleanup
    pg_stop
}
trap cleanup_all EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
echo "1..5"
n=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
readyz_is() { [ "$(curl -s -m 20 -o "$D/readyz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = "$1" ]; }

daemon_config "store = \"$PG_URL\", limits = { ready_timeout = \"1s\" },"
daemon_start || exit 1
readyz_is 200; ok $? "readyz is 200 with PostgreSQL answering"

STOPPED=$(pg_pids)
kill -STOP $STOPPED
readyz_is 503; ok $? "readyz is 503 while every PostgreSQL process is stopped"
/usr/bin/python3 - "$D/readyz.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert e["code"] == "not_ready" and e["details"]["waiting_for"] == ["store"], e
assert e["details"]["store"]["backend"] == "postgres", e
assert "store read" in e["details"]["store"]["error"], e
PY
ok $? "the 503 names the store and why: $(head -c 300 "$D/readyz.json")"

kill -CONT $STOPPED; STOPPED=
wait_for 30 readyz_is 200; ok $? "readyz is 200 again once PostgreSQL runs"

daemon_stop
ok "$DSTATUS" "the daemon stops cleanly (status $DSTATUS)"
