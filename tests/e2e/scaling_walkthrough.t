#!/bin/bash
# docs/scaling.md followed block by block: the page's app.py, haproxy.cfg and its start
# command, its steward.lua lines, its policy, steward check, and its steward eval, wrk and curl
# commands, run in a directory laid out as the page assumes (var/ beside the files). Only ports
# change. The scale-up under the page's load step is seen in scaling(), explain() and /metrics,
# and the new instances serve requests through HAProxy.
set -u
. "$(dirname "$0")/../support/daemon.sh"
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed (Debian package haproxy)"; exit 0; }
command -v wrk >/dev/null || { echo "1..0 # SKIP wrk is not installed (Debian package wrk)"; exit 0; }
W="$D/run"
LPID=
cleanup_all() {
    [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
    [ -f "$W/var/haproxy.pid" ] && kill "$(cat "$W/var/haproxy.pid")" 2>/dev/null
    [ -n "$PORT" ] && [ -n "$DPID" ] && record_pids
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=
    [ -f "$W/pids" ] && while read -r pid; do kill -9 "$pid" 2>/dev/null; done < "$W/pids"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..12"
# block NAME: the code block after "<!-- walkthrough: NAME -->" in docs/scaling.md
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/scaling.md"
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# sh_block NAME: runs a shell block in the page's directory, on our ports, with our binary
sh_block() {
    block "$1" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s/127.0.0.1:8000/127.0.0.1:$FRONT/g" \
        -e "s#^steward #\"$BIN\" #" > "$W/$1.sh"
    bash "$W/$1.sh"
}
api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
record_pids() {
    api "http://127.0.0.1:$PORT/v1/services" 2>/dev/null |
        jx '"\n".join(str(i["pid"]) for s in d["services"] for i in s["instances"] if i.get("pid"))' >> "$W/pids" 2>/dev/null
}

mkdir -p "$D/var" "$W" && ln -s "$D/var" "$W/var"
cd "$W" || exit 1
block app.py > "$W/app.py"
[ -s "$W/app.py" ] && /usr/bin/python3 -m py_compile "$W/app.py"
ok $? "the page's app.py compiles"

FRONT=$(free_port)
block haproxy.cfg | sed "s/127.0.0.1:8000/127.0.0.1:$FRONT/" > "$W/haproxy.cfg"
haproxy -c -f haproxy.cfg >/dev/null 2>&1
ok $? "the page's haproxy.cfg is valid"
sh_block haproxy-start
wait_for 10 test -S "$W/var/haproxy.sock"
ok $? "the page's command starts HAProxy with its admin socket in var/"

base=$(( 10000 + RANDOM % 20000 ))
daemon_config "$(block steward.lua | sed -e "s/\"9100-9199\"/\"$base-$((base + 99))\"/")"
mkdir -p "$D/policies/scaling"
block policy > "$D/policies/scaling/api.lua"
cp "$D/steward.lua" "$W/steward.lua"
sh_block check > "$W/check.out" 2>&1
ok $? "the page's steward check accepts the configuration and the policy" || sed 's/^/# /' "$W/check.out"
daemon_start
ok $? "steward runs" || exit 1

served() { [ "$(curl -s -m 2 "http://127.0.0.1:$FRONT/")" = v1 ]; }
wait_for 30 served
ok $? "the autoscaler starts min_replicas and HAProxy answers v1"
record_pids
sh_block status > "$W/status.out" 2>&1
grep -q "^api  *v1  *1  *1 " "$W/status.out"
ok $? "the page's scaling() shows api v1 at 1 instance" || sed 's/^/# /' "$W/status.out"

sh_block load > "$W/load.out" 2>&1 &
LPID=$!
up() { api "http://127.0.0.1:$PORT/v1/events?type=scaling.scaled" | jx '[e for e in d["events"] if e["data"]["from"] >= 1][0]' >/dev/null 2>&1; }
wait_for 30 up
ok $? "the page's load step scales the service up (scaling.scaled)"
record_pids
wait "$LPID"; LPID=
sed -n 's/^Requests\/sec: *\(.*\)/# wrk: \1 requests\/s/p' "$W/load.out"
record_pids
sh_block scaled > "$W/scaled.out" 2>&1
awk '$1 == "api" && $2 == "v1" && $3 > 1 { f = 1 } END { exit !f }' "$W/scaled.out"
ok $? "the page's scaling() shows more than one instance" || sed 's/^/# /' "$W/scaled.out"
sh_block explain > "$W/explain.out" 2>&1
grep -q "proposals" "$W/explain.out" && grep -q '"rps"\|rps' "$W/explain.out" && grep -q "scaled_up" "$W/explain.out"
ok $? "the page's explain() shows the scale-up's inputs and proposals" || sed 's/^/# /' "$W/explain.out" | head -30
sh_block metrics > "$W/metrics.out" 2>&1
grep -q '^steward_scaling_current_replicas{service="api"} [2-5]' "$W/metrics.out" &&
    grep -q '^steward_scaling_decisions_total{service="api",result="scaled_up"}' "$W/metrics.out"
ok $? "the page's /metrics lines show the replicas and the decisions" || sed 's/^/# /' "$W/metrics.out"
"$BIN" script "$here/tests/support/haproxy_ctl.lua" "$W/var/haproxy.sock" api stats > "$W/stats.json" 2>/dev/null
jx 'len([s for s, v in d["ok"]["servers"].items() if s != "v1-1" and v["req_tot"] > 0]) > 0' < "$W/stats.json" >/dev/null
ok $? "the new instances served requests through HAProxy"
record_pids
exit "$fail"
