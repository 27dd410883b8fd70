#!/bin/bash
# docs/operations.md's example, run: two instances on one PostgreSQL behind a real HAProxy
# with the documented configuration (leastconn, /readyz health checks, redispatch). Events
# posted through HAProxy reach the shared log whichever instance takes them; when one
# instance is killed, HAProxy's check takes it out and posts keep being accepted; every
# acknowledged event is in the log exactly once. Skipped without haproxy or PostgreSQL.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed"; exit 0; }
. "$here/tests/support/pg.sh"
T=$(mktemp -d /tmp/steward-hap.XXXXXX)
declare -A PID PORTS
HPID=
cleanup() {
    [ -n "$HPID" ] && kill "$HPID" 2>/dev/null
    for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -9 "${PID[$i]}" 2>/dev/null; done
    wait 2>/dev/null
    pg_stop
    rm -rf "$T"
}
trap cleanup EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
TOKEN=cluster-example-token-0123456789
mkdir -p "$T/policies"
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

instance_start 1 && instance_start 2
check '[ -n "${PORTS[1]}" ] && [ -n "${PORTS[2]}" ]' "two instances start on one database"

FRONT=$(pg_free_port)
cat > "$T/haproxy.cfg" <<CFG
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option redispatch
    retries 2

frontend steward
    bind 127.0.0.1:$FRONT
    default_backend steward_nodes

backend steward_nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
    server st1 127.0.0.1:${PORTS[1]} check
    server st2 127.0.0.1:${PORTS[2]} check
CFG
haproxy -c -f "$T/haproxy.cfg" > "$T/hacheck" 2>&1
check '[ $? -eq 0 ]' "the documented HAProxy configuration is valid"
haproxy -db -f "$T/haproxy.cfg" > "$T/halog" 2>&1 &
HPID=$!
post() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"id\":\"$1\",\"type\":\"hap.ev\",\"data\":{}}" "http://127.0.0.1:$FRONT/v1/events"; }
for _ in $(seq 200); do [ "$(post warmup)" = 202 ] && break; sleep 0.05; done
: > "$T/acked"
for i in $(seq 1 100); do [ "$(post "e$i")" = 202 ] && echo "e$i" >> "$T/acked"; done
check '[ "$(wc -l < "$T/acked")" = 100 ]' "100 events posted through HAProxy are acknowledged"
cl=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$FRONT/v1/cluster")
check 'echo "$cl" | /usr/bin/python3 -c "import json,sys; v=json.load(sys.stdin); sys.exit(0 if sum(1 for i in v[\"instances\"] if i[\"state\"]==\"alive\")==2 else 1)"' \
  "GET /v1/cluster through HAProxy shows both instances alive"

kill -9 "${PID[1]}"; wait "${PID[1]}" 2>/dev/null; PID[1]=
for i in $(seq 101 200); do [ "$(post "e$i")" = 202 ] && echo "e$i" >> "$T/acked"; done
check '[ "$(wc -l < "$T/acked")" = 200 ]' "with one instance killed, posts through HAProxy keep being acknowledged (redispatch, health check)"

# every acknowledged id is in the log exactly once
count=$(pg_as "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d steward -At -c \
  "SELECT count(*) FROM events WHERE type = 'hap.ev' AND id <> 'warmup'" 2>/dev/null)
check '[ "$count" = 200 ]' "every acknowledged event is in the shared log exactly once (200)"
echo "1..$n"
