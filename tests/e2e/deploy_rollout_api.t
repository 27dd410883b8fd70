#!/bin/bash
# The rollout routes of the HTTP API and the REPL helpers against a real daemon: bad input is
# refused naming the field; a start is refused while a change freeze holds (409 naming the
# window, asked of the loaded deploy.freeze policy through the decide path, so it is in the
# decision log); one rollout per service at a time (409); roles (a viewer reads, an operator
# acts); tenant scoping (another tenant's rollout does not exist); commands are events the
# rollout policy handles (abort, retry); every POST is audited. The service is declared with an
# HAProxy socket nobody listens on: the rollout's side effects fail (and say so in its message),
# which is all these routes need.
set -u
. "$(dirname "$0")/../support/daemon.sh"
if [ ! -f "$here/scripts/steward/deploy/supervisor.lua" ]; then
    echo "1..0 # SKIP the config's services (steward.deploy.supervisor, issue 15 part h1) are not in this tree"
    exit 0
fi
cleanup_all() {
    # the daemon first (its supervisor would restart them), then the instances it started:
    # they live in sessions of their own and outlive it
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=
    [ -f "$D/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/starts"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..25"
n=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; return 1; fi; }
U="http://127.0.0.1"
# call TOKEN METHOD PATH [BODY]: prints "STATUS BODY"
call() {
    local out
    out=$(curl -s -m 30 -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" ${4:+-d "$4"} "$U:$PORT$3")
    echo "$out $(cat "$D/body")"
}
status() { call "$@" | cut -d' ' -f1; }
body() { call "$@" | cut -d' ' -f2-; }

daemon_config "
  services = {
    web = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/rollout_app.py', '--port', '{port}', '--starts', '$D/starts' }, instances = 1,
                    ports = '31000-31009' },
            haproxy = { socket = '$D/nobody.sock', backend = 'web' } },
    api = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/rollout_app.py', '--port', '{port}', '--starts', '$D/starts' }, instances = 1,
                    ports = '31010-31019' },
            haproxy = { socket = '$D/nobody.sock', backend = 'api' } },
  },
  grants = { ['deploy.*'] = { deploy = { 'web', 'api' } } },"
mkdir -p "$D/policies/deploy"
for s in web api; do
    cat > "$D/policies/deploy/$s.lua" <<EOF
local deploy = require "steward.deploy"
return deploy.rollout_policy{ name = "deploy.$s", service = "$s",
  strategy = deploy.canary{ steps = { { set_weight = 20 }, { pause = {} } } } }
EOF
done
# A freeze policy of the shape deploy.freeze answers (policies/deploy/freeze.lua ships the real one).
cat > "$D/policies/deploy/freeze.lua" <<'EOF'
return {
  name = "deploy.freeze",
  decide = function(input)
    if input.service == "api" and not input.override then
      return { allow = false, window = "release-freeze", reason = "the quarterly release freeze until 2099-01-01T00:00:00Z" }
    end
    return { allow = true }
  end,
}
EOF
daemon_start || exit 1
# tokens: an operator, a viewer, an operator of tenant t1
tok() { call "$TOKEN" POST /v1/tokens "$1" | cut -d' ' -f2- | jx 'd["token"]'; }
OP=$(tok '{"role":"operator","name":"ana"}')
VW=$(tok '{"role":"viewer","name":"vic"}')
T1=$(tok '{"role":"operator","name":"tina","tenant":"t1"}')

r=$(call "$OP" GET /v1/rollouts)
[ "$r" = '200 {"rollouts":[]}' ]
ok $? "GET /v1/rollouts: none yet ($r)"

r=$(call "$OP" POST /v1/rollouts '{"service":"web","revison":"v1"}')
# 400 naming field $2 with a reason containing $3 (the JSON's key order is not fixed)
field_error() {
    [ "${1%% *}" = 400 ] && echo "${1#* }" | jx "any(e['field'] == '$2' and '$3' in e['reason'] for e in d['error']['details']['errors'])" >/dev/null
}
field_error "$r" revison "unknown field"; ok $? "a misspelt field is named (400)" || echo "# $r"
r=$(call "$OP" POST /v1/rollouts '{"service":"nope","revision":"v1"}')
field_error "$r" service "not declared"; ok $? "a service not in the config's services is refused" || echo "# $r"
r=$(call "$OP" POST /v1/rollouts '{"service":"web","revision":"v1 beta"}')
case "$r" in 400*'"field":"revision"'*) ok 0 "a revision with a space is refused, naming the field" ;; *) ok 1 "bad revision: $r" ;; esac
r=$(call "$OP" POST /v1/rollouts '{"service":"web","revision":"v1","migrations":[{"sql":3}]}')
case "$r" in 400*'migrations[1]'*) ok 0 "a bad migration entry is named by its index" ;; *) ok 1 "bad migration: $r" ;; esac
[ "$(status "$VW" POST /v1/rollouts '{"service":"web","revision":"v1"}')" = 403 ]
ok $? "a viewer may not start a rollout (403)"

