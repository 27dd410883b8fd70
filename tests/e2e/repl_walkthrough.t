#!/bin/bash
# docs/repl.md's incident, step by step, with the shipped policies: a bad deploy event
# becomes a dead letter; the REPL finds it (policies, dead_letters, explain), a fixed policy
# is reloaded, the event requeued and handled, and the audit log has every step.
set -u
. "$(dirname "$0")/../support/daemon.sh"
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; sed 's/^/# /' "$D/out" | head -20; fi; }
cp -r "$here/policies/ops" "$D/policies/"
daemon_config 'limits = { retry_base = "20ms", retry_attempts = 3 },'
daemon_start || exit 1
S=$D/var/steward.sock
ev() { "$BIN" eval --socket "$S" "$1" > "$D/out" 2>&1; }
post() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "$1" "http://127.0.0.1:$PORT/v1/events"; }
check '[ "$(post '\''{"type":"deploy.finished","data":{"service":"checkout","version":"1.4.2","by":"ana"}}'\'')" = 202 ]' "a good deploy is accepted"
check '[ "$(post '\''{"id":"ev-bad-1","type":"deploy.finished","data":{"version":"1.5.0","by":"ci"}}'\'')" = 202 ]' "a bad deploy is accepted"
for _ in $(seq 200); do ev 'return #dead_letters()'; [ "$(cat "$D/out")" = 1 ] && break; sleep 0.05; done
check '[ "$(cat "$D/out")" = 1 ]' "the bad deploy becomes a dead letter after its retries"
ev 'policies()'
check 'grep -q "^ops.deploys .* 3 " "$D/out" || grep -q "ops.deploys" "$D/out"' "policies() lists ops.deploys"
ev 'local r = policies() for _, p in ipairs(r) do if p.name == "ops.deploys" then return p.errors end end'
check '[ "$(cat "$D/out")" = 3 ]' "policies() counts its failed runs"
ev 'dead_letters()'
check 'grep -q "ev-bad-1 .*has no data.service" "$D/out"' "dead_letters() shows the event and the error"
ev 'local e = explain("ev-bad-1") return e.outcome, e.input.data.version, e.policy'
check '[ "$(cat "$D/out")" = "$(printf "\"error\"\n\"1.5.0\"\n\"ops.deploys\"")" ]' "explain(event id): the failing decision with its input"
ev 'kv("deploys"):get("checkout").version'
check '[ "$(cat "$D/out")" = "\"1.4.2\"" ]' "kv shows the good deploy"
ev 'policy.simulate("ops.deploys", {type = "deploy.finished", data = {version = "2"}}).error'
check 'grep -q "has no data.service" "$D/out"' "policy.simulate reproduces the failure without side effects"
ver='local r = policies() for _, p in ipairs(r) do if p.name == "ops.deploys" then return p.version end end'
ev "$ver"; v1=$(cat "$D/out")
sed -i 's/error("deploy event " .. tostring(ev.id) .. " has no data.service")/d.service = "unknown"/' "$D/policies/ops/deploys.lua"
ev 'reload().loaded'
check '[ "$(cat "$D/out")" = 2 ]' "reload() reloads both policies"
ev "$ver"
check '[ -n "$v1" ] && [ "$(cat "$D/out")" != "$v1" ]' "the fixed version runs (reload(), or the file watch before it)"
ev 'requeue(dead_letters()[1].id)'
check '[ "$(cat "$D/out")" = true ]' "requeue hands the event back"
for _ in $(seq 200); do ev 'local v = kv("deploys"):get("unknown") return v and v.event_id'; [ "$(cat "$D/out")" = '"ev-bad-1"' ] && break; sleep 0.05; done
check '[ "$(cat "$D/out")" = "\"ev-bad-1\"" ]' "the requeued event is handled by the fixed policy"
"$BIN" audit -c "$D/steward.lua" --limit 100 > "$D/out"
check 'grep -q "reload()" "$D/out" && grep -q "requeue(dead_letters()\[1\].id)" "$D/out"' "steward audit has the steps"
daemon_stop
echo "1..$n"
