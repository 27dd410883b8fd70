#!/bin/bash
# Offboarding a tenant (steward.tenants.offboard, docs/tenants.md "Offboarding"): its data goes
# out as a signed archive that `steward tenants verify-export` accepts (and refuses once a byte
# is flipped), holding its rows and no other tenant's; then the store holds no row of it, and
# the audit log has the proof (counts per table before and after, digests, the archive's sha256).
set -u
. "$(dirname "$0")/../support/daemon.sh"
cat > "$D/policies/work.lua" <<'POL'
return { name = "work", on = { "work.*" }, handle = function() end }
POL
daemon_config ""
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..15"
api() { curl -s -o "$D/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    ${4:+-H 'Content-Type: application/json' -d "$4"} "http://127.0.0.1:$PORT$3"; }
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$@" | tr -d '"'; } # a string result unquoted
api "$TOKEN" POST /v1/tokens '{"role":"viewer","tenant":"acme","name":"acme-ro"}' >/dev/null
api "$TOKEN" POST /v1/tokens '{"role":"viewer","tenant":"globex"}' >/dev/null
s=$(api "$TOKEN" POST /v1/events '[{"id":"a1","type":"work.x","tenant":"acme","data":{"n":1}},
  {"id":"a2","type":"work.y","tenant":"acme"},{"id":"g1","type":"work.x","tenant":"globex"}]')
ev 'local kv = require("steward.kv")
  assert(kv.ns("tenant:acme:prefs"):put("color", "blue"))
  assert(kv.ns("tenant:globex:prefs"):put("color", "red"))
  return true' > "$D/out" 2>&1
ok $([ "$s" = 202 ] && grep -q true "$D/out"; echo $?) "seeded: events, kv of acme and globex ($s $(head -c 200 "$D/out"))"
decisions() { api "$TOKEN" GET "/v1/decisions?tenant=$1" >/dev/null; jx 'len(d["decisions"]) >= int(arg[0])' "$2" < "$D/body" >/dev/null; }
wait_for 10 decisions acme 2; ok $? "acme's events were handled (decisions to export)"

ev 'local r, err = require("steward.tenants.offboard").run("acme"); return r and r.phase or err' > "$D/out" 2>&1
ok $([ "$(cat "$D/out")" = done ]; echo $?) "offboard.run(acme) -> done ($(head -c 300 "$D/out"))"
ARCHIVE=$(ev 'return require("steward.tenants.offboard").status("acme").archive' 2>&1)
ok $([ -f "$ARCHIVE" ]; echo $?) "the archive is on disk ($ARCHIVE)"

"$BIN" tenants verify-export "$ARCHIVE" -c "$D/steward.lua" > "$D/v" 2>&1
ok $([ $? = 0 ] && grep -q '^ok: tenant acme' "$D/v"; echo $?) "steward tenants verify-export accepts it ($(cat "$D/v"))"

case "$ARCHIVE" in *.jsonl.zst) ok 0 "it is compressed (zstd): $ARCHIVE" ;; *) ok 1 "it is compressed (zstd): $ARCHIVE" ;; esac
"$BIN" tenants cat-export "$ARCHIVE" > "$D/export.jsonl" 2> "$D/cat.err"
ok $? "steward tenants cat-export prints its lines ($(head -c 200 "$D/cat.err"))"
/usr/bin/python3 - "$D/export.jsonl" > "$D/check" 2>&1 <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
rows = [json.loads(l) for l in lines[1:-1]]
by = {}
for r in rows: by.setdefault(r["table"], []).append(r["row"])
ev = sorted(r["id"] for r in by.get("events", []))
assert ev == ["a1", "a2"], ev
assert [r["ns"] for r in by.get("kv", [])] == ["tenant:acme:prefs"], by.get("kv")
assert len(by.get("decisions", [])) >= 2 and all(r["tenant"] == "acme" for r in by["decisions"])
assert [r["name"] for r in by.get("api_tokens", [])] == ["acme-ro"] and "hash" not in by["api_tokens"][0]
assert "globex" not in open(sys.argv[1]).read(), "another tenant's data in the archive"
print("ok")
PY
ok $(grep -qx ok "$D/check"; echo $?) "the archive holds acme's events, kv, decisions, token metadata (no hash) and nothing of globex ($(tail -1 "$D/check"))"

