#!/bin/bash
# steward eval and steward repl against a stand-in daemon (tests/support/repl_stub.py): the
# frames they send, what they print, exit statuses; the interactive client driven in tmux.
set -u
BIN=${STEWARD_BIN:-build/steward}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac
STUB="$(cd "$(dirname "$0")/../support" && pwd)/repl_stub.py"
d=$(mktemp -d)
TS=$d/tmux.sock
stubs=()
cleanup() {
    tmux -S "$TS" kill-server 2> /dev/null
    for p in "${stubs[@]}"; do kill "$p" 2> /dev/null; done
    rm -rf "$d"
}
trap cleanup EXIT
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

# wait_until CONDITION: polls every 50 ms, for at most 10 s.
wait_until() {
    local i
    for ((i = 0; i < 200; i++)); do
        eval "$1" && return 0
        sleep 0.05
    done
    return 1
}
S=a # the tmux session wait_for reads
pane() { tmux -S "$TS" capture-pane -p -t "$S"; }
# wait_for PATTERN [FILE]: the pane of session $S (or FILE) has a line matching PATTERN (ERE).
# (wait_until sees the caller's locals: bash scopes dynamically.)
wait_for() {
    local w_pat=$1 w_file=${2:-}
    if [ -n "$w_file" ]; then
        wait_until 'grep -qE -- "$w_pat" "$w_file" 2> /dev/null'
    else
        wait_until 'pane | grep -qE -- "$w_pat"'
    fi
}
keys() { tmux -S "$TS" send-keys -t "$S" "$@"; }
text() { tmux -S "$TS" send-keys -t "$S" -l "$1"; } # literal: tmux reads "end" as the End key

# start_stub SOCKET RECORD [MODE]
start_stub() {
    local s_sock=$1
    /usr/bin/python3 "$STUB" "$1" "$2" "${3:-normal}" &
    stubs+=($!)
    wait_until '[ -S "$s_sock" ]'
}
sock=$d/s.sock rec=$d/rec
start_stub "$sock" "$rec" || echo "Bail out! the stub did not start"

# --- steward eval, through pipes ---------------------------------------------------------
out=$("$BIN" eval --socket "$sock" '1+1' 2> "$d/err"); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = 2 ] && [ ! -s "$d/err" ]' "eval: the result on stdout, exit 0"
check 'grep -qx "E 1+1" "$rec"' "eval: the chunk is sent as an E frame"
check 'grep -qx "H color=0\\\\nwidth=[0-9]*\\\\nclient=steward-eval" "$rec"' \
      "eval: says hello with color=0, width and client=steward-eval"
out=$("$BIN" eval --socket "$sock" --json '1+1'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "[2]" ] && grep -qx "J 1+1" "$rec"' "eval --json sends a J frame"
out=$("$BIN" eval --socket "$sock" 'error("x")' 2> "$d/err"); rc=$?
check '[ $rc -eq 1 ] && [ -z "$out" ] && grep -q "^stub: boom" "$d/err" && grep -q traceback "$d/err"' \
      "eval: an error goes to stderr, exit 1"
out=$(printf 'a\nb' | "$BIN" eval --socket "$sock" -); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "$(printf "ok: a\nb")" ] && grep -qx "E a\\\\nb" "$rec"' \
      "eval - sends stdin as the chunk"
out=$("$BIN" eval --socket "$sock" print); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "hello from print" ]' "eval: streamed output, then an empty result"
"$BIN" eval --socket "$sock" 'function f()' 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -qx "steward: eval: incomplete chunk" "$d/err"' \
      "eval: an incomplete chunk exits 1"
"$BIN" eval --socket "$sock" bye 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "daemon stopping" "$d/err"' "eval: the daemon ending the session exits 1"
out=$(STEWARD_SOCKET=$sock "$BIN" eval 'from env'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "ok: from env" ]' "eval: STEWARD_SOCKET names the socket"
printf 'return { admin_socket = "%s" }\n' "$sock" > "$d/conf.lua"
out=$(env -u STEWARD_SOCKET "$BIN" eval -c "$d/conf.lua" 'from config'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "ok: from config" ]' "eval -c: the config's admin_socket"
env -u STEWARD_SOCKET "$BIN" eval -c "$d/missing.lua" 1 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "missing.lua" "$d/err"' "eval -c with a missing config: exit 1 naming it"

"$BIN" eval --socket "$sock" tail > "$d/out" 2> "$d/err" &
pid=$!
wait_for '^event 2$' "$d/out"
kill -INT "$pid"
wait "$pid"; rc=$?
check '[ $rc -eq 1 ] && grep -qx "I " "$rec" && grep -qx interrupted "$d/err"' \
      "eval: SIGINT sends an I frame; the interrupted eval exits 1"

refused=$d/r.sock
start_stub "$refused" "$d/rec-refused" refuse
"$BIN" eval --socket "$refused" 1 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -qx "steward: refused: too many sessions" "$d/err"' "eval: refused (B first) exits 1"
"$BIN" eval --socket "$d/none.sock" 1 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -qF "steward: cannot connect to $d/none.sock: No such file or directory (is the daemon running? \`make run\` starts it)" "$d/err"' \
      "eval: no daemon exits 1 with the hint"
