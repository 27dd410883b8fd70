#!/bin/bash
# The real `steward repl` attached to a real daemon, driven in tmux like a person at a
# terminal: results, the pretty printer, line editing, multi-line chunks, completion, history,
# Ctrl-C of a tail, of a runaway loop and of a trace, the incident helpers, leaving, and the
# audit log that records all of it. Every wait polls the screen (bounded), never a fixed sleep.
set -u
. "$(dirname "$0")/../support/daemon.sh"
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
TS=$D/tmux.sock
cleanup() {
    tmux -S "$TS" kill-server 2> /dev/null
    daemon_cleanup
}
trap cleanup EXIT
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; show; fi; }

# wait_until CONDITION: polls every 50 ms, for at most 15 s (ASan builds are slow).
wait_until() {
    local i
    for ((i = 0; i < 300; i++)); do
        eval "$1" && return 0
        sleep 0.05
    done
    return 1
}
S=a # the tmux session the helpers below act on
# The pane with its scrollback: long outputs (status()) push earlier lines out of view.
# Trailing blanks are dropped: libedit leaves spaces where it redrew a shorter line.
pane() { tmux -S "$TS" capture-pane -p -J -S -2000 -t "$S" 2> /dev/null | sed 's/ *$//'; }
show() { pane | grep -v '^$' | tail -12 | sed 's/^/#   | /'; }
# last: the pane's last non-empty line (where the cursor's line is while typing).
last() { pane | grep -v '^$' | tail -1; }
wait_last() { local w_line=$1; wait_until '[ "$(last)" = "$w_line" ]'; }
# wait_for PATTERN: a line of the pane matches PATTERN (ERE). Bash scopes dynamically, so
# wait_until sees w_pat.
wait_for() { local w_pat=$1; wait_until 'pane | grep -qE -- "$w_pat"'; }
# count PATTERN: how many lines of the pane match.
count() { pane | grep -cE -- "$1"; }
# wait_count PATTERN N: at least N lines match (a second answer, not the first one again).
wait_count() { local w_pat=$1 w_n=$2; wait_until '[ "$(count "$w_pat")" -ge "$w_n" ]'; }
keys() { tmux -S "$TS" send-keys -t "$S" "$@"; }
text() { tmux -S "$TS" send-keys -t "$S" -l "$1"; } # literal: tmux reads "end" as the End key
# run CODE: types CODE and Enter at the prompt.
run() { text "$1"; keys Enter; }
post() {
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/v1/events"
}

cat > "$D/policies/ping.lua" <<'POL'
return {
  name = "demo.pong",
  on = { "demo.ping" },
  handle = function(ev, ctx)
    ctx.log.info("pong", { n = ev.data.n })
    return { pong = ev.data.n }
  end,
}
POL
daemon_config 'limits = { repl_cpu = "60s" },'
daemon_start || { echo "Bail out! the daemon did not start"; exit 1; }

home=$D/home
mkdir -p "$home"
# The command stays visible after the client ends: its exit status, then cat holds the pane.
repl_cmd="env -u NO_COLOR HOME='$home' '$BIN' repl --socket '$D/var/steward.sock'; echo EXIT=\$?; exec cat"
tmux -S "$TS" new-session -d -s a -x 120 -y 40 "$repl_cmd"

# --- greeting, results, the pretty printer -----------------------------------------------
check 'wait_for "^steward [0-9.]+, pid $DPID, up " && wait_for "^type help\(\) for the incident helpers" && wait_for "^steward> ?$"' \
      "the daemon's banner (its pid), the hint and the prompt"
