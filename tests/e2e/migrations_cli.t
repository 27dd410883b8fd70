#!/usr/bin/env bash
# steward migrations check | compatible | measure from the shell, without squawk or a database:
# the text and JSON outputs, the exit statuses (0 clean, 1 found, 2 unreadable or unparsable
# input and usage errors), stdin as "-", flags given as --flag=value. measure against a real
# PostgreSQL is tests/e2e/migrations_locks.t.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
PY=/usr/bin/python3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
n=0
check() { # check NAME CONDITION...
    local name=$1; shift
    n=$((n + 1))
    if "$@"; then echo "ok $n - $name"; else echo "not ok $n - $name"; sed 's/^/#   /' "$dir/out" "$dir/err" 2>/dev/null; fi
}
json() { "$PY" -c "import json,sys; d=json.load(open('$dir/out')); sys.exit(0 if ($1) else 1)"; }
echo "1..22"

printf "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n" > "$dir/clean.sql"
printf "ALTER TABLE users DROP COLUMN email;\n" > "$dir/drop.sql"
printf "ALTER TABLE users ADD COLUMN;\n" > "$dir/broken.sql"

"$BIN" migrations check "$dir/clean.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check: a clean file exits 0" [ $rc = 0 ]
check "check: and says so" grep -q "1 file(s), 0 violation(s)" "$dir/out"

"$BIN" migrations check "$dir/clean.sql" "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check: a violation exits 1" [ $rc = 1 ]
check "check: FILE:LINE:COLUMN: rule: message" grep -q "drop.sql:1:19: ban-drop-column: dropping a column" "$dir/out"

"$BIN" migrations check --json --exclude=prefer-robust-stmts,require-timeout-settings "$dir/clean.sql" "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check --json: exit 1" [ $rc = 1 ]
check "check --json: [{file, violations: [{rule, line, column, message}]}], --exclude=... applied" \
    json "len(d) == 2 and d[0]['violations'] == [] and [v['rule'] for v in d[1]['violations']] == ['ban-drop-column'] and d[1]['violations'][0]['line'] == 1 and d[1]['violations'][0]['column'] == 19 and 'message' in d[1]['violations'][0]"

"$BIN" migrations check - < "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check -: reads stdin" grep -q "^-:1:19: ban-drop-column" "$dir/out"

"$BIN" migrations check "$dir/broken.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check: an unparsable file exits 2" [ $rc = 2 ]
check "check: naming file, line and column" grep -q "broken.sql:1:29: syntax error at or near \";\"" "$dir/err"

"$BIN" migrations check --exclude no-such-rule "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check: an unknown rule to exclude is a usage error (2), named" \
    bash -c "[ $rc = 2 ] && grep -q \"unknown rule 'no-such-rule'\" '$dir/err'"
"$BIN" migrations check --pg-version fifteen "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "check: a bad --pg-version is a usage error (2), named" bash -c "[ $rc = 2 ] && grep -q \"'fifteen' is not a version\" '$dir/err'"
"$BIN" migrations check > "$dir/out" 2> "$dir/err"; rc=$?
check "check: no FILE is a usage error (2)" [ $rc = 2 ]

"$BIN" migrations compatible "$dir/clean.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "compatible: a compatible migration exits 0" bash -c "[ $rc = 0 ] && grep -q 'clean.sql: backward compatible' '$dir/out'"
"$BIN" migrations compatible "$dir/clean.sql" "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "compatible: one that is not exits 1" [ $rc = 1 ]
check "compatible: FILE:LINE: kind: message" grep -q "drop.sql:1: drop: drops column users.email" "$dir/out"
"$BIN" migrations compatible --json "$dir/drop.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "compatible --json: [{file, compatible, reasons: [{kind, object, line, message}]}]" \
    json "d[0]['compatible'] is False and d[0]['reasons'][0]['kind'] == 'drop' and d[0]['reasons'][0]['object'] == 'users.email' and d[0]['reasons'][0]['line'] == 1"
"$BIN" migrations compatible "$dir/broken.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "compatible: an unparsable file exits 2, named" bash -c "[ $rc = 2 ] && grep -q 'broken.sql:1:29: syntax error' '$dir/err'"

"$BIN" migrations measure "$dir/clean.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "measure: without --db a usage error (2)" bash -c "[ $rc = 2 ] && grep -q -- '--db URL is needed' '$dir/err'"
"$BIN" migrations measure --db "postgres://nobody@127.0.0.1:1/none" "$dir/clean.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "measure: an unreachable database exits 2, named" bash -c "[ $rc = 2 ] && grep -q 'clean.sql: pg.connect' '$dir/err'"
"$BIN" migrations measure --db x "$dir/nowhere.sql" > "$dir/out" 2> "$dir/err"; rc=$?
check "measure: an unreadable file exits 2, named" bash -c "[ $rc = 2 ] && grep -q 'nowhere.sql: ENOENT' '$dir/err'"

"$BIN" migrations frobnicate > "$dir/out" 2> "$dir/err"; rc=$?
check "an unknown subcommand is a usage error (2)" bash -c "[ $rc = 2 ] && grep -q \"unknown subcommand 'frobnicate'\" '$dir/err'"
"$BIN" migrations --help > "$dir/out" 2> "$dir/err"; rc=$?
check "--help lists check, compatible and measure" bash -c "[ $rc = 0 ] && grep -q 'migrations check' '$dir/out' && grep -q 'migrations compatible' '$dir/out' && grep -q 'migrations measure' '$dir/out'"
