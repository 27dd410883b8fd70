#!/bin/bash
# A takeover by another instance on PostgreSQL mid-rollout (issue 15 §2): two steward instances
# in cluster mode on one throwaway PostgreSQL (tests/support/pg.sh) roll out a service on the
# Kubernetes platform, against tests/support/kube_api.py (the local server speaking the
# Kubernetes wire format; it logs every request with the bearer token it carried, and each
# instance has its own token, so the log says which instance acted). The canary: set_weight 20,
# pause 3s, set_weight 50, pause until promoted. The instance that handles the service's key is
# SIGKILLed in the timed pause; the other one must take the rollout over (its bucket lease runs
# out), end the pause, run set_weight 50, pause at step 4, and complete when promoted through
# its own API. Every mutating request the API server received for v2 is counted per object:
# exactly what the steps need, none twice, and none from the dead instance after its death.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"
PY=/usr/bin/python3
T=$(mktemp -d /tmp/steward-takeover.XXXXXX)
declare -A PID PORTS
KPID=
cleanup() {
    for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -9 "${PID[$i]}" 2>/dev/null; done
    [ -n "$KPID" ] && kill "$KPID" 2>/dev/null
    wait 2>/dev/null
    pg_stop
    rm -rf "$T"
}
trap cleanup EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }

TOKEN=takeover-test-admin-token-0123456789
n=0
fail=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; return "$1"; }
finish() { echo "1..$n"; [ "$fail" = 0 ]; exit $?; }
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    until "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
jx() { $PY "$here/tests/support/jx.py" "$@"; }
url() { echo "http://127.0.0.1:${PORTS[$1]}$2"; }
# field INSTANCE ROLLOUT EXPR: a Python expression over the rollout's JSON (d), asked of INSTANCE
field() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$(url "$1" "/v1/rollouts/$2")" | jx "$3"; }
at() { [ "$(field "$1" "$2" '"%s %s" % (d["phase"], d["step"])' 2>/dev/null)" = "$3" ]; }
diag() {
    curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$(url "$1" "/v1/rollouts/$2")" | head -c 3000 | sed 's/^/# /'; echo
    for i in a b; do grep -E 'level=(warn|error)' "$T/$i/log" 2>/dev/null | tail -5 | sed "s/^/# $i: /"; done
}

# The Kubernetes API (test server): each instance authenticates with its own token.
KPORT=$(pg_free_port)
KAPI="http://127.0.0.1:$KPORT"
printf 'kube-token-a\n' > "$T/kube-token-a"
printf 'kube-token-b\n' > "$T/kube-token-b"
$PY "$here/tests/support/kube_api.py" "$KPORT" "kube-token-a,kube-token-b" > "$T/kube.log" 2>&1 &
KPID=$!
wait_for 10 $PY -c "import socket; socket.create_connection(('127.0.0.1', $KPORT), 1)" 2>/dev/null
tap $? "the Kubernetes API test server runs" || finish
# kube JSON_REQUESTS: the requests the server received (GET /_test/requests)
kube_requests() { curl -s -m 10 "$KAPI/_test/requests"; }
# The operator's base objects: Deployment web, Service web, HTTPRoute web in namespace prod.
$PY - "$KAPI" <<'EOF'
import json, sys, urllib.request
api = sys.argv[1]
def post(path, obj):
    req = urllib.request.Request(api + path, json.dumps(obj).encode(), method="POST",
        headers={"Authorization": "Bearer kube-token-a", "Content-Type": "application/json"})
    assert urllib.request.urlopen(req).status == 201
post("/apis/apps/v1/namespaces/prod/deployments", {"metadata": {"name": "web"}, "spec": {"replicas": 1,
    "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "app", "image": "registry.local/web:v0"}]}}}})
post("/api/v1/namespaces/prod/services", {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
post("/apis/gateway.networking.k8s.io/v1/namespaces/prod/httproutes", {"metadata": {"name": "web"},
    "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web-v0", "port": 80, "weight": 100}]}]}})