run '1 + 1'
check 'wait_for "^2$"' "1 + 1 shows 2"
run '{b = 1, a = {2, 3}, s = "x"}'
check 'wait_for "^\{ a = \{ 2, 3 \}, b = 1, s = \"x\" \}$"' "a table: sorted keys, nested list, quoted string"
run 'cyc = {name = "loop"}; cyc.self = cyc; return cyc'
check 'wait_for "^\{ name = \"loop\", self = <cycle: table: 0x[0-9a-f]+> \}$"' "a self-referencing table shows a cycle mark"
run 'deep = {}; local t = deep; for i = 1, 10 do t.d = {}; t = t.d end; return deep'
check 'wait_for "^\{ d = \{ d = \{ d = \{ d = \{ d = \{ d = \{\.\.\.\} \} \} \} \} \} \}$"' "a deeply nested table is cut at the depth limit"

# --- line editing ------------------------------------------------------------------------
# "1 + 5": Left, BSpace removes the "+"... build "31 * 5" from it: Home, type 3; End; Left
# twice; BSpace (the "+"); type "*"; C-e; BSpace the 5, type 7 -> "31 * 7" = 217.
text '1 + 5'
keys Left Left BSpace
text '*'
keys Home
text '3'
keys C-e BSpace
text '7'
keys C-a
text '('
keys End
text ')'
check 'wait_last "steward> (31 * 7)"' "line editing: Left, BSpace, Home, C-e, C-a, End edit the line"
keys Enter
check 'wait_for "^217$"' "the edited line is what runs"

# --- multi-line input --------------------------------------------------------------------
run 'function sq(x)'
check 'wait_for "^   >> ?$"' "an incomplete chunk gets the continuation prompt"
run 'return x * x'
run 'end'
run 'sq(7)'
check 'wait_for "^49$"' "the function defined over three lines runs: sq(7) is 49"

# --- completion --------------------------------------------------------------------------
text 'events.ta'; keys Tab
check 'wait_last "steward> events.tail"' "Tab completes events.ta to events.tail"
keys C-u
check 'wait_last "steward>"' "C-u clears the line"
text 'sta'; keys Tab
check 'wait_last "steward> status"' "Tab completes sta to status"
keys C-u

# --- Ctrl-C during a tail ----------------------------------------------------------------
run 'events.tail{type = "demo.*"}'
# The tail is running when the daemon has the subscription; an event posted before that is
# not shown, so post until one appears (each a fresh id and value).
i=0
tailed() { i=$((i + 1)); post "{\"type\":\"demo.ping\",\"tenant\":\"t1\",\"data\":{\"n\":$((1000 + i))}}" > /dev/null; wait_for_short "demo\.ping +t1 .*\{\"n\":10[0-9][0-9]\}"; }
wait_for_short() { local w_pat=$1 j; for ((j = 0; j < 20; j++)); do pane | grep -qE -- "$w_pat" && return 0; sleep 0.05; done; return 1; }
tries() { local k; for ((k = 0; k < 15; k++)); do "$1" && return 0; done; return 1; }
check 'tries tailed' "events.tail shows an event posted while it runs"
keys C-c
check 'wait_for "^interrupted$" && wait_last "steward>"' "Ctrl-C ends the tail: interrupted, and a new prompt"
run '1 + 1'
check 'wait_count "^2$" 2' "the session still answers after the interrupted tail"

# --- Ctrl-C during a runaway loop --------------------------------------------------------
run 'while true do end'
# The loop runs in the daemon, time-sliced: the daemon still serves HTTP meanwhile.
# It is running once the daemon has burnt half a second of CPU time more than before.
cpu() { awk '{ print $14 + $15 }' "/proc/$DPID/stat"; }
c0=$(cpu) hz=$(getconf CLK_TCK)
check 'wait_until "[ \$((\$(cpu) - c0)) -ge \$((hz / 2)) ]"' "the loop runs in the daemon (its CPU time grows)"
check '[ "$(curl -s -m 5 http://127.0.0.1:$PORT/healthz -o /dev/null -w "%{http_code}")" = 200 ]' \
      "the daemon answers /healthz during the runaway loop"
int_before=$(count '^interrupted$')
keys C-c
check 'wait_count "^interrupted$" $((int_before + 1)) && wait_last "steward>"' "Ctrl-C stops the loop: interrupted, and a new prompt"
run '2 + 2'
check 'wait_for "^4$"' "the session is alive after the loop"

