#!/bin/bash
# Tenant provisioning on a real PostgreSQL 15 (store and tenants.postgres on it):
#  - row-level security: connected AS tenant_acme, globex's rows cannot be read or written;
#  - a failure injected at each step in turn: the tenant ends failed naming the step, and the
#    compensations leave nothing (no token, no kv row, no role, schema or policy in the catalog);
#  - kill -9 at each step (after the step ran, before it was recorded): the restarted daemon
#    resumes, the crashed step runs a second time and changes nothing more (one token, one role,
#    one schema, one welcome notification), no other step runs twice;
#  - 50 tenants requested at once: all active, one role and one schema each, their quotas recorded.
# Skipped without PostgreSQL.
. "$(dirname "$0")/../support/daemon.sh"
. "$(dirname "$0")/../support/pg.sh"
pg_start || exit 1
trap 'daemon_cleanup; pg_stop' EXIT
STEPS="tokens postgres limits config branding welcome"
echo "1..27"
export STEWARD_TEST_STORE=$PG_URL
daemon_config "pg_connections = { tenants = \"$PG_URL\" },
  tenants = { postgres = \"tenants\", plans = { basic = { quotas = { instances = 2 } } } },"
daemon_start || exit 1
U() { echo "http://127.0.0.1:$PORT$1"; }
H="Authorization: Bearer $TOKEN"
sql() { pg_as "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "${AS:-postgres}" -d steward -XAtqc "$1" 2>&1; }
create() { curl -s -o /dev/null -w '%{http_code}' -H "$H" -d "{\"id\":\"$1\",\"name\":\"$1\",\"contact\":{\"email\":\"ops@$1.test\"}}" "$(U /v1/tenants)"; }
state() { curl -s -H "$H" "$(U /v1/tenants/$1)" | jx 'd["state"]' 2>/dev/null; }
is_state() { [ "$(state "$1")" = "$2" ]; }

# ---- row-level security ----
create acme >/dev/null; create globex >/dev/null
wait_for 30 is_state acme active && wait_for 30 is_state globex active
ok $? "acme and globex are provisioned"
[ "$(sql "SELECT count(*) FROM pg_roles WHERE rolname IN ('tenant_acme','tenant_globex')")" = 2 ] &&
[ "$(sql "SELECT count(*) FROM pg_namespace WHERE nspname IN ('tenant_acme','tenant_globex')")" = 2 ]
ok $? "each has its role and its schema"
sql "INSERT INTO steward_tenant_data VALUES ('acme','a1','1'), ('globex','g1','2')" >/dev/null
[ "$(AS=tenant_acme sql "SELECT string_agg(tenant || '/' || key, ',') FROM steward_tenant_data")" = acme/a1 ]
ok $? "connected as tenant_acme, only acme's rows are visible"
[ "$(AS=tenant_acme sql "SELECT count(*) FROM steward_tenant_data WHERE tenant = 'globex'")" = 0 ]
ok $? "... asking for globex's rows by name gets none"
out=$(AS=tenant_acme sql "INSERT INTO steward_tenant_data VALUES ('globex','evil','3')")
echo "$out" | grep -q "row-level security"
ok $? "... writing a globex row is refused by row-level security"
[ "$(AS=tenant_acme sql "UPDATE steward_tenant_data SET value = '9' WHERE tenant = 'globex' RETURNING 1" | grep -c 1)" = 0 ] &&
[ "$(sql "SELECT value FROM steward_tenant_data WHERE tenant = 'globex'")" = 2 ]
ok $? "... updating globex's rows changes nothing"
AS=tenant_acme sql "CREATE TABLE tenant_acme.notes (x int)" | grep -q ERROR && false || true
out=$(AS=tenant_acme sql "CREATE TABLE tenant_globex.stolen (x int)")
[ "$(sql "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_acme' AND tablename = 'notes'")" = 1 ] &&
echo "$out" | grep -q "permission denied"
ok $? "tenant_acme owns its schema and may not write into globex's"

# ---- a failure at each step in turn ----
leftovers() {  # what a tenant's provisioning made that is still there, one word each
    local t=$1
    [ "$(sql "SELECT count(*) FROM api_tokens WHERE tenant = '$t'")" = 0 ] || echo token
    [ "$(sql "SELECT count(*) FROM kv WHERE ns = 'tenants' AND key LIKE '$t/%'")" = 0 ] || echo kv
    [ "$(sql "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_$t'")" = 0 ] || echo role
    [ "$(sql "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_$t'")" = 0 ] || echo schema
    [ "$(sql "SELECT count(*) FROM pg_policies WHERE policyname = 'tenant_$t'")" = 0 ] || echo policy
}
for s in $STEPS; do
    t="f-$s"
    "$BIN" eval --socket "$D/var/steward.sock" "require('steward.tenants.saga').inject.fail = '$s'" >/dev/null
    create "$t" >/dev/null
    wait_for 30 is_state "$t" failed
    r=$?
    "$BIN" eval --socket "$D/var/steward.sock" "require('steward.tenants.saga').inject.fail = nil" >/dev/null
    fs=$(curl -s -H "$H" "$(U /v1/tenants/$t)" | jx 'd["failed_step"]')
    left=$(leftovers "$t" | tr '\n' ' ')
    [ $r = 0 ] && [ "$fs" = "$s" ] && [ -z "$left" ]
    ok $? "failure at $s: failed at $fs, nothing left ${left:+(left: $left)}"
done
curl -s -H "$H" "$(U /v1/events?tenant=f-config\&type=tenant.failed)" | jx 'd["events"][0]["data"]["failed_step"] == "config"' >/dev/null
ok $? "tenant.failed names the step"

# ---- kill -9 at each step ----
count() { sql "$1"; }
for s in $STEPS; do
    t="k-$s"
    daemon_stop
    export STEWARD_TENANTS_CRASH_STEP=$s
    daemon_start || exit 1
    unset STEWARD_TENANTS_CRASH_STEP
    create "$t" >/dev/null
    wait "$DPID" 2>/dev/null
    DPID=
    cat "$D/log.new" >> "$D/log"
    grep -q "crash injected.*step=$s" "$D/log.new"
    crashed=$?
    daemon_start || exit 1
    wait_for 30 is_state "$t" active
    r=$?
    runs=$(curl -s -H "$H" "$(U /v1/tenants/$t/saga)" | jx '",".join(x["step"] + "=" + str(x["runs"]) for x in d["steps"])')
    want=$(for x in $STEPS; do [ "$x" = "$s" ] && echo -n "$x=2," || echo -n "$x=1,"; done)
    dup="$(count "SELECT count(*) FROM api_tokens WHERE tenant = '$t'")$(count "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_$t'")"
    dup="$dup$(count "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_$t'")$(count "SELECT count(*) FROM notify_history WHERE key = 'tenant-welcome:$t'")"
    [ $crashed = 0 ] && [ $r = 0 ] && [ "$runs," = "$want" ] && [ "$dup" = 1111 ]
    ok $? "kill -9 at $s: resumed to active; runs $runs; token, role, schema, welcome: $dup"
done
[ "$(count "SELECT count(*) FROM tenant_sagas WHERE state NOT IN ('done', 'failed')")" = 0 ]
ok $? "no saga is left unfinished"

# ---- 50 at once ----
pids=
for i in $(seq 1 50); do create "p-$i" > "$D/code.$i" & pids="$pids $!"; done
wait $pids  # (not a bare wait: the daemon is a child too)
codes=$(cat "$D"/code.* | grep -o '[0-9][0-9][0-9]' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
[ "$codes" = " 50 201 " ]
ok $? "50 requests at once: all 201 ($codes)"
all_active() { [ "$(count "SELECT count(*) FROM tenants WHERE id LIKE 'p-%' AND state = 'active'")" = 50 ]; }
wait_for 120 all_active
ok $? "all 50 are active ($(count "SELECT state || ':' || count(*) FROM tenants WHERE id LIKE 'p-%' GROUP BY state"))"
[ "$(count "SELECT count(*), count(DISTINCT rolname) FROM pg_roles WHERE rolname LIKE 'tenant_p-%'")" = "50|50" ] &&
[ "$(count "SELECT count(*), count(DISTINCT nspname) FROM pg_namespace WHERE nspname LIKE 'tenant_p-%'")" = "50|50" ] &&
[ "$(count "SELECT count(*) FROM pg_policies WHERE policyname LIKE 'tenant_p-%'")" = 50 ]
ok $? "one role, one schema, one policy each"
[ "$(count "SELECT count(*) FROM api_tokens WHERE tenant LIKE 'p-%'")" = 50 ]
ok $? "one admin token each"
[ "$(count "SELECT count(*) FROM kv WHERE ns = 'tenants' AND key LIKE 'p-%/limits' AND value::jsonb #>> '{quotas,instances}' = '2'")" = 50 ]
ok $? "each has its plan's quotas recorded"
out=$("$BIN" eval --socket "$D/var/steward.sock" 'return require("steward.scaling.quota").tenant_plan_quotas("p-7").instances' 2>&1)
[ "$out" = 2 ]
ok $? "steward.scaling.quota bounds a tenant by its plan's quotas ($out)"
daemon_stop
exit $fail
