#!/bin/bash
# docs/deployments.md, "from nothing to a canary of a local service behind HAProxy", followed
# block by block: the page's app.py, haproxy.cfg and its start command, its steward.lua lines,
# its policy (the same file as docs/examples/deploy/canary.lua), and its curl and steward eval
# commands, run in a directory laid out as the page assumes (var/ beside the files). Only ports
# and timings are changed (the 1 m pause to 2 s, the 10 s measurement interval to 1 s, the 30 s
# delays to 1 s). A load of steady requests goes through HAProxy the whole time: the v2 canary
# and its promotion fail none of them; the broken v3 is aborted by its analysis and the
# failures it caused are counted.
set -u
. "$(dirname "$0")/../support/daemon.sh"
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed (Debian package haproxy)"; exit 0; }
if [ ! -f "$here/scripts/steward/deploy/supervisor.lua" ] || [ ! -f "$here/scripts/steward/deploy/haproxy.lua" ] ||
   [ ! -f "$here/scripts/steward/deploy/metrics/haproxy.lua" ] || [ ! -f "$here/scripts/steward/deploy/analysis.lua" ]; then
    echo "1..0 # SKIP the supervisor, the HAProxy driver and metric, and the analysis (issue 15 parts h1-h3) are not in this tree"
    exit 0