/usr/bin/python3 - "$ARCHIVE" "$D/flipped.jsonl.zst" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); i = len(b) // 3; b[i] ^= 0x01
open(sys.argv[2], "wb").write(b)
PY
"$BIN" tenants verify-export "$D/flipped.jsonl.zst" -c "$D/steward.lua" > "$D/v" 2>&1
ok $([ $? = 1 ] && grep -q '^FAILED' "$D/v"; echo $?) "a flipped byte fails verification ($(cat "$D/v"))"

count() { ev "return (require('steward.runtime.store').default():sql($1))[1].n" 2>&1; }
left=$(count "\"SELECT (SELECT COUNT(*) FROM events WHERE tenant = 'acme') + (SELECT COUNT(*) FROM decisions WHERE tenant = 'acme') + (SELECT COUNT(*) FROM kv WHERE ns LIKE 'tenant:acme:%') + (SELECT COUNT(*) FROM api_tokens WHERE tenant = 'acme') AS n\"")
ok $([ "$left" = 0 ]; echo $?) "the store holds no row of acme (events, decisions, kv, tokens: $left)"
kept=$(count "\"SELECT (SELECT COUNT(*) FROM events WHERE tenant = 'globex') + (SELECT COUNT(*) FROM kv WHERE ns LIKE 'tenant:globex:%') + (SELECT COUNT(*) FROM api_tokens WHERE tenant = 'globex') AS n\"")
ok $([ "$kept" = 3 ]; echo $?) "globex's rows are untouched ($kept)"

"$BIN" audit --json -c "$D/steward.lua" > "$D/audit" 2>&1
/usr/bin/python3 - "$D/audit" "$D/export.jsonl" > "$D/check" 2>&1 <<'PY'
import json, sys, hashlib
es = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
es = [e for e in es if e.get("command") == "tenant.offboard" and e.get("target") == "acme"]
assert len(es) == 1, es
p = json.loads(es[0]["detail"])
t = p["tables"]
assert t["events"] == {"before": 2, "after": 0, "digest": t["events"]["digest"]}, t["events"]
assert t["kv"]["before"] == 1 and t["kv"]["after"] == 0 and t["api_tokens"]["before"] == 1
text = open(sys.argv[2]).read()
body = text[:text.rstrip("\n").rfind("\n") + 1]
assert p["sha256"] == hashlib.sha256(body.encode()).hexdigest()
ev = "\n".join(l for l in text.splitlines()[1:-1] if json.loads(l)["table"] == "events")
assert t["events"]["digest"] == hashlib.sha256(ev.encode()).hexdigest()
print("ok")
PY
ok $(grep -qx ok "$D/check"; echo $?) "the audit log's proof: counts before/after per table, per-table digests and the archive's sha256 match ($(tail -1 "$D/check"))"
"$BIN" audit verify -c "$D/steward.lua" > "$D/v" 2>&1
ok $? "the audit chain still verifies ($(head -c 200 "$D/v"))"
s=$(api "$TOKEN" POST /v1/events '{"type":"work.x","tenant":"acme"}')
ok $([ "$s" = 403 ]; echo $?) "no new data for the offboarded tenant ($s)"
ev 'local r = require("steward.tenants.offboard").run("acme"); return r.phase' > "$D/out" 2>&1
"$BIN" audit --json -c "$D/steward.lua" | grep -c '"tenant.offboard"' > "$D/n"
ok $([ "$(cat "$D/out")" = done ] && [ "$(cat "$D/n")" = 1 ]; echo $?) "running it again changes nothing (one proof entry)"
daemon_stop
exit $fail
