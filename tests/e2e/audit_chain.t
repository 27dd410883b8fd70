#!/bin/bash
# The audit log's hash chain (docs/audit.md): HTTP mutations are recorded with actor, target,
# digests and outcome; an untouched log verifies; editing a field, deleting an entry,
# swapping two, rewriting the chain after an edit, and replacing the signing key are each
# reported with the entry's id; the export verifies with the auditor's openssl commands of
# docs/audit.md (run as written), and a tampered export does not.
set -u
. "$(dirname "$0")/../support/daemon.sh"
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; echo "# out: $(head -c 600 "$D/out" 2>/dev/null)"; echo "# err: $(head -c 600 "$D/err" 2>/dev/null)"; fi; }
sql() { /usr/bin/python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); r = c.execute(sys.argv[2]).fetchall(); c.commit()
print("\n".join("|".join(str(x) for x in row) for row in r))' "$1" "$2"; }

cat > "$D/policies/ping.lua" <<'POL'
return { name = "demo.ping", on = { "demo.*" }, handle = function() end }
POL
daemon_config ""
daemon_start || exit 1
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer ${3:-$TOKEN}" \
  -H 'content-type: application/json' ${4:+--data "$4"} "http://127.0.0.1:$PORT$2"; }

# ---- mutations through the HTTP API ----
code=$(api POST /v1/tokens "$TOKEN" '{"role":"viewer","name":"auditor"}')
VIEWER=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$D/body"); VID=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$D/body")
check '[ "$code" = 201 ] && [ -n "$VIEWER" ]' "a viewer token is created"
code=$(api POST /v1/tokens "$TOKEN" '{"role":"ingest","name":"gone"}'); GONE=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$D/body")
code=$(api DELETE "/v1/tokens/$GONE"); check '[ "$code" = 204 ]' "a token is revoked"
V1=$(api GET /v1/policies/demo.ping >/dev/null; sed -n 's/.*"version":"\([0-9a-f]*\)".*/\1/p' "$D/body" | head -1)
cat > "$D/policies/ping.lua" <<'POL'
return { name = "demo.ping", on = { "demo.*" }, handle = function() return 2 end }
POL
code=$(api POST /v1/policies/reload); check '[ "$code" = 200 ]' "policies are reloaded"
code=$(api POST /v1/policies/reload "$VIEWER"); check '[ "$code" = 403 ]' "a viewer may not reload"
code=$(api POST /v1/policies/demo.ping/rollback); check '[ "$code" = 200 ]' "a policy is rolled back"
code=$(api POST /v1/dead-letters/999/requeue); check '[ "$code" = 404 ]' "requeue of a missing dead letter: 404"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ); later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
code=$(api POST /api/v2/silences "$TOKEN" "{\"matchers\":[{\"name\":\"job\",\"value\":\"x\",\"isRegex\":false}],\"startsAt\":\"$now\",\"endsAt\":\"$later\",\"createdBy\":\"t\",\"comment\":\"c\"}")
SIL=$(sed -n 's/.*"silenceID":"\([^"]*\)".*/\1/p' "$D/body")
check '[ "$code" = 200 ] && [ -n "$SIL" ]' "a silence is created"
code=$(api DELETE "/api/v2/silence/$SIL"); check '[ "$code" = 200 ]' "the silence is expired"
"$BIN" eval --socket "$D/var/steward.sock" '1 + 1' > /dev/null
"$BIN" audit -c "$D/steward.lua" --json --limit 100 > "$D/list"
row() { grep "\"command\":\"$1\"" "$D/list" | head -1; }
tc=$(grep '"command":"token.create"' "$D/list" | grep "\"target\":\"$VID\"")
check 'echo "$tc" | grep -q "\"actor\":\"admin\"" && echo "$tc" | grep -q "\"after_digest\":\"[0-9a-f]\{64\}\""' \
  "token.create: actor, target (the new id) and an after digest"
check 'row token.revoke | grep -q "\"target\":\"$GONE\"" && row token.revoke | grep -q "\"before_digest\":\"[0-9a-f]\{64\}\""' "token.revoke: target and a before digest"
check 'grep "\"command\":\"policy.reload\"" "$D/list" | grep -q "\"outcome\":\"refused\".*\"actor\":\"token:$VID (auditor)\"\|\"actor\":\"token:$VID (auditor)\".*\"outcome\":\"refused\""' \
  "a refused reload is recorded with the viewer token as actor"
