# Sourced (after daemon.sh) by tests/e2e/deploy_bluegreen.t and deploy_rollback.t: a real
# HAProxy whose backend `web` steward fills, steward supervising tests/support/rollback_app.py
# as the service `web`, constant-rate loads through HAProxy, and helpers over the rollouts API.
# HAProxy's backend honours an X-Server header (use-server): a request naming a server goes to
# it even at weight 0, as smoke requests go to a blue-green preview in Argo's preview Service.
# stage_cleanup stops everything it started (the daemon first: its supervisor would restart
# the instances, which live in sessions of their own).
S="$D/stage"
LOADS=()
HAP_PID=
stage_cleanup() {
    local p
    for p in "${LOADS[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=
    [ -f "$S/starts" ] && while read -r p _; do kill -9 "$p" 2>/dev/null; done < "$S/starts"
    [ -n "$HAP_PID" ] && kill "$HAP_PID" 2>/dev/null
    daemon_cleanup
}
stage_free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# stage_haproxy: starts HAProxy; sets FRONT (its frontend port) and HSOCK (its admin socket)
stage_haproxy() {
    mkdir -p "$S"
    FRONT=$(stage_free_port)
    HSOCK="$S/haproxy.sock"
    cat > "$S/haproxy.cfg" <<CFG
global
    stats socket $HSOCK mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend public
    bind 127.0.0.1:$FRONT
    default_backend web
backend web
    balance roundrobin
    use-server %[req.hdr(x-server)] if { req.hdr(x-server) -m found }
CFG
    haproxy -db -f "$S/haproxy.cfg" > "$S/haproxy.log" 2>&1 &
    HAP_PID=$!
    wait_for 10 test -S "$HSOCK"
}

# stage_daemon POLICY: steward with the service `web` (2 instances), deploy.alerts, and POLICY
# (the text of policies/deploy/web.lua)
stage_daemon() {
    # Below the kernel's ephemeral range (32768-60999): a port a load's client connection holds
    # cannot be bound by an instance, which then crash-loops.
    local base=$(( 10000 + RANDOM % 20000 ))
    daemon_config "
  services = {
    web = { run = { cmd = { '/usr/bin/python3', '$here/tests/support/rollback_app.py', '--port', '{port}', '--starts', '$S/starts' },
                    env = { VERSION = '{revision}' }, instances = 2, ports = '$base-$((base + 39))' },
            probes = { readiness = { http = '/healthz', interval = '100ms', timeout = '1s' } },
            stop = { grace = '2s' },
            haproxy = { socket = '$HSOCK', backend = 'web' } },
  },
  grants = { ['deploy.web'] = { deploy = { 'web' } }, ['deploy.alerts'] = { alerting = true } },"
    mkdir -p "$D/policies/deploy"
    cp "$here/policies/deploy/alerts.lua" "$D/policies/deploy/alerts.lua"
    printf '%s\n' "$1" > "$D/policies/deploy/web.lua"
    daemon_start
}

# stage_load NAME RATE [--server NAMES]: a constant-rate load through HAProxy, logged to $S/NAME
stage_load() {
    local name=$1 rate=$2
    shift 2
    /usr/bin/python3 "$here/tests/support/rollback_load.py" "$FRONT" "$rate" "$S/$name" "$@" &
    LOADS+=($!)
    wait_for 10 test -s "$S/$name"
}
stage_stop_load() { # stage_stop_load: the last load started
    local i=$(( ${#LOADS[@]} - 1 ))
    kill "${LOADS[$i]}" 2>/dev/null; wait "${LOADS[$i]}" 2>/dev/null
    unset "LOADS[$i]"; LOADS=("${LOADS[@]}")
}

api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
# start_rollout REVISION: prints the rollout's id
start_rollout() { api -d "{\"service\":\"web\",\"revision\":\"$1\"}" "http://127.0.0.1:$PORT/v1/rollouts" | jx 'd["rollout"]'; }
# field ID EXPR: a Python expression over the rollout's JSON (d)
field() { api "http://127.0.0.1:$PORT/v1/rollouts/$1" | jx "$2"; }
at() { [ "$(field "$1" '"%s %s" % (d["phase"], d["step"])' 2>/dev/null)" = "$2" ]; }
diag() {
    api "http://127.0.0.1:$PORT/v1/rollouts/$1" | head -c 4000 | sed 's/^/# /'; echo
    grep -E 'level=(warn|error)' "$D/log.new" 2>/dev/null | tail -5 | sed 's/^/# /'
    kill -0 "$DPID" 2>/dev/null || { echo "# the daemon is gone:"; tail -5 "$D/log.new" | sed 's/^/# /'; }
}
# weights: "server weight" of every server of the backend, from HAProxy itself
weights() {
    /usr/bin/python3 - "$HSOCK" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat -1 4 -1\n")
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
lines = data.decode().splitlines()
head = lines[0].lstrip("# ").split(",")
for l in lines[1:]:
    if not l: continue
    row = dict(zip(head, l.split(",")))
    if row["pxname"] == "web": print(row["svname"], row["weight"], row["status"])
PY
}
# answers FROM [TO]: "status version" counts of the load's lines FROM..TO (1-based line numbers)
answers() { sed -n "${1},${2:-\$}p" "$3" | awk '{ print $1, $2 }' | sort | uniq -c | sed 's/^ *//' | tr '\n' ';'; }
# failed FILE FROM [TO]: requests of FILE's lines FROM..TO not answered 200
failed() { sed -n "${2},${3:-\$}p" "$1" | grep -c -v '^200 ' || true; }