EOF
tap $? "the base Deployment, Service and HTTPRoute exist" || finish

mkdir -p "$T/policies/deploy"
cat > "$T/policies/deploy/web.lua" <<'EOF'
local deploy = require "steward.deploy"
return deploy.rollout_policy{
  name = "deploy.web", service = "web",
  strategy = deploy.canary{ steps = { { set_weight = 20 }, { pause = { duration = "3s" } }, { set_weight = 50 }, { pause = {} } },
                            scale_down_delay = "1s" },
}
EOF
start() {
    instance_start "$1" "services = { web = { kubernetes = { api = '$KAPI', namespace = 'prod', deployment = 'web',
      service = 'web', httproute = 'web', image = 'registry.local/web:{revision}', token_file = '$T/kube-token-$1' } } },
  grants = { ['deploy.*'] = { deploy = { 'web' } } },
  cluster = { lease = 2 }"
}
start a & sa=$!; start b & sb=$!; wait "$sa" "$sb"
for i in a b; do
    PORTS[$i]=$(sed -n 's/.*msg=listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$T/$i/log" | tail -1)
    PID[$i]=$(sed -n 's/.*msg="cluster: instance registered".* instance=[^ ]*-\([0-9]*\)-[0-9a-f]*.*/\1/p' "$T/$i/log" | tail -1)
done
ok=0; for i in a b; do [ -n "${PORTS[$i]}" ] && [ -n "${PID[$i]}" ] || ok=1; done
tap $ok "two instances start on one PostgreSQL" || { for i in a b; do sed "s/^/# $i: /" "$T/$i/log"; done; finish; }

# The buckets settle (32 each) before the rollouts: the service's key then stays where it is
# until the kill.
balanced() {
    curl -s -m 10 -H "Authorization: Bearer $TOKEN" "$(url a /v1/cluster)" |
        jx 'sorted(i["buckets"] for i in d["instances"] if i["state"] == "alive") == [32, 32]' >/dev/null 2>&1
}
wait_for 30 balanced
tap $? "the 64 buckets are split 32/32 between the instances"

r1=$(curl -s -m 30 -H "Authorization: Bearer $TOKEN" -d '{"service":"web","revision":"v1"}' "$(url a /v1/rollouts)" | jx 'd["rollout"]')
wait_for 30 at a "$r1" "Completed 1"
tap $? "the first revision v1 is rolled out whole" || diag a "$r1"

L0=$(kube_requests | jx 'len(d)')
r2=$(curl -s -m 30 -H "Authorization: Bearer $TOKEN" -d '{"service":"web","revision":"v2"}' "$(url a /v1/rollouts)" | jx 'd["rollout"]')
wait_for 30 at a "$r2" "Paused 2"
tap $? "v2 reached the 3 s pause (step 2)" || { diag a "$r2"; finish; }
# The instance that created v2's Deployment handles the service's key: kill it there.
owner=$(kube_requests | jx '[r["token"] for r in d[int(arg[0]):] if r["method"] == "POST" and r["path"].endswith("/deployments")][0][len("kube-token-"):]' "$L0")
case "$owner" in a) survivor=b ;; b) survivor=a ;; *) survivor= ;; esac
[ -n "$survivor" ]
tap $? "the instance handling the service's key is $owner (its token created v2's Deployment)" || finish
kill -9 "${PID[$owner]}"
while kill -0 "${PID[$owner]}" 2>/dev/null; do sleep 0.01; done
PID[$owner]=
L1=$(kube_requests | jx 'len(d)')
t_kill=$(date +%s%N)
echo "# $owner SIGKILLed in the timed pause; $survivor survives"