fi
W="$D/run"
LPID=
cleanup_all() {
    [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
    [ -f "$W/var/haproxy.pid" ] && kill "$(cat "$W/var/haproxy.pid")" 2>/dev/null
    [ -n "$PORT" ] && [ -n "$DPID" ] && record_pids
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=
    [ -f "$W/starts" ] && while read -r pid _; do kill -9 "$pid" 2>/dev/null; done < "$W/starts"
    daemon_cleanup
}
trap cleanup_all EXIT
echo "1..17"
n=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; return 1; fi; }
# block NAME: the code block after "<!-- walkthrough: NAME -->" in docs/deployments.md
block() {
    awk -v m="<!-- walkthrough: $1 -->" '$0 == m { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' \
        "$here/docs/deployments.md"
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# sh_block NAME: runs a shell block in the page's directory, on our ports, with our binary
sh_block() {
    block "$1" | sed -e "s/localhost:8080/127.0.0.1:$PORT/g" -e "s#^steward #\"$BIN\" #" > "$W/$1.sh"
    bash "$W/$1.sh"
}
api() { curl -s -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
phase_of() { api "http://127.0.0.1:$PORT/v1/rollouts?service=web&limit=1" | jx '"%s %s %s" % (d["rollouts"][0]["revision"], d["rollouts"][0]["phase"], d["rollouts"][0]["step"])'; }
is_phase() { [ "$(phase_of 2>/dev/null)" = "$1" ]; }

mkdir -p "$D/var" "$W" && ln -s "$D/var" "$W/var"
cd "$W" || exit 1
# The supervisor's instances outlive the daemon (sessions of their own): their pids, for the cleanup.
record_pids() {
    api "http://127.0.0.1:$PORT/v1/services" 2>/dev/null |
        jx '"\n".join(str(i["pid"]) for s in d["services"] for i in s["instances"] if i.get("pid"))' >> "$W/starts" 2>/dev/null
}
# 1. the service
block app.py > "$W/app.py"
[ -s "$W/app.py" ] && /usr/bin/python3 -m py_compile "$W/app.py"
ok $? "the page's app.py compiles"

# 2. HAProxy
FRONT=$(free_port)
block haproxy.cfg | sed "s/127.0.0.1:8000/127.0.0.1:$FRONT/" > "$W/haproxy.cfg"
haproxy -c -f haproxy.cfg >/dev/null 2>&1
ok $? "the page's haproxy.cfg is valid"
sh_block haproxy-start
wait_for 10 test -S "$W/var/haproxy.sock"
ok $? "the page's command starts HAProxy with its admin socket in var/"

# 3. steward.lua: the page's lines (the ports moved)
# Below the kernel's ephemeral range (32768-60999): a port a load's client connection holds
# cannot be bound by an instance, which then crash-loops.
base=$(( 10000 + RANDOM % 20000 ))
daemon_config "$(block steward.lua | sed -e "s/\"9100-9199\"/\"$base-$((base + 99))\"/")"
# 4. the policy (timings shortened)
mkdir -p "$D/policies/deploy"
block policy | sed -e 's/"1m"/"2s"/' -e 's/"10s"/"1s"/' -e 's/"30s"/"1s"/g' > "$D/policies/deploy/web.lua"
cmp -s <(block policy) <(sed -n '/^local deploy/,$p' "$here/docs/examples/deploy/canary.lua")
ok $? "the page's policy is docs/examples/deploy/canary.lua (whose spec steward test runs)"
cp "$D/steward.lua" "$W/steward.lua"
sh_block check > "$W/check.out" 2>&1
ok $? "the page's steward check accepts the configuration and the policy" || sed 's/^/# /' "$W/check.out"
daemon_start
ok $? "steward runs" || exit 1

# A steady load through HAProxy from now on: one status code per line.
/usr/bin/python3 - "$FRONT" "$W/load" <<'PY' &
import sys, time, urllib.request, urllib.error
port, out = sys.argv[1], open(sys.argv[2], "a", buffering=1)
while True:
    try:
        code = urllib.request.urlopen("http://127.0.0.1:%s/" % port, timeout=5).status
        body = "ok"
    except urllib.error.HTTPError as e:
        code, body = e.code, "http"
    except Exception as e:
        code, body = 0, type(e).__name__
    out.write("%d %s %.3f\n" % (code, body, time.time()))
    time.sleep(0.02)
PY
LPID=$!

# 5. the first revision
sh_block first > "$W/first.out"
record_pids
wait_for 60 is_phase "v1 Completed 1"
ok $? "the first revision is rolled out whole ($(phase_of))" || {
    sed 's/^/# first: /' "$W/first.out"; grep -v 'level=info' "$D/log.new" "$D/log" 2>/dev/null | tail -30 | sed 's/^/# log: /'; }
wait_for 20 sh -c "[ \"\$(curl -s -m 5 http://127.0.0.1:$FRONT/)\" = v1 ]"
ok $? "HAProxy answers v1"

# 6. the canary, its status, its promotion
mark=$(wc -l < "$W/load")
sh_block canary > "$W/canary.out"
wait_for 60 is_phase "v2 Paused 5"
ok $? "v2: 20%, the pause, the analysis, 50%, paused until promoted ($(phase_of))"
sh_block status > "$W/status.out"
grep -q "v2 .*Paused" "$W/status.out"
ok $? "the page's status command shows it paused" || sed 's/^/# /' "$W/status.out"
record_pids
sh_block promote > "$W/promote.out"
wait_for 60 is_phase "v2 Completed 5"
ok $? "promote completes it"
wait_for 20 sh -c "[ \"\$(curl -s -m 5 http://127.0.0.1:$FRONT/)\" = v2 ]"
ok $? "HAProxy answers v2"
sleep 0.5 # a few more requests after the switch for the count below (the load keeps running)
failed=$(tail -n +"$((mark + 1))" "$W/load" | grep -c -v '^200 ' || true)
total=$(tail -n +"$((mark + 1))" "$W/load" | wc -l)
[ "$failed" = 0 ] && [ "$total" -gt 0 ]
ok $? "the canary and its promotion failed no request ($failed of $total)"

# 7. the broken revision
mark=$(wc -l < "$W/load")
record_pids
sh_block broken > "$W/broken.out"
wait_for 60 is_phase "v3-broken Aborted 3"
ok $? "v3-broken is aborted by its analysis at step 3 ($(phase_of))"
record_pids
wait_for 20 sh -c "[ \"\$(curl -s -m 5 http://127.0.0.1:$FRONT/)\" = v2 ]"
ok $? "all traffic is back on v2"
failed=$(tail -n +"$((mark + 1))" "$W/load" | grep -c -v '^200 ' || true)
total=$(tail -n +"$((mark + 1))" "$W/load" | wc -l)
echo "# the broken canary failed $failed of $total requests while it had 20% of the traffic"
sh_block show > "$W/show.out"
grep -q "aborted" "$W/show.out"
ok $? "the page's show command prints the history with the abort" || sed 's/^/# /' "$W/show.out" | head -20
record_pids
# v2's instances are running: SIGTERM still ends steward (they outlive it, by design).
daemon_stop_within 20 && [ "$DSTATUS" -eq 0 ]
ok $? "SIGTERM ends steward, status 0 ($DSTATUS)"
