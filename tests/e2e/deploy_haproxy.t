#!/bin/bash
# steward.deploy.haproxy against a real HAProxy 2.6 (runtime API on its admin socket) in front
# of small backends that answer their server's name: sync adds the servers of two revisions,
# set_weights{v1=80, v2=20} splits 1000 requests as HAProxy's weighted round robin does (the
# exact counts: each server's share of a cycle of the weights), 100/0 switches, drain stops new
# requests to a revision, stats count a failing backend's 5xx, the metric provider gives the
# error rate of an interval, and bad calls give clear errors. Skipped without haproxy.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed"; exit 0; }
T=$(mktemp -d /tmp/steward-dhap.XXXXXX)
. "$here/tests/support/haproxy_front.sh"
cleanup() { haproxy_stop; rm -rf "$T"; }
trap cleanup EXIT
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
ctl() { "$BIN" script "$here/tests/support/haproxy_ctl.lua" "$HAP_SOCK" api "$@" 2>> "$T/ctl.err"; }
# json FILE EXPR: EXPR in Python over the JSON in FILE (bound to v)
json() { /usr/bin/python3 -c "import json,sys; v=json.load(open(sys.argv[1])); print($2)" "$1"; }
load() { /usr/bin/python3 "$here/tests/support/haproxy_load.py" "$HAP_PORT" "$@"; }

haproxy_start
check '[ -S "$HAP_SOCK" ]' "haproxy starts with its admin socket"
a1=$(backend_start v1-1); a2=$(backend_start v1-2); b1=$(backend_start v2-1); b2=$(backend_start v2-2)

ctl sync v1 "127.0.0.1:$a1" "127.0.0.1:$a2" > "$T/out"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ]' "sync adds v1's two servers ($(cat "$T/out"))"
ctl sync v2 "127.0.0.1:$b1" "127.0.0.1:$b2" > "$T/out"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ]' "sync adds v2's two servers"
ctl sync v2 "127.0.0.1:$b1" "127.0.0.1:$b2" > "$T/out"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ]' "sync again is idempotent"
ctl stats > "$T/stats"
check '[ "$(json "$T/stats" "\",\".join(sorted(v[\"ok\"][\"servers\"]))")" = "v1-1,v1-2,v2-1,v2-2" ]' \
  "the backend has servers <revision>-<index>"
check '[ "$(json "$T/stats" "v[\"ok\"][\"servers\"][\"v2-1\"][\"weight\"]")" = 0 ]' \
  "a new revision's servers get no traffic until set_weights (weight 0)"

ctl set_weights v1=80 v2=20 > "$T/out"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ]' "set_weights{v1=80, v2=20}"
ctl stats > "$T/stats"
check '[ "$(json "$T/stats" "[v[\"ok\"][\"servers\"][s][\"weight\"] for s in (\"v1-1\",\"v1-2\",\"v2-1\",\"v2-2\")]")" = "[256, 256, 64, 64]" ]' \
  "each revision's percent is split over its servers (weights 256/256/64/64)"
# HAProxy's weighted round robin serves each server its weight's share of every cycle of the
# total weight (640 here), spread evenly over the cycle: 1000 requests are one cycle (256,
# 256, 64, 64) and 360 requests of the next (144, 144, 36, 36), so exactly 400, 400, 100, 100.
load 1000 > "$T/load"
check '[ "$(json "$T/load" "\",\".join(str(v[\"by_name\"].get(s,0)) for s in (\"v1-1\",\"v1-2\",\"v2-1\",\"v2-2\"))")" = "400,400,100,100" ] && [ "$(json "$T/load" "v[\"failed\"]")" = 0 ]' \
  "1000 requests split 80/20 as weighted round robin does: 400, 400, 100, 100, none failed ($(cat "$T/load"))"

ctl set_weights v1=0 v2=100 > "$T/out"
load 200 > "$T/load"
check '[ "$(json "$T/load" "v[\"by_name\"].get(\"v1-1\",0)+v[\"by_name\"].get(\"v1-2\",0)")" = 0 ] && [ "$(json "$T/load" "v[\"failed\"]")" = 0 ]' \
  "set_weights{v1=0, v2=100} switches: no request reaches v1, none fails"
ctl set_weights v1=100 v2=0 > /dev/null

ctl drain v1 > "$T/out"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ]' "drain v1"
ctl set_weights v1=50 v2=50 > /dev/null
ctl stats > "$T/stats"
check '[ "$(json "$T/stats" "v[\"ok\"][\"servers\"][\"v1-1\"][\"status\"]")" = DRAIN ]' "a drained server's status is DRAIN"
load 100 > "$T/load"
check '[ "$(json "$T/load" "v[\"by_name\"].get(\"v1-1\",0)+v[\"by_name\"].get(\"v1-2\",0)")" = 0 ]' \
  "drain leaves no new request on the drained servers, even with weight ($(cat "$T/load"))"
ctl enable v1 > /dev/null
load 100 > "$T/load"
check '[ "$(json "$T/load" "v[\"by_name\"].get(\"v1-1\",0)+v[\"by_name\"].get(\"v1-2\",0)")" = 50 ]' \
  "enable puts them back: 50 of 100 requests at 50/50"

