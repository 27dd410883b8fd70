#!/bin/bash
# gh issue 16 (h7): `steward load` against a local HTTP server (tests/support/load_counter.py)
# that counts what it receives per phase (the X-Steward-Load-Phase header), per request and
# per Host. Counts, never timings: each phase's requests match the shape's totals, the JSON
# report parses and adds up, recorded traffic and rate series are replayed request for
# request, --max-rate caps, a remote target and a bad shape are refused with the reason, and
# Ctrl-C stops with the report so far.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${STEWARD_BIN:-$here/build/steward}
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
cd "$here"

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; }
# check NAME EXPR: EXPR (Python) over the last report $dir/out.json (r) and the server's counts (c).
check() {
    if /usr/bin/python3 tests/support/load_eval.py "$dir/out.json" "$port" "$2" 2>"$dir/check.err"; then ok "$1"
    else notok "$1"; sed 's/^/# /' "$dir/check.err"; fi
}

# A fresh counting server per scenario: its port is the first line it prints.
start_server() {
    local fifo="$dir/port.$RANDOM$RANDOM"
    mkfifo "$fifo"
    /usr/bin/python3 tests/support/load_counter.py >"$fifo" &
    pids+=($!)
    read -r port <"$fifo"
}

# load ARGS...: runs steward load --json into $dir/out.json (stderr into $dir/err), sets rc.
load() {
    "$bin" load --json "$@" >"$dir/out.json" 2>"$dir/err"
    rc=$?
}

# The report adds up: per second and per phase sums equal the totals; every request sent
# was answered, failed or was cancelled; status counts sum to the answered ones.
ADDS_UP='r["totals"]["sent"] == sum(s["sent"] for s in r["seconds"]) == sum(p["sent"] for p in r["phases"])
 and r["totals"]["completed"] == sum(s["completed"] for s in r["seconds"]) == sum(p["completed"] for p in r["phases"]) == sum(r["status"].values())
 and r["totals"]["errors"] == sum(s["errors"] for s in r["seconds"]) == sum(r["errors"].values())
 and r["totals"]["scheduled"] == sum(s["scheduled"] for s in r["seconds"]) == sum(p["scheduled"] for p in r["phases"])
 and r["totals"]["sent"] == r["totals"]["completed"] + r["totals"]["errors"] + r["totals"]["cancelled"]
 and r["totals"]["planned"] == r["totals"]["scheduled"] + r["totals"]["not_sent"]'
