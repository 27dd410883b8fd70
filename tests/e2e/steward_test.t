#!/bin/bash
# `steward test`: runs the fixture specs under tests/support/ptest_* and checks the exit
# status, the TAP lines, the diff text, the fake clock firing a durable timer, stubbed and
# unstubbed HTTP, real I/O against a loopback server, and the command's usage errors.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
d=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
cd "$here" || exit 1
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
has() { grep -qF -- "$1" "$2"; }

# Passing specs.
"$BIN" test tests/support/ptest_pass > "$d/pass" 2> "$d/pass.err"; rc=$?
check '[ $rc -eq 0 ]' "passing specs: exit 0"
check '! grep -q "^not ok" "$d/pass" && [ "$(grep -c "^ok " "$d/pass")" -eq 14 ] && has "1..14" "$d/pass"' \
      "passing specs: 14 ok lines and the plan"
check 'has "# 14 tests in 1 spec file: 13 passed, 0 failed, 1 skipped" "$d/pass"' "a summary line"
check 'has "ok 1 - escalate > a new incident > posts to the webhook (recorded)" "$d/pass"' \
      "tests are named describe > describe > it; a stubbed request is recorded"
check 'grep -q "^ok [0-9]* - escalate > a new incident > escalates when the clock passes the timer" "$d/pass"' \
      "the fake clock fires a durable timer into the policy (mail, emitted event, state)"
check 'grep -q "^ok [0-9]* - escalate > runs before_each and after_each outer to inner and back" "$d/pass"' \
      "nested describes run before_each/after_each in order"
check 'grep -q "^ok 14 - a pending test is reported as skipped # SKIP pending" "$d/pass"' "an it without a function is a skip"
check '[ ! -s "$d/pass.err" ]' "nothing on stderr"
out=$(prove --exec "$BIN test" tests/support/ptest_pass/escalate_spec.lua 2>&1); rc=$?
check '[ $rc -eq 0 ] && echo "$out" | grep -q "^Result: PASS"' "prove reads the output as valid TAP"

# Failing specs.
"$BIN" test tests/support/ptest_fail > "$d/fail" 2>&1; rc=$?
check '[ $rc -eq 1 ]' "failing specs: exit 1"
check '[ "$(grep -c "^not ok [0-9]* - notify > FAILS: " "$d/fail")" -eq 5 ] && [ "$(grep -c "^ok " "$d/fail")" -eq 2 ]' \
      "each failing test is not ok, the others ok"
check 'has "# 7 tests in 1 spec file: 2 passed, 5 failed" "$d/fail"' "the summary counts the failures"
check 'has "not ok 2 - notify > FAILS: an unstubbed request" "$d/fail" &&
       has "unstubbed HTTP request: POST https://alerts.example.org/hook (add http_stub.on(\"POST\", \"https://alerts.example.org/hook\"" "$d/fail" &&
       has "(p:handle called at tests/support/ptest_fail/notify_spec.lua:" "$d/fail"' \
      "an unstubbed HTTP request fails the test, naming the request and the fix"
check 'has "not ok 3 - notify > FAILS: an unstubbed request the policy swallows" "$d/fail"' \
      "an unstubbed request fails the test even when the policy swallows the error"
check 'has "#   at tests/support/ptest_fail/notify_spec.lua:24: values differ (3 differences)" "$d/fail"' \
      "assert.same names the spec line and counts the differences"
check 'has "#   .b.c[3]: got 3, expected 4" "$d/fail" && has "#   .d: not expected, got \"x\"" "$d/fail" &&
       has "#   .e: missing, expected true" "$d/fail"' "the diff names every differing path"
check 'has "notify_spec.lua:29: attempt to index local '"'"'t'"'"' (a nil value)" "$d/fail"' "an error in a test is reported with its line"
check 'has "expected an error, none was raised" "$d/fail"' "assert.error without an error fails"
check 'grep -q "^ok 7 - notify > passes after failures, with the file.s stub" "$d/fail"' \
      "a test after failures runs clean; file-level stubs hold for every test"

# A spec file that does not compile.
"$BIN" test tests/support/ptest_broken > "$d/broken" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "not ok 1 - tests/support/ptest_broken/broken_spec.lua: cannot load the spec" "$d/broken" &&
       has "broken_spec.lua:4:" "$d/broken"' "a spec with a syntax error: not ok with file and line, exit 1"

# Every line of the output is TAP (a test line, a comment or the plan), also for what a spec
# prints, a failure's multi-line values and a "#" in a test name; prove agrees.
"$BIN" test tests/support/ptest_tap > "$d/tap" 2> "$d/tap.err"; rc=$?
check '[ $rc -eq 1 ] && [ -s "$d/tap" ] && ! grep -Ev "^(ok [0-9]+( |$)|not ok [0-9]+( |$)|#|1\.\.[0-9]+)" "$d/tap"' \
      "every output line is TAP: test lines, # comments, the plan"