check 'grep "\"command\":\"policy.reload\"" "$D/list" | grep "\"outcome\":\"ok\"" | grep -q "\"before_digest\":\"[0-9a-f]\{64\}\""' "policy.reload: ok, with digests"
check 'row policy.rollback | grep -q "\"target\":\"demo.ping\"" && row policy.rollback | grep -q "\"after_digest\":\"$V1\""' \
  "policy.rollback: the policy and the version it went back to"
check 'row dead_letter.requeue | grep -q "\"outcome\":\"refused\"" && row dead_letter.requeue | grep -q "HTTP 404"' "a failed requeue is recorded as refused"
check 'row silence.put | grep -q "\"target\":\"$SIL\"" && row silence.expire | grep -q "\"target\":\"$SIL\""' "silence.put and silence.expire name the silence"
check 'grep -q "\"command\":\"1 + 1\".*\"source\":\"repl\"\|\"source\":\"repl\".*\"command\":\"1 + 1\"" "$D/list"' "the REPL command is in the same log"

daemon_stop
check '[ "$(stat -c %a "$D/var/audit-key.pem")" = 600 ]' "the signing key is created with mode 0600"
"$BIN" audit verify -c "$D/steward.lua" > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 0 ] && grep -q "^ok: verified entries 1 to [0-9]* ([0-9]* chained, 1 signed checkpoint)" "$D/out"' \
  "an untouched log verifies; the shutdown signed a checkpoint"
"$BIN" audit export -c "$D/steward.lua" -o "$D/audit.jsonl" 2> "$D/err"
"$BIN" audit pubkey -c "$D/steward.lua" > "$D/audit-pub.pem"
HEAD=$(sql "$D/steward.db" "SELECT MAX(id) FROM audit")
CP=$(sql "$D/steward.db" "SELECT MIN(id) FROM audit WHERE command = 'audit.checkpoint'")
check '[ "$(wc -l < "$D/audit.jsonl")" = "$HEAD" ] && [ "$CP" = "$HEAD" ]' "export writes every entry; the checkpoint is the head"

# ---- the auditor's commands, as docs/audit.md writes them ----
here=$(cd "$(dirname "$0")/../.." && pwd)
awk '/^```sh auditor$/ { on = 1; k++; next } /^```$/ { on = 0 } on { print > (dir "/block" k ".sh") }' dir="$D" "$here/docs/audit.md"
check '[ -s "$D/block1.sh" ] && [ -s "$D/block2.sh" ] && [ -s "$D/block3.sh" ]' "docs/audit.md has the three auditor blocks"
mkdir "$D/auditor" && cp "$D/audit.jsonl" "$D/audit-pub.pem" "$D/auditor/"
KEYID=$(cd "$D/auditor" && sh "$D/block1.sh")
check 'grep -q "\"key_id\":\"$KEYID\"" "$D/audit.jsonl"' "block 1: the key id openssl computes is the checkpoint's key_id"
(cd "$D/auditor" && sh "$D/block2.sh") > "$D/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && grep -q "chain ok: $HEAD entries" "$D/out"' "block 2: the chain checks with openssl dgst"
(cd "$D/auditor" && sh "$D/block3.sh") > "$D/out" 2>&1; rc=$?
check '[ $rc -eq 0 ] && grep -q "Signature Verified Successfully" "$D/out"' "block 3: the checkpoint verifies with openssl pkeyutl"
sed -i '3s/"outcome":"ok"/"outcome":"no"/' "$D/auditor/audit.jsonl"
(cd "$D/auditor" && sh "$D/block2.sh") > "$D/out" 2>&1; rc=$?
check '[ $rc -ne 0 ] && grep -q "chain broken at line 4" "$D/out"' "an edited export line breaks the auditor's chain check at the next line"
cp "$D/audit.jsonl" "$D/auditor/audit.jsonl"
c=$(sed -n "${HEAD}p" "$D/audit.jsonl" | cut -c15); new=f; [ "$c" = f ] && new=e
sed -i "${HEAD}s/^{\"prev_hash\":\"./{\"prev_hash\":\"$new/" "$D/auditor/audit.jsonl"
(cd "$D/auditor" && sh "$D/block3.sh") > "$D/out" 2>&1; rc=$?
check '[ $rc -ne 0 ] && grep -q "Signature Verification Failure" "$D/out"' "a checkpoint whose signed hash was changed fails openssl pkeyutl"

