#!/bin/bash
# The audit chain with several writers: three steward instances on one PostgreSQL (a
# throwaway 15, tests/support/pg.sh; skipped when it is not installed) record silences
# created concurrently through their HTTP APIs, each instance by its own clients and token,
# while `steward audit checkpoint` signs from the side. Afterwards the chain is linear (ids
# 1..N without gaps, no two entries with the same prev_hash), every acknowledged change is in
# it exactly once, and `steward audit verify` passes.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"
T=$(mktemp -d /tmp/steward-aud.XXXXXX)
declare -A PID PORTS OPTOKEN
cleanup() {
    for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -9 "${PID[$i]}" 2>/dev/null; done
    wait 2>/dev/null
    pg_stop
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; echo "# out: $(head -c 600 "$T/out" 2>/dev/null)"; fi; }
psql_q() { pg_as "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d steward -Atc "$1"; }

TOKEN=audit-test-admin-token-0123456789
mkdir -p "$T/policies"
echo 'return { name = "a.noop", on = { "a.*" }, handle = function() end }' > "$T/policies/noop.lua"
config() { # config NAME
    mkdir -p "$T/$1/var"
    cat > "$T/$1/steward.lua" <<CFG
return { listen = "127.0.0.1:0", store = "$PG_URL", policies = "$T/policies",
  var_dir = "$T/$1/var", admin_socket = "$T/$1/var/steward.sock", admin_token = "$TOKEN" }
CFG
}
for i in a b c; do config $i; done
# One signing key for the cluster (docs/audit.md): made once, copied to every var dir.
"$BIN" audit pubkey -c "$T/a/steward.lua" > "$T/pub.pem" || exit 1
cp -p "$T/a/var/audit-key.pem" "$T/b/var/"; cp -p "$T/a/var/audit-key.pem" "$T/c/var/"

start() {
    local i=$1
    [ -f "$T/$i/log.run" ] && cat "$T/$i/log.run" >> "$T/$i/log"
    "$BIN" run -c "$T/$i/steward.lua" 2>"$T/$i/log.run" &
    PID[$i]=$!
    for _ in $(seq 400); do
        PORTS[$i]=$(sed -n 's/.*msg=listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$T/$i/log.run" | tail -1)
        [ -n "${PORTS[$i]}" ] && return 0
        kill -0 "${PID[$i]}" 2>/dev/null || break
        sleep 0.025
    done
    echo "# instance $i did not start:"; sed 's/^/# /' "$T/$i/log.run"
    return 1
}
for i in a b c; do start $i || { echo "1..1"; echo "not ok 1 - three instances start"; exit 1; }; done

# An operator token per instance, so each entry names the instance that wrote it.
for i in a b c; do
    OPTOKEN[$i]=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        --data "{\"role\":\"operator\",\"name\":\"op-$i\"}" "http://127.0.0.1:${PORTS[$i]}/v1/tokens" |
        sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
done
check '[ -n "${OPTOKEN[a]}" ] && [ -n "${OPTOKEN[b]}" ] && [ -n "${OPTOKEN[c]}" ]' "an operator token for each instance"
# Tokens live in each instance's memory: the others learn a new one at their next start.
for i in a b c; do kill -TERM "${PID[$i]}"; wait "${PID[$i]}"; PID[$i]=; done
for i in a b c; do start $i || exit 1; done

PER=25
later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
later2=$(date -u -d '+2 hour' +%Y-%m-%dT%H:%M:%SZ)
client() { # client INSTANCE K: PER silences through INSTANCE; each answer's status in $T/acked.INSTANCE.K
    local i=$1 k=$2 j
    for j in $(seq $PER); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer ${OPTOKEN[$i]}" \
            -H 'content-type: application/json' "http://127.0.0.1:${PORTS[$i]}/api/v2/silences" --data \
            "{\"matchers\":[{\"name\":\"c\",\"value\":\"$i$k-$j\",\"isRegex\":false}],\"startsAt\":\"$later\",\"endsAt\":\"$later2\",\"createdBy\":\"t\",\"comment\":\"c\"}")
        echo "$code" >> "$T/acked.$i.$k"
    done
}
CL=()
for i in a b c; do for k in 1 2; do client $i $k & CL+=($!); done; done
for _ in 1 2 3; do "$BIN" audit checkpoint -c "$T/a/steward.lua" >> "$T/cp.out" 2>&1; done
for p in "${CL[@]}"; do wait "$p"; done
ok=$(cat "$T"/acked.* | grep -c '^200$')
check '[ "$ok" = $((3 * 2 * PER)) ]' "all $((3 * 2 * PER)) silences were created ($ok)"
check '[ "$(grep -c "^checkpoint: entry" "$T/cp.out")" = 3 ]' "three checkpoints signed by the CLI while the instances wrote"
retries=0
for i in a b c; do
    r=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORTS[$i]}/metrics" |
        sed -n 's/^steward_audit_append_retries_total \([0-9]*\).*/\1/p')
    retries=$((retries + ${r:-0}))
done
echo "# appends that lost the race and chained onto the new head: $retries"
for i in a b c; do kill -TERM "${PID[$i]}"; wait "${PID[$i]}"; PID[$i]=; done

psql_q "SELECT COUNT(*), MIN(id), MAX(id), COUNT(DISTINCT prev_hash), COUNT(DISTINCT hash) FROM audit WHERE hash IS NOT NULL" > "$T/out"
IFS='|' read -r cnt lo hi dprev dhash < "$T/out"
check '[ "$lo" = 1 ] && [ "$hi" = "$cnt" ] && [ "$dprev" = "$cnt" ] && [ "$dhash" = "$cnt" ]' \
    "the chain is linear: ids 1..$cnt without gaps, every prev_hash and hash distinct"
psql_q "SELECT COUNT(*) FROM audit a JOIN audit b ON b.id = a.id + 1 WHERE b.prev_hash <> a.hash" > "$T/out"
check '[ "$(cat "$T/out")" = 0 ]' "every entry chains onto the one before it (no fork)"
for i in a b c; do
    got=$(psql_q "SELECT COUNT(*) FROM audit WHERE command = 'silence.put' AND outcome = 'ok' AND actor LIKE '%(op-$i)'")
    check '[ "$got" = $((2 * PER)) ]' "instance $i: each of its $((2 * PER)) changes is in the chain once ($got)"
done
"$BIN" audit verify -c "$T/b/steward.lua" --pubkey "$T/pub.pem" > "$T/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && grep -q "^ok: verified entries 1 to $cnt" "$T/out"' "steward audit verify passes"
echo "1..$n"