check 'grep -q "^# first line$" "$d/tap" && grep -q "^# second line	42$" "$d/tap"' "print in a spec becomes # comment lines"
check 'grep -q "^#   key1 = " "$d/tap" && grep -q "^#   got:      {$" "$d/tap"' "a multi-line got is commented line by line"
check 'grep -qx "ok 5 - tap > names a \\\\# TODO that is not a directive" "$d/tap"' "a # in a test name is escaped (not a TODO directive)"
out=$(prove --exec "$BIN test" tests/support/ptest_tap/tap_spec.lua 2>&1)
check 'echo "$out" | grep -q "Failed 3/5 subtests" && ! echo "$out" | grep -qi "unknown\|parse"' "prove counts 3 failures of 5: no TODO, no parse problems"

# os.time() and os.date() in a policy follow the fake clock, as time.now() does; local time in a
# zone through time.localtime/format.
"$BIN" test tests/support/ptest_time > "$d/time" 2>&1; rc=$?
check '[ $rc -eq 0 ] && [ "$(grep -c "^ok " "$d/time")" -eq 4 ] && grep -q "^ok 1 - gate > sees the fake clock through os.time and os.date" "$d/time"' \
      "os.time/os.date in a policy follow the fake clock; time.localtime gives Paris time"

# --filter: only the tests whose full name contains the text run; the plan counts them.
"$BIN" test --filter "a new incident > escalates" tests/support/ptest_pass > "$d/filter" 2>&1; rc=$?
check '[ $rc -eq 0 ] && [ "$(grep -c "^ok " "$d/filter")" -eq 1 ] && grep -q "^ok 1 - escalate > a new incident > escalates when the clock" "$d/filter" &&
       grep -q "^1\.\.1$" "$d/filter" && grep -q "13 left out by --filter" "$d/filter"' "--filter runs the matching test only"
"$BIN" test --filter "FAILS: a long" tests/support/ptest_tap > "$d/filter" 2>&1; rc=$?
check '[ $rc -eq 1 ] && grep -q "^not ok 1 - tap > FAILS: a long string got" "$d/filter" && grep -q "^1\.\.1$" "$d/filter"' \
      "--filter with a failing match: exit 1"
"$BIN" test --filter "(plain text, no pattern" tests/support/ptest_pass > "$d/filter" 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "^1\.\.0" "$d/filter" && grep -q "no test name contains" "$d/err"' "--filter matching nothing: exit 1, says so"
"$BIN" test --filter 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "needs a PATTERN" "$d/err"' "--filter without a PATTERN: exit 2"

# Several paths at once: every file runs; one failure makes the exit status 1.
"$BIN" test tests/support/ptest_pass tests/support/ptest_broken > "$d/both" 2>&1; rc=$?
check '[ $rc -eq 1 ] && has "1..15" "$d/both"' "several paths: all run, exit 1 on any failure"

# Real I/O, opted into by the spec, against a loopback server.
fifo="$d/port"; mkfifo "$fifo"
/usr/bin/python3 tests/support/http_server.py > "$fifo" & srv=$!
read -r port < "$fifo"
PTEST_HTTP_PORT=$port "$BIN" test tests/support/ptest_realio > "$d/real" 2>&1; rc=$?
check '[ $rc -eq 0 ] && [ "$(grep -c "^ok " "$d/real")" -eq 2 ]' "real_io = true sends unstubbed requests for real, recorded"

# Discovery and usage.
mkdir -p "$d/tree/policies/sub" "$d/empty"
printf 'it("found", function() assert.truthy(true) end)\n' > "$d/tree/policies/sub/x_spec.lua"
printf 'it("not a spec", function() end)\n' > "$d/tree/policies/sub/helper.lua"
out=$(cd "$d/tree" && "$BIN" test); rc=$?
check '[ $rc -eq 0 ] && echo "$out" | grep -q "^ok 1 - found" && echo "$out" | grep -q "^1..1$"' \
      "without paths it runs the *_spec.lua files under policies/"
"$BIN" test "$d/empty" 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "no \*_spec.lua files" "$d/err"' "no spec files: exit 1 with a message"
"$BIN" test "$d/missing" 2> "$d/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "ENOENT.*missing" "$d/err"' "a missing path: exit 1 naming it"
"$BIN" test --bogus 2> "$d/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "unknown flag" "$d/err"' "an unknown flag: exit 2"
"$BIN" help > "$d/help"
check 'grep -q "^  test \[--filter PATTERN\] \[PATHS...\]" "$d/help" && grep -q "^  check " "$d/help"' "help lists test and check"
echo "1..$n"