r=$(call "$OP" POST /v1/rollouts '{"service":"api","revision":"v1"}')
echo "$r" | cut -d' ' -f2- | jx 'd["error"]["code"] == "frozen" and d["error"]["details"]["window"] == "release-freeze" and "release-freeze" in d["error"]["message"]' >/dev/null &&
    [ "${r%% *}" = 409 ]
ok $? "a start in a freeze: 409 naming the window" || echo "# $r"
decisions=$(call "$TOKEN" GET "/v1/decisions?policy=deploy.freeze")
echo "$decisions" | cut -d' ' -f2- | jx 'len(d["decisions"]) == 1 and d["decisions"][0]["result"]["allow"] == False' >/dev/null
ok $? "the freeze's answer is in the decision log"
[ "$(status "$OP" POST /v1/rollouts '{"service":"api","revision":"v1","override":"CAB-42"}')" = 202 ]
ok $? "with an override the freeze policy allows it (202)"

r=$(call "$OP" POST /v1/rollouts '{"service":"web","revision":"v1"}')
id=$(echo "$r" | cut -d' ' -f2- | jx 'd["rollout"]')
case "$r" in 202*) ok 0 "POST /v1/rollouts: 202 with the rollout id ($id)" ;; *) ok 1 "start: $r" ;; esac
wait_for 30 sh -c "curl -s -H 'Authorization: Bearer $OP' $U:$PORT/v1/rollouts/$id | grep -q 'effect_failed'"
ok $? "the policy handled it: its side effect failed against the absent HAProxy, in its history"
m=$(body "$VW" GET "/v1/rollouts/$id" | jx 'd["message"]')
case "$m" in *haproxy*) ok 0 "a viewer reads it; its message says what failed ($m)" ;; *) ok 1 "message: $m" ;; esac
r=$(call "$OP" POST /v1/rollouts '{"service":"web","revision":"v2"}')
[ "${r%% *}" = 409 ] && echo "$r" | cut -d' ' -f2- | jx 'd["error"]["code"] == "rollout_in_progress" and d["error"]["details"]["rollout"] == arg[0]' "$id" >/dev/null
ok $? "a second rollout of the service: 409 naming the one in progress" || echo "# $r"
[ "$(body "$OP" GET "/v1/rollouts?service=web&phase=Progressing" | jx 'len(d["rollouts"])')" = 1 ]
ok $? "GET /v1/rollouts filters by service and phase"
r=$(call "$OP" GET "/v1/rollouts?phase=Running")
case "$r" in 400*'"field":"phase"'*) ok 0 "an unknown phase is refused, naming the parameter" ;; *) ok 1 "phase: $r" ;; esac
[ "$(status "$OP" GET /v1/rollouts/web~nope~00000000)" = 404 ]
ok $? "an unknown rollout: 404"

[ "$(status "$VW" POST "/v1/rollouts/$id/abort")" = 403 ]
ok $? "a viewer may not abort (403)"
r=$(call "$OP" POST "/v1/rollouts/$id/promote" '{"ful":true}')
case "$r" in 400*'"field":"ful"'*) ok 0 "promote with a misspelt field is refused" ;; *) ok 1 "promote body: $r" ;; esac
[ "$(status "$OP" POST "/v1/rollouts/$id/abort")" = 202 ]
ok $? "abort: 202 (an event for the policy)"
wait_for 30 sh -c "curl -s -H 'Authorization: Bearer $OP' $U:$PORT/v1/rollouts/$id | grep -q '\"phase\":\"Aborted\"'"
ok $? "the policy aborted it (a first revision has no traffic to move back)"
r=$(call "$OP" POST "/v1/rollouts/$id/abort")
[ "${r%% *}" = 409 ] && echo "$r" | cut -d' ' -f2- | jx 'd["error"]["code"] == "invalid_phase" and d["error"]["details"]["phase"] == "Aborted"' >/dev/null
ok $? "abort of an aborted rollout: 409 naming its phase" || echo "# $r"

[ "$(body "$T1" GET /v1/rollouts | jx 'len(d["rollouts"])')" = 0 ] && [ "$(status "$T1" GET "/v1/rollouts/$id")" = 404 ]
ok $? "a tenant's token sees no other tenant's rollouts (the list is empty, the id is 404)"

"$BIN" eval --socket "$D/var/steward.sock" 'rollouts{service = "web"}' > "$D/repl.out" 2>&1
grep -q "$id" "$D/repl.out" && grep -q Aborted "$D/repl.out"
ok $? "rollouts{} in the REPL lists it"

"$BIN" audit export -c "$D/steward.lua" -o "$D/audit.jsonl" >/dev/null 2>&1
/usr/bin/python3 -c '
import json, sys
es = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
has = lambda c, src=None: any(e.get("command") == c and (src is None or e.get("source") == src) for e in es)
sys.exit(0 if has("rollout.start") and has("rollout.abort") and has("rollout.aborted", "policy") else 1)' "$D/audit.jsonl"
ok $? "the audit log has the POSTs (rollout.start, rollout.abort) and the policy's transition (rollout.aborted)"
daemon_stop_within 20 && [ "$DSTATUS" -eq 0 ]
ok $? "SIGTERM ends the daemon, status 0 ($DSTATUS)"
