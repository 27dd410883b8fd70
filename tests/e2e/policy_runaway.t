#!/bin/bash
# Runaway policies (issue 13): a handler emitting in a loop is stopped at limits.emit_per_run,
# a handler emitting two events per event (the probe that made 440k events) is stopped by
# limits.max_cause_depth, loops in a policy's own coroutine or a gsub callback do not keep
# /healthz from answering, and memory bombs running together are held to
# limits.policy_memory_total. Each failure is in the decision log with its error, and the
# emissions are counted in /metrics.
set -u
. "$(dirname "$0")/../support/daemon.sh"
C="/usr/bin/python3 $here/tests/support/runaway_check.py"
n=0; rc=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; rc=1; fi; }
# wait_for SECONDS COMMAND...: polls until the command succeeds (bounded).
wait_for() {
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.1; done
}

cat > "$D/policies/fanout.lua" <<'P'
local events = require "steward.events"
return { on = { "fanout.go" }, handle = function(ev)
  -- pcall cannot hide the refusal: the run fails all the same
  for i = 1, 1e6 do pcall(events.emit, { { type = "fanout.child", data = { i = i } } }) end
end }
P
cat > "$D/policies/doubler.lua" <<'P'
local events = require "steward.events"
return { on = { "doubler.ping" }, key = function(ev) return ev.id end, handle = function(ev)
  assert(events.emit({ { type = "doubler.ping" }, { type = "doubler.ping" } }))
end }
P
cat > "$D/policies/cospin.lua" <<'P'
return { on = { "spin.co" }, limits = { cpu = "3s" }, handle = function()
  return coroutine.wrap(function() while true do end end)()
end }
P
cat > "$D/policies/gsubspin.lua" <<'P'
return { on = { "spin.gsub" }, limits = { cpu = "3s" }, handle = function()
  return ("xxxx"):gsub(".", function() while true do end end)
end }
P
cat > "$D/policies/bomb.lua" <<'P'
local events, time = require "steward.events", require "steward.time"
return { on = { "bomb.hold" }, limits = { memory = 48 * 2^20, cpu = "5s" }, handle = function(ev)
  local t = {}
  -- about 40 MB, held until released (strings of its own: equal strings would be shared)
  for i = 1, 400 do t[i] = string.rep("m", 1e5) .. ev.id .. i end
  for _ = 1, 1200 do
    if #assert(events.query({ type = "bomb.release", limit = 1 })).events > 0 then break end
    time.sleep(0.05)
  end
  return #t
end }
P

daemon_config 'metrics_public = true,
  limits = { emit_per_run = 50, emit_per_second = 100000, max_cause_depth = 5, retry_attempts = 1,
             policy_stall = "100ms", policy_memory_total = 64 * 1024 * 1024 },'
daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }

# 1. Emitting in a loop: 50 events, then the run fails with the limit named.
$C "$PORT" "$TOKEN" post /v1/events '{"type":"fanout.go"}' >/dev/null
wait_for 30 sh -c "$C $PORT $TOKEN decisions fanout | grep -q ." 
dec=$($C "$PORT" "$TOKEN" decisions fanout)
echo "$dec" | grep -q "^error.*over limits.emit_per_run (50)"; ok $? "a handler emitting in a loop fails with the limit named: $dec"
ok $([ "$($C "$PORT" "$TOKEN" count fanout.child)" = 50 ] && echo 0 || echo 1) "it emitted exactly 50 events (got $($C "$PORT" "$TOKEN" count fanout.child))"
m=$($C "$PORT" "$TOKEN" metric steward_policy_events_emitted_total 'policy="fanout"')
ok $([ "$m" = 50 ] && echo 0 || echo 1) "the emissions are counted in /metrics ($m)"
m=$($C "$PORT" "$TOKEN" metric steward_policy_emit_refused_total 'policy="fanout",limit="per_run"')
ok $([ "$m" = 1 ] && echo 0 || echo 1) "the refused run is counted in /metrics, once ($m)"