# Takeover: the survivor's lease on the key's bucket, the pause's timer (fired by whoever
# leads), set_weight 50 by the survivor, then the indefinite pause.
wait_for 40 at "$survivor" "$r2" "Paused 4"
tap $? "$survivor took the rollout over: the pause ended and set_weight 50 ran, paused at step 4" || { diag "$survivor" "$r2"; finish; }
echo "# paused at step 4 $(( ($(date +%s%N) - t_kill) / 1000000 )) ms after the kill"
# who: the instances whose tokens sent mutating requests from index FROM on
who() { kube_requests | jx '" ".join(sorted({r["token"] for r in d[int(arg[0]):] if r["method"] in ("POST", "PUT", "PATCH", "DELETE")}))' "$1"; }
[ "$(who "$L1")" = "kube-token-$survivor" ]
tap $? "every change after the kill came from $survivor ($(who "$L1"))"
repeated=$(field "$survivor" "$r2" '[h["data"]["effect"] for h in d["history"] if h["kind"] == "effect_started" and h["data"].get("repeated")]')
[ "$repeated" = "[]" ]
tap $? "no effect was started again after the takeover (repeated: $repeated)"

code=$(curl -s -o "$T/promote.out" -w '%{http_code}' -m 30 -X POST -H "Authorization: Bearer $TOKEN" "$(url "$survivor" "/v1/rollouts/$r2/promote")")
[ "$code" = 202 ]
tap $? "promote through $survivor's API is accepted ($code)" || sed 's/^/# /' "$T/promote.out"
wait_for 30 at "$survivor" "$r2" "Completed 4"
tap $? "the rollout completes on $survivor" || diag "$survivor" "$r2"
# v1 is retired after scale_down_delay: its Deployment and Service are deleted
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$KAPI/_test/object?namespace=prod&kind=$1&name=web-v1")" = 404 ]; }
v1_gone() { gone deployments && gone services; }
wait_for 30 v1_gone
tap $? "v1's Deployment and Service are deleted after scale_down_delay" || diag "$survivor" "$r2"
v2_full() {
    curl -s -m 10 "$KAPI/_test/object?namespace=prod&kind=httproutes&name=web" |
        jx '{b["name"]: b.get("weight") for b in d["spec"]["rules"][0]["backendRefs"]}.get("web-v2") == 100' >/dev/null 2>&1
}
wait_for 10 v2_full
tap $? "the HTTPRoute sends 100% to web-v2"

# Every mutating request of v2's rollout, per object: exactly the steps' changes, each once.
# set_weight 20: Deployment and Service web-v2 created, the route patched; set_weight 50 and
# the promotion: the route patched; the retirement: v1's Deployment and Service deleted.
muts=$(kube_requests | jx '" ".join("%s=%d" % kv for kv in sorted(__import__("collections").Counter(
    r["method"] + ":" + r["path"].split("?")[0] + (":" + json.loads(r["body"])["metadata"]["name"] if r["method"] == "POST" else "")
    for r in d[int(arg[0]):] if r["method"] in ("POST", "PUT", "PATCH", "DELETE")).items()))' "$L0")
want="DELETE:/api/v1/namespaces/prod/services/web-v1=1 DELETE:/apis/apps/v1/namespaces/prod/deployments/web-v1=1 PATCH:/apis/gateway.networking.k8s.io/v1/namespaces/prod/httproutes/web=3 POST:/api/v1/namespaces/prod/services:web-v2=1 POST:/apis/apps/v1/namespaces/prod/deployments:web-v2=1"
[ "$muts" = "$want" ]
tap $? "the API server received each of v2's changes once" || { echo "# got:  $muts"; echo "# want: $want"; }
dup=$(field "$survivor" "$r2" 'sorted(k for k, v in __import__("collections").Counter(h["data"]["effect"] for h in d["history"] if h["kind"] == "effect_done").items() if v > 1)')
[ "$dup" = "[]" ]
tap $? "every side effect is done once in the rollout's history (repeated: $dup)"
finish
