#!/bin/bash
# docs/archive.md's runnable example (docs/examples/archive.lua) runs, prints what the page
# shows (the lines that do not vary from run to run), and `steward archive` reads its files.
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0; fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
echo "1..6"
"$BIN" script "$here/docs/examples/archive.lua" "$T/demo" > "$T/out" 2>&1; ok $? "the example runs"
for line in "archived 1000 events into 1 file(s); 10 left in the store" \
            "replay from seq 1: 1010 events, seq 1 to 1010" "verify: ok"; do
    grep -qxF "$line" "$T/out" && grep -qxF "$line" "$here/docs/archive.md"
    ok $? "it prints, as the page shows: $line" || sed 's/^/# /' "$T/out"
done
"$BIN" archive list --dir "$T/demo/archive" > "$T/list" 2>&1
grep -q '^events-000000000000001-000000000001000.jsonl.zst  seq 1..1000  1000 records' "$T/list"
ok $? "steward archive list shows the segment" || sed 's/^/# /' "$T/list"
"$BIN" archive cat events-000000000000001-000000000001000.jsonl.zst --dir "$T/demo/archive" > "$T/cat" 2>&1
[ "$(wc -l < "$T/cat")" -eq 1000 ] && head -1 "$T/cat" | grep -q '"seq":1[,}]'
ok $? "steward archive cat prints its 1000 records as JSON lines" || head -3 "$T/cat" | sed 's/^/# /'
exit $fail