# ---- tampering with the store ----
cp "$D/steward.db" "$D/clean.db"
restore() { cp "$D/clean.db" "$D/steward.db"; rm -f "$D/steward.db-wal" "$D/steward.db-shm"; }
verify() { "$BIN" audit verify -c "$D/steward.lua" "$@" > "$D/out" 2> "$D/err"; }
K=4
sql "$D/steward.db" "UPDATE audit SET target = 'someone-else' WHERE id = $K" > /dev/null
verify; rc=$?
check '[ $rc -eq 1 ] && grep -q "^FAILED at entry $K: its content does not match its hash" "$D/out"' "an edited field: entry $K named"
restore
sql "$D/steward.db" "DELETE FROM audit WHERE id = $K" > /dev/null
verify; rc=$?
check '[ $rc -eq 1 ] && grep -q "^FAILED at entry $((K + 1)): entry $K is missing" "$D/out"' "a deleted entry: the gap at $K named"
restore
sql "$D/steward.db" "UPDATE audit SET id = -1 WHERE id = $K" > /dev/null
sql "$D/steward.db" "UPDATE audit SET id = $K WHERE id = $((K + 1))" > /dev/null
sql "$D/steward.db" "UPDATE audit SET id = $((K + 1)) WHERE id = -1" > /dev/null
verify; rc=$?
check '[ $rc -eq 1 ] && grep -q "^FAILED at entry $K: out of order" "$D/out"' "two entries swapped: entry $K named as out of order"
restore
# An edit whose author recomputes every later hash: the chain holds, the signature does not.
cat > "$D/rewrite.lua" <<LUA
local store = require "steward.runtime.store"
local audit = require "steward.runtime.store.audit"
local st = assert(store.open("sqlite:$D/steward.db"))
local rows = assert(audit.range(st, $K, 1000))
local prev = assert(st:query("SELECT hash FROM audit WHERE id = $((K - 1))"))[1].hash
for i, r in ipairs(rows) do
  if i == 1 then r.target = "someone-else" end
  r.prev_hash = prev
  r.hash = audit.hash(audit.canonical(r))
  assert(st:exec("UPDATE audit SET target = \$1, prev_hash = NULL, hash = NULL WHERE id = \$2", r.target, r.id))
  prev = r.hash
end
for _, r in ipairs(rows) do assert(st:exec("UPDATE audit SET prev_hash = \$1, hash = \$2 WHERE id = \$3", r.prev_hash, r.hash, r.id)) end
st:close()
LUA
"$BIN" script "$D/rewrite.lua" 2> "$D/err"
verify; rc=$?
check '[ $rc -eq 1 ] && grep -q "^FAILED at entry $CP: checkpoint signature does not verify" "$D/out"' \
  "an edit with every later hash rewritten: the checkpoint (entry $CP) named"
restore
mv "$D/var/audit-key.pem" "$D/old-key.pem"
"$BIN" audit pubkey -c "$D/steward.lua" > /dev/null # makes a new key, as an intruder would
verify; rc=$?
check '[ $rc -eq 1 ] && grep -q "^FAILED at entry $CP: checkpoint signed by key .*the signing key was replaced" "$D/out"' \
  "a replaced signing key: the checkpoint (entry $CP) named"
verify --pubkey "$D/audit-pub.pem"; rc=$?
check '[ $rc -eq 0 ]' "with the auditor's copy of the public key, the untouched log verifies"
"$BIN" audit verify -c "$D/steward.lua" --from 3 --pubkey "$D/audit-pub.pem" > "$D/out"; rc=$?
check '[ $rc -eq 0 ] && grep -q "^ok: verified entries 3 to $HEAD" "$D/out"' "--from starts at the given entry"
"$BIN" audit verify -c "$D/steward.lua" --bogus > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 2 ] && grep -q "usage: steward audit verify" "$D/err"' "a bad argument: usage and exit 2"
echo "1..$n"