# 2. Two events per event: the chain stops at depth 5, so 1 + 2 + ... + 32 = 63 pings.
$C "$PORT" "$TOKEN" post /v1/events '{"type":"doubler.ping"}' >/dev/null
wait_for 60 sh -c "[ \$($C $PORT $TOKEN decisions doubler | grep -c max_cause_depth) -ge 32 ]"
ok $? "each run at depth 5 fails with the depth limit named"
cnt=$($C "$PORT" "$TOKEN" count doubler.ping)
ok $([ "$cnt" = 63 ] && echo 0 || echo 1) "the doubling stops: 63 events in all (got $cnt)"
$C "$PORT" "$TOKEN" decisions doubler | grep -m1 max_cause_depth | grep -q "event cause depth 6 exceeds limits.max_cause_depth (5)"
ok $? "the error says which depth and which limit"
depths=$($C "$PORT" "$TOKEN" depths doubler.ping)
ok $([ "$(echo "$depths" | tr ' ' '\n' | sort -u | tr '\n' ' ')" = "0 1 2 3 4 5 " ] && echo 0 || echo 1) "events carry their cause depth, 0 to 5"
m=$($C "$PORT" "$TOKEN" metric steward_policy_emit_refused_total 'policy="doubler",limit="depth"')
ok $([ "$m" = 32 ] && echo 0 || echo 1) "the depth refusals are counted in /metrics ($m)"

# 3. Loops the hook could not slice: /healthz keeps answering while they run.
# (a probe asks for /healthz again and again, each with a 1 s deadline, while they run).
for what in co gsub; do
    pol=$([ $what = co ] && echo cospin || echo gsubspin)
    rm -f "$D/stop"
    $C "$PORT" - probe 1 "$D/stop" > "$D/probe" &
    probe=$!
    wait_for 10 sh -c "$C $PORT - healthz 5" # the probe is up before the runaway starts
    $C "$PORT" "$TOKEN" post /v1/events "{\"type\":\"spin.$what\"}" >/dev/null
    wait_for 60 sh -c "$C $PORT $TOKEN decisions $pol | grep -q ."
    touch "$D/stop"; wait $probe
    read -r answered missed < "$D/probe"
    ok $([ "$missed" = 0 ] && [ "$answered" -ge 1 ] && echo 0 || echo 1) \
        "a loop in a policy's $what: /healthz answered every time while it ran ($answered answered, $missed missed)"
    dec=$($C "$PORT" "$TOKEN" decisions $pol)
    if [ $what = co ]; then pat="cpu budget exceeded (3.0 s)"; else pat="cpu stall limit exceeded (0.1 s"; fi
    echo "$dec" | grep -qF "$pat"; ok $? "and it is stopped: $dec"
done

# 4. Memory bombs together: one holds its 40 MB, the others cannot take the heap past 64 MiB.
for i in 1 2 3 4; do $C "$PORT" "$TOKEN" post /v1/events "{\"type\":\"bomb.hold\",\"tenant\":\"t$i\"}" >/dev/null; done
wait_for 60 sh -c "[ \$($C $PORT $TOKEN decisions bomb | grep -c 'policy memory total exceeded') -ge 3 ]"
ok $? "the bombs that would take the heap past it fail with limits.policy_memory_total named"
$C "$PORT" - healthz 5; ok $? "the daemon answers meanwhile"
$C "$PORT" "$TOKEN" post /v1/events '{"type":"bomb.release"}' >/dev/null
wait_for 60 sh -c "$C $PORT $TOKEN decisions bomb | grep -q '^ok'"
ok $? "the holder finishes once released"
used=$($C "$PORT" "$TOKEN" metric steward_lua_memory_bytes '')
ok $([ "${used%.*}" -lt 30000000 ] && echo 0 || echo 1) "and the heap is back below 30 MB, not at its peak ($used bytes)"

alive=0; kill -0 "$DPID" 2>/dev/null && alive=1
daemon_stop TERM
ok $([ $alive = 1 ] && [ "$DSTATUS" = 0 ] && echo 0 || echo 1) "the daemon survived them all and stops cleanly"
grep -q "Sanitizer\|runtime error" "$D/log"; ok $([ $? = 0 ] && echo 1 || echo 0) "no sanitizer reports"
[ $rc = 0 ] || sed 's/^/# /' "$D/log" | grep -v "level=info" | tail -20
echo "1..$n"
exit $rc