ADDS_UP=${ADDS_UP//$'\n'/}

echo "1..35"

# 1. A composed shape: ramp 0-40/2s = 40, hold 30/2s = 60, spike 10-60/2s/1s = 10 + 60,
# pause, sine 0-20/2s twice = 40.
start_server
load --target "http://127.0.0.1:$port/shape" --connections 8 \
    --shape "ramp:0-40/2s, hold:30/2s, spike:10-60/2s/1s, pause:500ms, sine:0-20/2s*2"
[ "$rc" = 0 ] && ok "a composed shape runs to the end (exit 0)" || { notok "composed shape: exit $rc"; sed 's/^/# /' "$dir/err"; }
check "the server received each phase's total: 40, 60, 70, 0, 40" \
    'c["phase"] == {"1": 40, "2": 60, "3": 70, "5": 40} and c["total"] == 210'
check "the report's totals match what the server counted" \
    'r["totals"]["sent"] == r["totals"]["completed"] == c["total"] == 210 and r["status"] == {"200": 210} and r["interrupted"] is False'
check "the report's phases carry the shape's totals" \
    '[p["scheduled"] for p in r["phases"]] == [40, 60, 70, 0, 40] and [p["spec"] for p in r["phases"]][2] == "spike:10-60/2s/1s"'
check "the JSON report adds up (seconds, phases, statuses, totals)" "$ADDS_UP"
check "latency percentiles are ordered and measured from the scheduled time" \
    '0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"] and r["latency_ms"]["from"] == "scheduled send time" and r["mode"] == "shape"'

# 2. --rate against a name: resolved, checked, sent to the address with the name as Host.
start_server
load --target "http://localhost:$port/rate?x=1" --rate 40 --duration 1s --method POST --header "X-Test: yes"
[ "$rc" = 0 ] && ok "--rate 40 --duration 1s against localhost" || { notok "--rate: exit $rc"; sed 's/^/# /' "$dir/err"; }
check "40 POSTs with the query string, Host: localhost:PORT" \
    "c['request'] == {'POST /rate?x=1': 40} and c['host'] == {'localhost:$port': 40}"
check "the report adds up for --rate" "$ADDS_UP"

# 2b. --connections bounds the requests in flight: 30 requests of 100 ms each over one
# second, 3 connections; the others wait (in steward load) and are all answered.
start_server
load --target "http://127.0.0.1:$port/slow?delay_ms=100" --rate 30 --duration 1s --connections 3
check "--connections 3: the server never had more than 3 requests at once, and answered all 30" \
    'c["max_in_flight"] <= 3 and c["total"] == 30 and r["totals"]["completed"] == 30 and r["connections"] == 3'

# 2c. A trailing pause is part of the run: it lasts the shape's whole length (a lower bound,
# not a timing: the run sleeps at least that long).
start_server
load --target "http://127.0.0.1:$port/tail" --shape "hold:4/1s,pause:1500ms"
check "a shape ending in a pause lasts its whole length (2.5 s), 4 requests" \
    'r["duration"] == 2.5 and r["elapsed"] >= 2.5 and c["total"] == 4'

# 3. --max-rate caps: 500/s asked, 100/s allowed, for one second.
start_server
load --target "http://127.0.0.1:$port/cap" --rate 500 --duration 1s --max-rate 100
check "--max-rate 100 caps a 500/s request rate: the server got 100" \
    'c["total"] == 100 and r["max_rate"] == 100 and r["totals"]["sent"] == 100'

# 4. Recorded traffic: JSON lines (methods, paths, times), at 20x speed.
start_server
cat >"$dir/rec.jsonl" <<'EOF'
{"t": 1700000000.0, "method": "GET", "path": "/a"}
{"t": 1700000000.5, "method": "POST", "path": "/b?q=1"}
# a comment line
{"t": 1700000001.0, "path": "/a"}
{"t": 1700000003.0, "method": "DELETE", "path": "/c"}
EOF
load --target "http://127.0.0.1:$port/ignored" --replay "$dir/rec.jsonl" --speed 20
check "a JSON-lines recording is replayed request for request" \
    'c["request"] == {"GET /a": 2, "POST /b?q=1": 1, "DELETE /c": 1} and r["mode"] == "replay" and r["totals"]["completed"] == 4'

# 5. HAProxy HTTP log lines.
start_server
cat >"$dir/haproxy.log" <<'EOF'
Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1"
Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33318 [06/Feb/2009:12:14:14.755] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "PUT /api/x HTTP/1.1"
Feb  6 12:14:15 localhost haproxy[14389]: 10.0.1.2:33319 [06/Feb/2009:12:14:15.055] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "GET /index.html HTTP/1.1"
EOF
load --target "http://127.0.0.1:$port/" --replay "$dir/haproxy.log" --speed 4
check "an HAProxy log is replayed request for request" \
    'c["request"] == {"GET /index.html": 2, "PUT /api/x": 1}'

# 6. A rate series (CSV, as capacity history exports it) as a shape: 10 -> 30/s over 60s at
# speed 60 is one second asking for 20 requests; then 30 -> 30 for another second: 30.
start_server
printf 't,rate\n1700000000,10\n1700000060,30\n1700000120,30\n' >"$dir/rates.csv"
load --target "http://127.0.0.1:$port/series" --shape "$dir/rates.csv" --speed 60
check "a rate series file is a shape: 20 + 30 requests" \
    'c["phase"] == {"1": 20, "2": 30} and r["mode"] == "rates"'

# 7. A JSON shape file.
start_server
echo '[{"kind": "hold", "rate": 25, "duration": "1s"}, {"kind": "ramp", "from": 0, "to": 20, "duration": "1s"}]' >"$dir/shape.json"
load --target "http://127.0.0.1:$port/json" --shape "$dir/shape.json"
check "a JSON shape file: 25 + 10 requests" 'c["phase"] == {"1": 25, "2": 10}'

# 8. Refusals: nothing is sent, the reason is named, exit 2.
start_server
load --target "http://192.0.2.7:$port/" --rate 10 --duration 1s
[ "$rc" = 2 ] && ok "a remote target exits 2" || notok "remote target: exit $rc"
grep -q "192.0.2.7 resolves to 192.0.2.7, not a loopback address (127.0.0.0/8, ::1)" "$dir/err" &&
    grep -q -- "--allow-remote" "$dir/err" && ok "a remote target is refused, naming the address and --allow-remote" ||
    { notok "remote refusal message"; sed 's/^/# /' "$dir/err"; }
load --target "http://127.0.0.1:$port/" --shape "ramp:0-10/1s,hold:5/2O"
[ "$rc" = 2 ] && grep -q "shape: phase 2 ('hold:5/2O'): duration: bad duration '2O'" "$dir/err" &&
    ok "a bad shape names the phase and the part" || { notok "bad shape: exit $rc"; sed 's/^/# /' "$dir/err"; }
load --target "http://127.0.0.1:$port/" --shape "ramp:0-10/1s,wave:5/2s"
grep -q "phase 2 ('wave:5/2s'): unknown kind 'wave'" "$dir/err" && ok "an unknown phase kind is named" ||
    { notok "unknown kind"; sed 's/^/# /' "$dir/err"; }
load --target "http://127.0.0.1:$port/" --shape "hold:1/2h"
grep -q "more than --max-duration 3600s" "$dir/err" && ok "a run longer than --max-duration is refused" ||
    { notok "max-duration"; sed 's/^/# /' "$dir/err"; }
load --target "http://127.0.0.1:$port/" --rate 10
grep -q -- "--rate needs --duration" "$dir/err" && ok "--rate without --duration is refused" ||
    { notok "rate without duration"; sed 's/^/# /' "$dir/err"; }
load --target "http://127.0.0.1:$port/" --rate 100 --duration 1s --header "X(1): a"
grep -q -- "--header: 'X(1)' is not a header name" "$dir/err" && ok "a bad header name is refused before anything is sent" ||
    { notok "bad header name"; sed 's/^/# /' "$dir/err"; }
load --target "http://127.0.0.1:$port/" --shape "hold:5/1s" --speed 10
grep -q -- "--speed applies to --replay and rate-series files, not to a shape" "$dir/err" &&
    ok "--speed with a shape is refused, not ignored" || { notok "speed with a shape"; sed 's/^/# /' "$dir/err"; }
printf '{"t": 1, "path": "/a"}\n{"t": 2, "path": "relative"}\n' >"$dir/bad.jsonl"
load --target "http://127.0.0.1:$port/" --replay "$dir/bad.jsonl"
grep -q "bad.jsonl: line 2: path: a string starting with /" "$dir/err" && ok "a bad recording names the line and field" ||
    { notok "bad recording"; sed 's/^/# /' "$dir/err"; }
load --target "ftp://127.0.0.1:$port/" --rate 1 --duration 1s
grep -q "scheme 'ftp' is not supported" "$dir/err" && ok "a non-HTTP target is refused" ||
    { notok "ftp target"; sed 's/^/# /' "$dir/err"; }
check "none of the refused runs sent anything" 'c["total"] == 0'

# 9. Errors are counted, not fatal: a port nobody listens on.
free_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
load --target "http://127.0.0.1:$free_port/" --rate 20 --duration 500ms --timeout 2s
check "connection refusals are counted as errors of kind connect" \
    'r["totals"]["errors"] == r["totals"]["sent"] == 10 and r["errors"] == {"connect": 10} and r["totals"]["completed"] == 0'
check "and the report still adds up" "$ADDS_UP"

# 10. Ctrl-C: stops sending, reports what was measured; the rest counts as not sent.
start_server
"$bin" load --json --target "http://127.0.0.1:$port/int" --rate 20 --duration 30s >"$dir/out.json" 2>"$dir/err" &
lp=$!
pids+=($lp)
# Wait (bounded) until the server has seen requests, then interrupt.
for _ in $(seq 1 200); do
    got=$(/usr/bin/python3 -c "import json,urllib.request; print(json.loads(urllib.request.urlopen('http://127.0.0.1:$port/__counts').read())['total'])")
    [ "$got" -ge 5 ] && break
    sleep 0.05
done
kill -INT "$lp"
wait "$lp"
rc=$?
[ "$rc" = 130 ] && ok "Ctrl-C exits 130" || { notok "Ctrl-C: exit $rc"; sed 's/^/# /' "$dir/err"; }
check "the interrupted report parses and says so" 'r["interrupted"] is True and r["totals"]["planned"] == 600'
# A request cancelled by the interrupt may or may not have reached the server.
check "what it reports as answered the server received, and no more than it sent" \
    'r["totals"]["completed"] <= c["total"] <= r["totals"]["sent"] and 5 <= c["total"] < 600 and r["totals"]["not_sent"] == 600 - r["totals"]["sent"]'
check "the interrupted report adds up" "$ADDS_UP"

# 11. The text report.
start_server
"$bin" load --target "http://127.0.0.1:$port/text" --shape "hold:10/1s,hold:20/1s" >"$dir/out.txt" 2>"$dir/err"
grep -q "^done after .*: 30 scheduled, 30 sent, 30 answered, 0 errors" "$dir/out.txt" &&
    grep -q "^latency from scheduled send (ms): p50 " "$dir/out.txt" && grep -q "^status: 200=30" "$dir/out.txt" &&
    ok "the text report: summary, latency, statuses" || { notok "text report"; sed 's/^/# /' "$dir/out.txt"; }
grep -Eq "^2 +hold:20/1s +1.0s +20 +20 +20 +0$" "$dir/out.txt" && ok "the text report's phase table" ||
    { notok "phase table"; sed 's/^/# /' "$dir/out.txt"; }
