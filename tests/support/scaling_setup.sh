# Sourced by the autoscaling e2e tests after tests/support/daemon.sh: a real HAProxy in front of
# an empty backend `api`, and a daemon whose service `api` runs tests/support/svc_app.py on ports
# below the ephemeral range. scaling_setup POLICY_LUA writes the policy as
# policies/scaling/api.lua and starts the daemon. scaling_cleanup stops everything it started
# (the supervised instances outlive the daemon by design: their pids are in $D/starts).
T=$D/hap
mkdir -p "$T"
. "$here/tests/support/haproxy_front.sh"
WPID=
LOADPID=
scaling_cleanup() {
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
    [ -n "$LOADPID" ] && kill "$LOADPID" 2>/dev/null
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -f "$D/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$D/starts"
    haproxy_stop
    daemon_cleanup
}
api() { curl -s -m 10 -H "Authorization: Bearer $TOKEN" "$@"; }
scaling_setup() {
    haproxy_start || return 1
    local base=$(( 10000 + RANDOM % 20000 ))
    daemon_config "
  services = { api = {
    run = { cmd = { '/usr/bin/python3', '$here/tests/support/svc_app.py', '--port', '{port}', '--starts', '$D/starts' },
            env = { VERSION = '{revision}' }, instances = 1, ports = '$base-$((base + 20))' },
    probes = { readiness = { http = '/healthz', interval = '100ms', timeout = '1s' } },
    stop = { grace = '2s' },
    haproxy = { socket = '$HAP_SOCK', backend = 'api', check = 'check inter 200ms' },
  } },
  grants = { ['scaling.*'] = { deploy = { 'api' } } },"
    mkdir -p "$D/policies/scaling"
    printf '%s\n' "$1" > "$D/policies/scaling/api.lua"
    daemon_start
}
# scaled_events: the scaling.scaled events' "from to at" lines, in order
scaled_events() {
    api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled&limit=1000" |
        jx '"\n".join("%d %d %.3f" % (e["data"]["from"], e["data"]["to"], e["data"]["at"]) for e in d["events"])'
}