# a revision whose instance fails: its 5xx in stats and in the metric provider
f1=$(backend_start v3-1 503)
ctl sync v3 "127.0.0.1:$f1" > /dev/null
ctl set_weights v2=50 v3=50 v1=0 > /dev/null
load 100 > "$T/load"
ctl stats > "$T/stats"
got=$(json "$T/load" "v[\"by_status\"].get(\"503\",0)")
check '[ "$got" -gt 0 ] && [ "$(json "$T/stats" "v[\"ok\"][\"revisions\"][\"v3\"][\"hrsp_5xx\"]")" = "$got" ] && [ "$(json "$T/stats" "v[\"ok\"][\"servers\"][\"v3-1\"][\"hrsp_5xx\"]")" = "$got" ]' \
  "stats count the failing revision's 5xx, per revision and per server: the $got 503 answers of 100 ($(cat "$T/load"))"
check '[ "$(json "$T/stats" "v[\"ok\"][\"revisions\"][\"v2\"][\"hrsp_2xx\"] >= 50 and v[\"ok\"][\"revisions\"][\"v2\"][\"hrsp_5xx\"] == 0")" = True ]' \
  "the healthy revision has no 5xx"
ctl metric v3 error_rate "http://127.0.0.1:$HAP_PORT/" 40 > "$T/out"
check '[ "$(json "$T/out" "v[\"ok\"][\"value\"]")" = 1 ]' "metrics.haproxy error_rate of the failing revision over an interval is 1 ($(cat "$T/out"))"
ctl metric v2 error_rate "http://127.0.0.1:$HAP_PORT/" 40 > "$T/out"
check '[ "$(json "$T/out" "v[\"ok\"][\"value\"]")" = 0 ]' "and of the healthy one 0"
ctl metric v2 requests "http://127.0.0.1:$HAP_PORT/" 40 > "$T/out"
check '[ "$(json "$T/out" "v[\"ok\"][\"value\"] == v[\"ok\"][\"seen\"] > 0")" = True ]' "requests counts the revision's requests of the interval only ($(cat "$T/out"))"

# scale down: sync with fewer endpoints drains and deletes the rest; remove deletes all
ctl sync v1 "127.0.0.1:$a1" > "$T/out"
ctl stats > "$T/stats"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ] && [ "$(json "$T/stats" "\"v1-2\" in v[\"ok\"][\"servers\"]")" = False ]' \
  "sync with one endpoint removes v1-2 ($(cat "$T/out"))"
ctl remove v3 > "$T/out"
ctl stats > "$T/stats"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ] && [ "$(json "$T/stats" "\"v3\" in v[\"ok\"][\"revisions\"]")" = False ]' \
  "remove deletes a revision's servers ($(cat "$T/out"))"
load 50 > "$T/load"
check '[ "$(json "$T/load" "v[\"failed\"]")" = 0 ] && [ "$(json "$T/load" "v[\"by_status\"].get(\"503\",0)")" = 0 ]' \
  "after remove no request reaches the removed revision"

# disable: maintenance, no traffic at all
ctl set_weights v1=50 v2=50 > /dev/null
ctl disable v2 > "$T/out"
ctl stats > "$T/stats"
check '[ "$(json "$T/out" "v.get(\"ok\")")" = True ] && [ "$(json "$T/stats" "v[\"ok\"][\"servers\"][\"v2-1\"][\"status\"]")" = MAINT ]' \
  "disable puts a revision's servers in maintenance"
load 20 > "$T/load"
check '[ "$(json "$T/load" "v[\"by_name\"].get(\"v1-1\",0)")" = 20 ]' "a disabled revision gets no request ($(cat "$T/load"))"
ctl enable v2 > /dev/null

# bad calls
ctl drain v9 > "$T/out"
check 'grep -q "revision .v9. has no servers in backend api" "$T/out"' "drain of an unknown revision names it ($(cat "$T/out"))"
ctl set_weights v1=70 v2=20 > "$T/out"
check 'grep -q "percents add up to 90, 100 expected" "$T/out"' "set_weights that does not add up to 100 raises, naming the sum"
ctl set_weights v1=50 v9=50 > "$T/out"
check 'grep -q "revision .v9. has no servers" "$T/out"' "set_weights to a revision without servers is refused"
ctl sync "bad rev" "127.0.0.1:1" > "$T/out"
check 'grep -q "revision: a revision id" "$T/out"' "a bad revision id raises, naming the argument"
"$BIN" script "$here/tests/support/haproxy_ctl.lua" "$HAP_SOCK" nope stats > "$T/out" 2>&1
check 'grep -q "haproxy: show stat nope 4 -1: No such proxy." "$T/out"' "HAProxy's own error comes back naming the command ($(cat "$T/out"))"
"$BIN" script "$here/tests/support/haproxy_ctl.lua" "$T/missing.sock" api stats > "$T/out" 2>&1
check 'grep -q "ENOENT" "$T/out" && grep -q "missing.sock" "$T/out"' "an unreachable socket is an error naming it"
ctl sync v1 "127.0.0.1:$a1" "127.0.0.1:$a2" > /dev/null
echo "1..$n"