"$BIN" eval --socket "$sock" 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "CODE argument expected" "$d/err"' "eval without CODE: usage, exit 2"
"$BIN" eval --socket "$sock" a b 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "eval with two CODEs: exit 2"
"$BIN" eval --bogus 1 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown flag .--bogus." "$d/err"' "eval with an unknown flag: exit 2"
"$BIN" eval 1 --socket 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "needs a value" "$d/err"' "eval --socket without a path: exit 2"
"$BIN" repl --socket "$sock" extra 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "repl with an extra argument: exit 2"
"$BIN" repl --socket "$d/none.sock" 2> "$d/err" < /dev/null; rc=$?
check '[ $rc -eq 1 ] && grep -q "cannot connect to" "$d/err"' "repl: no daemon exits 1"
out=$("$BIN" eval --local '1 + 1'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = 2 ]' "eval --local runs in this process"

# --- steward repl, in tmux ---------------------------------------------------------------
home=$d/home
mkdir -p "$home"
# The command stays visible after the client ends: its exit status, then cat holds the pane.
repl_cmd="env -u NO_COLOR HOME='$home' '$BIN' repl --socket '$sock'; echo EXIT=\$?; exec cat"
: > "$rec"
tmux -S "$TS" new-session -d -s a -x 120 -y 40 "$repl_cmd"
check 'wait_for "^steward stub 0.0$" && wait_for "^type help\(\) for the incident helpers, Ctrl-D to leave$" && wait_for "^steward> ?$"' \
      "repl: the banner, the hint and the prompt"
check 'wait_for "^H color=1\\\\nwidth=120\\\\nclient=steward-repl$" "$rec"' \
      "repl: hello says color=1 (a tty), width=120 and client=steward-repl"
text '1+1'; keys Enter
check 'wait_for "^2$"' "repl: a result is shown"
text 'error()'; keys Enter
check 'wait_for "^stub: boom" && tmux -S "$TS" capture-pane -e -p -t a | grep -qF "$(printf "\033[31mstub: boom")"' \
      "repl: an error is shown in red"
text 'function f()'; keys Enter
check 'wait_for "^   >> ?$"' "repl: an incomplete chunk gets the continuation prompt"
text 'end'; keys Enter
check 'wait_for "^E function f\(\)\\\\nend$" "$rec" && wait_for "^ok: function f\(\)$"' \
      "repl: the lines are sent again as one chunk"
text 'events.ta'; keys Tab
check 'wait_for "^steward> events.tail$" && grep -qx "C events.ta" "$rec"' \
      "repl: Tab asks the daemon (C) and fills in events.tail"
keys Enter
check 'wait_for "^E events.tail$" "$rec"' "repl: no space is appended after a completion"
text 'tail'; keys Enter
wait_for '^event 2$'
keys C-c
check 'wait_for "^I $" "$rec" && wait_for "^interrupted$"' "repl: Ctrl-C during an eval sends I; the eval ends"
text 'after'; keys Enter
check 'wait_for "^ok: after$"' "repl: the session goes on after an interrupted eval"
text 'discard me'; keys C-c
text 'kept'; keys Enter
check 'wait_for "^ok: kept$" && ! grep -q "discard me" "$rec"' "repl: Ctrl-C at the prompt drops the line, keeps the session"
text 'function g()'; keys Enter
wait_for '^E function g\(\)$' "$rec"
keys C-c
text '1+1'; keys Enter
check 'wait_until "[ \$(grep -cx \"E 1+1\" \"\$rec\") -eq 2 ]" && ! grep -q "function g()\\\\n" "$rec"' \
      "repl: Ctrl-C at the continuation prompt drops the pending chunk"
keys C-d
check 'wait_for "^EXIT=0$"' "repl: Ctrl-D on an empty line exits 0"
check 'grep -qx "function\\\\040f()\\\\012end" "$home/.steward_history"' \
      "repl: the history file holds the multi-line chunk as one entry"

# A second session: the history is read back; Ctrl-R searches it.
S=b
tmux -S "$TS" new-session -d -s b -x 120 -y 40 "$repl_cmd"
wait_for '^steward> ?$'
keys C-r
text 'funct'
check 'wait_for "^steward> function f\(\)$"' "repl: Ctrl-R finds an entry of the previous session"
keys Enter
check 'wait_until "[ \$(grep -cx \"E function f()\\\\\\\\nend\" \"\$rec\") -eq 2 ]"' \
      "repl: the recalled multi-line entry is sent as one chunk"
text 'bye later'; keys Enter
check 'wait_for "session ended by the daemon: daemon stopping" && wait_for "^EXIT=1$"' \
      "repl: the daemon ending the session at the prompt: the reason, exit 1"

# A read-only session.
ro=$d/ro.sock
start_stub "$ro" "$d/rec-ro" readonly
S=c
tmux -S "$TS" new-session -d -s c -x 120 -y 40 "env HOME='$home' '$BIN' repl --socket '$ro'; echo EXIT=\$?; exec cat"
check 'wait_for "^steward\(ro\)> ?$"' "repl: role=readonly shows the (ro) prompt"
S=r
tmux -S "$TS" new-session -d -s r -x 120 -y 40 "env HOME='$home' '$BIN' repl --socket '$refused'; echo EXIT=\$?; exec cat"
check 'wait_for "^steward: refused: too many sessions$" && wait_for "^EXIT=1$"' "repl: refused exits 1 with the reason"
echo "1..$n"
