#!/bin/bash
# The admin socket end to end, without a terminal: `steward eval` through pipes (results,
# errors and exit codes, stdin, --json, streamed output, Ctrl-C), the incident helpers over
# a live daemon with a policy, raw frames (malformed ones close only their session), peers of
# another uid (refused, or read-only when listed), the socket's mode, and the audit log.
set -u
. "$(dirname "$0")/../support/daemon.sh"
FRAMES="/usr/bin/python3 $here/tests/support/repl_frames.py"
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; echo "# out: $(head -c 600 "$D/out" 2>/dev/null)"; echo "# err: $(head -c 600 "$D/err" 2>/dev/null)"; fi; }
cat > "$D/policies/ping.lua" <<'POL'
return {
  name = "demo.ping", on = { "demo.*" },
  handle = function(ev, ctx)
    ctx.kv():put("last", ev.id)
    if ev.type == "demo.ping" then require("steward.time").after("1h", { type = "demo.later" }, { key = ev.id }) end
    return "pong"
  end,
  decide = function(input) return { doubled = input.x * 2 } end,
}
POL
cat > "$D/policies/fx.lua" <<'POL'
return { capabilities = { "http" },
  name = "demo.fx",
  decide = function(input)
    local res = require("steward.http").request{ url = "http://127.0.0.1:1/hook", timeout = 2 }
    return { delivered = res ~= nil }
  end,
}
POL
daemon_config 'admin_readonly_uids = { 65534 },'
daemon_start || exit 1
S=$D/var/steward.sock
ev() { "$BIN" eval --socket "$S" "$@" > "$D/out" 2> "$D/err"; }
post() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "$1" "http://127.0.0.1:$PORT$2"; }
wait_for() { # wait_for FILE PATTERN: up to 10 s
  for _ in $(seq 200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

check '[ "$(stat -c %a "$S")" = 600 ] && [ -S "$S" ]' "the admin socket is a socket with mode 0600"

ev '1 + 1, "s", {b = 1, a = {2}}'; rc=$?
check '[ $rc -eq 0 ] && [ "$(cat "$D/out")" = "$(printf "2\n\"s\"\n{ a = { 2 }, b = 1 }")" ]' "eval prints each result, pretty-printed"
ev 'local t = {} t.self = t return t'
check 'grep -q "cycle\|<.*table" "$D/out"' "a cycle is marked, not followed"
ev 'for i = 1, 3 do print("line", i) end'; rc=$?
check '[ $rc -eq 0 ] && [ "$(cat "$D/out")" = "$(printf "line\t1\nline\t2\nline\t3")" ]' "print streams output lines"
ev 'error("nope")'; rc=$?
check '[ $rc -eq 1 ] && grep -q nope "$D/err" && [ ! -s "$D/out" ]' "an error goes to stderr and exits 1"
ev 'return (' ; rc=$?
check '[ $rc -eq 1 ] && grep -q incomplete "$D/err"' "an incomplete chunk exits 1"
ev 'x = = 1'; rc=$?
check '[ $rc -eq 1 ] && grep -q "unexpected symbol" "$D/err"' "a syntax error exits 1 naming it"
echo 'local a = 20
return a + 1' | "$BIN" eval --socket "$S" - > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 0 ] && [ "$(cat "$D/out")" = 21 ]' "eval - reads a multi-line chunk from stdin"
ev --json '1, "a", {b = 2}, nil'
check '[ "$(cat "$D/out")" = "[1,\"a\",{\"b\":2},null]" ]' "--json gives a JSON array of the results"
ev 'require("steward.time").sleep(0.05) return "slept"'
check '[ "$(cat "$D/out")" = "\"slept\"" ]' "a command may yield (time.sleep) without blocking the daemon"
ev 'while true do end'; rc=$?
check '[ $rc -eq 1 ] && grep -q "cpu budget" "$D/err"' "a runaway command is stopped by the CPU budget policies get"
# Megabytes per step: the memory budget is reached in a few dozen steps, long before the CPU
# budget even on a loaded machine (small tables hit the CPU budget first there).
ev 'local t = {} for i = 1, 1e8 do t[i] = string.rep(tostring(i), 1e6) end'; rc=$?
check '[ $rc -eq 1 ] && grep -qi "memory" "$D/err"' "a command that allocates without end is stopped by the memory budget"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
check '[ "$code" = 200 ]' "the daemon still answers HTTP after the runaway commands"

ev 'x = 41'; ev 'return x'
check '[ "$(cat "$D/out")" = nil ]' "each attach is its own session: globals do not leak between sessions"
ev 'x = 41 return x + 1'
check '[ "$(cat "$D/out")" = 42 ]' "globals live in the session"

# events.tail and policy.trace stream until n items (or Ctrl-C)
"$BIN" eval --socket "$S" 'events.tail{type = "demo.*", n = 2}' > "$D/tail" 2>&1 &
tailpid=$!
"$BIN" eval --socket "$S" 'policy.trace("demo.ping", {n = 1})' > "$D/trace" 2>&1 &
tracepid=$!
for _ in $(seq 200); do
  [ "$("$BIN" eval --socket "$S" 'return require("steward.runtime.taps").count("event") + require("steward.runtime.taps").count("decision")')" = 2 ] && break
  sleep 0.05
done
check '[ "$(post "[{\"id\":\"e-1\",\"type\":\"demo.ping\",\"data\":{\"x\":1}},{\"id\":\"e-2\",\"type\":\"other.x\"},{\"id\":\"e-3\",\"type\":\"demo.pong\"}]" /v1/events)" = 202 ]' "events posted"
wait $tailpid; rc=$?
check '[ $rc -eq 0 ] && grep -q "demo.ping .*e-1" "$D/tail" && grep -q "demo.pong .*e-3" "$D/tail" && ! grep -q other.x "$D/tail"' "events.tail shows the matching events as they are committed"
wait $tracepid
check 'grep -q "ok .*event e-" "$D/trace"' "policy.trace shows the policy's decision as it happens"

# Ctrl-C (SIGINT) interrupts a streaming command, not the daemon
"$BIN" eval --socket "$S" 'events.tail{}' > "$D/out" 2> "$D/err" &
epid=$!
for _ in $(seq 200); do [ "$("$BIN" eval --socket "$S" 'return require("steward.runtime.taps").count("event")')" = 1 ] && break; sleep 0.05; done
kill -INT $epid; wait $epid; rc=$?
check '[ $rc -eq 1 ] && grep -q interrupted "$D/err"' "SIGINT interrupts the running command: 'interrupted', exit 1"
ev 'return require("steward.runtime.taps").count("event")'
check '[ "$(cat "$D/out")" = 0 ]' "an interrupted tail leaves no subscription behind"

# the helpers
ev 'status().store.healthy, status().policies.loaded'
check '[ "$(cat "$D/out")" = "$(printf "true\n2")" ]' "status() reports store health and policies"
ev 'policies()'
check 'grep -q "demo.ping" "$D/out" && grep -q "runs" "$D/out"' "policies() lists each policy with its runs"
ev 'for _, p in ipairs(policies()) do if p.name == "demo.ping" then return p.runs >= 1 end end'
check '[ "$(cat "$D/out")" = true ]' "policies() counts handler runs"
ev 'events.find{type = "demo.*"}'
check 'grep -q e-1 "$D/out" && grep -q e-3 "$D/out"' "events.find queries the log"
ev 'return kv("policy:demo.ping"):get("last") ~= nil'
check '[ "$(cat "$D/out")" = true ]' "kv(ns) reads a policy's namespace"
ev 'local r = policy.simulate("demo.ping", {type = "demo.ping", data = {}}) return r.result, #r.side_effects'
check '[ "$(head -1 "$D/out")" = "\"pong\"" ]' "policy.simulate dry-runs a policy"
ref=$(curl -s -H "Authorization: Bearer $TOKEN" -d '{"x": 21}' "http://127.0.0.1:$PORT/v1/decide/demo.ping" | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')
for _ in $(seq 100); do ev "return explain('$ref') ~= nil"; [ "$(cat "$D/out")" = true ] && break; sleep 0.05; done
ev "local e = explain('$ref') return e.policy, e.input.x, e.result.doubled, e.outcome"
check '[ "$(cat "$D/out")" = "$(printf "\"demo.ping\"\n21\n42\n\"ok\"")" ]' "explain(decision_id): input, result, outcome"
ref=$(curl -s -H "Authorization: Bearer $TOKEN" -d '{}' "http://127.0.0.1:$PORT/v1/decide/demo.fx" | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')
for _ in $(seq 100); do ev "return explain('$ref') ~= nil"; [ "$(cat "$D/out")" = true ] && break; sleep 0.05; done
ev "local e = explain('$ref') return e.side_effects[1].kind, e.side_effects[1].url, e.side_effects[1].error ~= nil"
check '[ "$(cat "$D/out")" = "$(printf "\"http\"\n\"http://127.0.0.1:1/hook\"\ntrue")" ]' "explain shows the side effects a decision caused (its HTTP call)"
ev 'require("steward.time").after(3600, {type = "demo.later"}, {key = "t1"}) return #timers()'
check '[ "$(cat "$D/out")" = 2 ]' "timers() lists pending durable timers (the handler's and this one)"
ev 'local e = explain("e-1") return e.side_effects[1].kind, e.side_effects[1].event'
check '[ "$(cat "$D/out")" = "$(printf "\"timer\"\n\"demo.later\"")" ]' "explain shows a handler's side effects (the durable timer it set)"
ev 'return dead_letters()[1]'
check '[ "$(cat "$D/out")" = nil ]' "dead_letters() is empty when nothing failed"
ev 'requeue(999999)'
check 'grep -q "not found" "$D/out" "$D/err"' "requeue of an unknown id says not found"
ev 'reload().loaded'
check '[ "$(cat "$D/out")" = 2 ]' "reload() reloads the policies"
ev 'local p = profile(0.3) return p.samples >= 0 and p.functions ~= nil'
check '[ "$(cat "$D/out")" = true ]' "profile(seconds) samples and ranks functions"
ev 'help()'
check 'grep -q "events.tail" "$D/out" && grep -q "profile" "$D/out"' "help() lists the helpers"

# completion requests and raw frames
printf 'send C events.ta\nrecv_until L\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "^L events.tail$" "$D/out"' "a completion request lists table fields"
printf 'send C st\nrecv_until L\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "status" "$D/out" && grep -q "string" "$D/out"' "completion of globals: helpers and the standard library"
printf 'send E function f()\nrecv_until M\nsend E function f() return 7 end\nrecv_until R\nsend E f()\nrecv_until R\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "^M" "$D/out" && grep -q "^R 7$" "$D/out"' "an incomplete chunk is answered M; the completed one runs"
printf 'recv_until G\nraw 5a00000001ff\nrecv_until B\neof\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "^B malformed frame: unknown frame type" "$D/out" && grep -q "^eof$" "$D/out"' "a malformed frame closes that session with the reason"
printf 'recv_until G\nraw 45ffffffff\nrecv_until B\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "^B malformed frame: .*over the limit" "$D/out"' "an oversized frame closes that session"
printf 'recv_until G\nsend R 1\nrecv_until B\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "^B unexpected frame type" "$D/out"' "a daemon-side frame type from a client closes the session"
printf 'send E require("steward.time").sleep(30)\nsend E 1\nrecv_until X\nsend I \nrecv_until X\nsend E 2\nrecv_until R\n' > "$D/script"
$FRAMES "$S" "$D/script" > "$D/out" 2>&1
check 'grep -q "^X busy" "$D/out" && grep -q "^X interrupted" "$D/out" && grep -q "^R 2$" "$D/out"' "one command at a time; an interrupt ends it and the session goes on"
ev '1 + 1'
check '[ "$(cat "$D/out")" = 2 ] && kill -0 $DPID' "the daemon is unharmed by bad sessions"

# peers of another uid: refused unless listed; nobody (65534) is listed read-only
chmod 755 "$D" "$D/var"; chmod 666 "$S"
asuid() { setpriv --reuid="$1" --regid="$1" --clear-groups "$BIN" eval --socket "$S" "$2" > "$D/out" 2> "$D/err"; }
asuid 4242 '1 + 1'; rc=$?
check '[ $rc -eq 1 ] && grep -q "refused: uid 4242 may not use this socket" "$D/err"' "a peer with another uid is refused"
check 'grep -q "peer refused.*uid=4242" "$D/log.new"' "the refusal is logged"
asuid 65534 'status().store.healthy'; rc=$?
check '[ $rc -eq 0 ] && [ "$(cat "$D/out")" = true ]' "a read-only uid can inspect"
asuid 65534 'reload()'; rc=$?
check '[ $rc -eq 1 ] && grep -q "read-only" "$D/err"' "a read-only session cannot reload"
asuid 65534 'kv("x"):put("k", 1)'; rc=$?
check '[ $rc -eq 1 ] && grep -q "read-only" "$D/err"' "a read-only session cannot write to the store"
asuid 65534 'require("steward.http")'; rc=$?
check '[ $rc -eq 1 ] && [ -z "$(cat "$D/out")" ]' "a read-only session has no require (no side-effecting APIs)"
asuid 65534 'return io, os.execute, debug, load, loadstring'
check '[ "$(cat "$D/out")" = "$(printf "nil\nnil\nnil\nnil\nnil")" ]' "a read-only session has no io, os.execute, debug or loaders"
chmod 600 "$S"

# the audit log
"$BIN" audit -c "$D/steward.lua" --limit 200 > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 0 ] && grep -q "uid=0 .*admin .*ok .*x = 41 return x + 1" "$D/out"' "steward audit lists commands with uid, role and outcome"
check 'grep -q "uid=0 .*interrupted .*events.tail{}" "$D/out"' "an interrupted command is audited as interrupted"
check 'grep -q "uid=4242 .*refused .*attach" "$D/out"' "a refused peer is audited"
check 'grep -q "uid=65534 .*readonly .*error .*reload()" "$D/out"' "a read-only session's refused command is audited"
"$BIN" audit -c "$D/steward.lua" --json --limit 1 > "$D/out"
check 'grep -q "\"command\":" "$D/out"' "steward audit --json prints JSON lines"
"$BIN" audit -c "$D/steward.lua" --bogus > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "usage" "$D/err"' "steward audit rejects unknown arguments"

daemon_stop
check '[ $DSTATUS -eq 0 ] && [ ! -e "$S" ]' "a clean stop removes the socket"
"$BIN" eval --socket "$S" '1' > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "is the daemon running" "$D/err"' "no daemon: a clear message and exit 1"
echo "1..$n"