# --- policy.trace ------------------------------------------------------------------------
run 'policy.trace("demo.pong")'
traced() { i=$((i + 1)); post "{\"type\":\"demo.ping\",\"tenant\":\"t2\",\"data\":{\"n\":$((2000 + i))}}" > /dev/null; wait_for_short "^[0-9:.]+  ok +[0-9.]+ms  .*"; }
check 'tries traced' "policy.trace shows the decision of an event posted while it runs"
int_before=$(count '^interrupted$')
keys C-c
check 'wait_count "^interrupted$" $((int_before + 1)) && wait_last "steward>"' "Ctrl-C ends the trace"

# --- the incident helpers ----------------------------------------------------------------
run 'status()'
check 'wait_for "pid = $DPID" && wait_for "uptime = " && wait_for "backend = \"sqlite\""' "status() renders the pid, uptime and store"
run 'policies()'
check 'wait_for "^name +version +loaded_at +runs +errors" && wait_until "pane | grep -E \"^demo\\.pong \" | awk \"{ if (\\\$4 >= 1) f = 1 } END { exit !f }\""' \
      "policies() lists demo.pong with runs >= 1"
run 'error("boom here")'
check 'wait_for "boom here"' "an error is shown"

# --- history: a distinctive command, C-d, a new session, C-r ------------------------------
run 'return "marker-" .. 6 * 7'
check 'wait_for "^\"marker-42\"$"' "a distinctive command runs"
keys C-d
check 'wait_for "^EXIT=0$"' "C-d on an empty line leaves the client, exit 0"

S=b
tmux -S "$TS" new-session -d -s b -x 120 -y 40 "$repl_cmd"
wait_for '^steward> ?$'
keys C-r
text 'marker-'
check 'wait_for "return \"marker-\" \.\. 6 \* 7"' "C-r in a new session finds the command of the last one"
keys Enter
check 'wait_for "^\"marker-42\"$"' "Enter runs the found command again"
keys C-d
check 'wait_for "^EXIT=0$"' "the second session leaves with C-d too"

# --- the audit log -----------------------------------------------------------------------
audit=$("$BIN" audit -c "$D/steward.lua" --limit 200 2> "$D/audit.err")
echo "$audit" > "$D/audit"
has() { grep -E -- "$1" "$D/audit" > /dev/null || { sed "s/^/# audit| /" "$D/audit"; false; }; }
check 'has "uid=0 +admin +ok +[^ ]+ +1 \+ 1$"' "audit: 1 + 1, uid 0, ok"
check 'has "uid=0 +admin +interrupted +[^ ]+ +events\.tail\{type = \"demo\.\*\"\}"' "audit: the tail, interrupted"
check 'has "uid=0 +admin +interrupted +[^ ]+ +while true do end"' "audit: the loop, interrupted"
check 'has "uid=0 +admin +interrupted +[^ ]+ +policy\.trace\(\"demo\.pong\"\)"' "audit: the trace, interrupted"
check 'has "uid=0 +admin +error +[^ ]+ +error\(\"boom here\"\)"' "audit: the error, outcome error"
check 'has "uid=0 +admin +ok +[^ ]+ +function sq\(x\)\\\\nreturn x \* x\\\\nend"' "audit: the multi-line chunk as one command"
check '[ "$(grep -cE "uid=0 .* return \"marker-\" \.\. 6 \* 7" "$D/audit")" -eq 2 ]' "audit: the recalled command, once per session"
check '[ "$(grep -cE "uid=0 +admin +ok +[^ ]+ +attach" "$D/audit")" -eq 2 ]' "audit: two sessions attached"
[ -s "$D/audit.err" ] && sed "s/^/# audit: /" "$D/audit.err"

daemon_stop
check '[ "$DSTATUS" -eq 0 ]' "the daemon stops cleanly"
echo "1..$n"
