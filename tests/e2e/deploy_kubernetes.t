#!/bin/bash
# steward.deploy.kubernetes against tests/support/kube_api.py, a local test server speaking
# the Kubernetes API's wire format (no cluster runs here; docs/deploy/kubernetes.md says what
# it reproduces): start/scale/image through merge patches guarded by resourceVersion, a 409
# Conflict retried, the blue-green selector switch, HTTPRoute weights, a watch that sees
# readiness and one that meets 410 Expired, errors as Status objects. The checks are
# tests/support/kube_spec.lua; this file starts and stops the server.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
T=$(mktemp -d /tmp/steward-kube.XXXXXX)
KPID=
SPID=
cleanup() { [ -n "$KPID" ] && kill "$KPID" 2>/dev/null; [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=kube-test-token-$$
printf '%s\n' "$TOKEN" > "$T/token"
/usr/bin/python3 "$here/tests/support/kube_api.py" "$PORT" "$TOKEN" > "$T/kube.log" 2>&1 &
KPID=$!
# the same server over HTTPS with a certificate of our own CA (the ca_file option)
SPORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" 2> /dev/null
/usr/bin/python3 "$here/tests/support/kube_api.py" "$SPORT" "$TOKEN" "$T/cert.pem" "$T/key.pem" > "$T/kubes.log" 2>&1 &
SPID=$!
for p in $PORT $SPORT; do
    for _ in $(seq 100); do
        /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 1)" 2>/dev/null && break
        sleep 0.05
    done
done
"$BIN" script "$here/tests/support/kube_spec.lua" "http://127.0.0.1:$PORT" "$T/token" "https://127.0.0.1:$SPORT" "$T/cert.pem"
