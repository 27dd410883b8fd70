#!/bin/bash
# The steward command line: version, help, usage errors, script and eval exit statuses.
set -u
BIN=${STEWARD_BIN:-build/steward}
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

out=$("$BIN" version); rc=$?
check '[ $rc -eq 0 ]' "version exits 0"
for lib in steward LuaJIT libuv libcurl OpenSSL SQLite libpq libpg_query GMP; do
    check 'echo "$out" | grep -q "^$lib "' "version names $lib"
done
"$BIN" help > "$d/help"; rc=$?
check '[ $rc -eq 0 ] && grep -q "^  script FILE" "$d/help" && grep -q "^  run " "$d/help"' "help lists the commands"
# Every command of the help text (the CLI's own table), and each subcommand form of it, answers
# --help with its usage on stdout and exit 0: a new command is covered without editing this.
forms=$(sed -n '/^commands:/,/^$/p' "$d/help" | sed -n 's/^  \([a-z][a-z]*\)\( [a-z][a-z]*\)\{0,1\}\( .*\)\{0,1\}$/\1\2/p' | sort -u)
check '[ "$(echo "$forms" | wc -l)" -ge 14 ] && echo "$forms" | grep -qx "policy rollback"' "the help text lists the commands and their forms"
while read -r form; do
    [ -z "$form" ] && continue
    cmd=${form%% *}
    for flag in --help -h; do
        # shellcheck disable=SC2086
        "$BIN" $form $flag > "$d/out" 2> "$d/err"; rc=$?
        check '[ $rc -eq 0 ] && head -1 "$d/out" | grep -q "^usage: steward $cmd" && [ ! -s "$d/err" ]' \
              "steward $form $flag: its usage, exit 0"
    done
done <<EOF2
$forms
EOF2
"$BIN" help policy > "$d/out"; rc=$?
check '[ $rc -eq 0 ] && grep -q "^usage: steward policy list" "$d/out" && grep -q "steward policy rollback NAME" "$d/out"' \
      "help COMMAND prints every form of the command"
"$BIN" help frobnicate 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown command .frobnicate." "$d/err"' "help of an unknown command: exit 2"
printf 'print(...)\n' > "$d/args.lua"
out=$("$BIN" script "$d/args.lua" --help -h); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "--help	-h" ]' "script FILE --help: the flags are the script's arguments"
"$BIN" policy frob 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown subcommand .frob." "$d/err"' "policy with an unknown subcommand: exit 2"
"$BIN" decide x '{bad' 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "JSON" "$d/err"' "decide with bad JSON: exit 2 naming the JSON"

"$BIN" frobnicate 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown command .frobnicate." "$d/err" && grep -q "^usage:" "$d/err"' "an unknown command: usage and exit 2"
"$BIN" script --bogus 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown flag" "$d/err"' "an unknown flag: exit 2"
"$BIN" 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "no command: exit 2"
"$BIN" run --nope 2> /dev/null; rc=$?
check '[ $rc -eq 2 ]' "run with an unknown argument: exit 2"

printf 'local a, b = ...\nprint(arg[0], a, b)\nrequire("steward.time").sleep(0.01)\n' > "$d/ok.lua"
out=$("$BIN" script "$d/ok.lua" x y); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "$d/ok.lua	x	y" ]' "script gets its arguments as ... and arg, exits 0"
printf 'local function inner() error("kaputt") end\ninner()\n' > "$d/fail.lua"
"$BIN" script "$d/fail.lua" 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "fail.lua:1: kaputt" "$d/err" && grep -q "stack traceback" "$d/err" && grep -q "in function .inner." "$d/err"' \
      "a failing script exits 1 with the error and a traceback"
"$BIN" script "$d/missing.lua" 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "missing.lua" "$d/err"' "a missing script: exit 1 naming the file"
printf 'x = = 1\n' > "$d/syntax.lua"
"$BIN" script "$d/syntax.lua" 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "syntax.lua:1:" "$d/err"' "a syntax error: exit 1 with file and line"
printf 'require("steward.time").after(0.05, function() io.write("late\\n") end)\n' > "$d/timer.lua"
out=$("$BIN" script "$d/timer.lua"); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "late" ]' "script waits until the loop is empty (a pending timer runs)"

out=$("$BIN" eval --local '1 + 1, "s", {b = 1, a = {2}}'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "$(printf "2\n\"s\"\n{ a = { 2 }, b = 1 }")" ]' "eval prints each result, pretty-printed"
out=$("$BIN" eval --local 'local x = 2; print(x * 3)'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "6" ]' "eval runs statements when the chunk is not an expression"
out=$(echo 'return require("steward.json").encode({1})' | "$BIN" eval --local -); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "\"[1]\"" ]' "eval - reads the chunk from stdin"
"$BIN" eval --local 'error("nope")' 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "nope" "$d/err"' "eval exits 1 on an error"
"$BIN" eval --local 'return (' 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "eval" "$d/err"' "eval exits 1 on a syntax error"
out=$("$BIN" eval --local 'require("steward.time").sleep(0.01); return "slept"'); rc=$?
check '[ $rc -eq 0 ] && [ "$out" = "\"slept\"" ]' "eval runs as a task: it may sleep"
echo "1..$n"
