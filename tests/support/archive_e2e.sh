# The body of tests/e2e/archive_sqlite.t and archive_pg.t (sourced after daemon.sh; the store
# is STEWARD_TEST_STORE's): events and decisions archived by a running daemon, read back in
# order by events.replay, checked by `steward archive verify`, and a flipped byte found.
S="$D/var/steward.sock"
ev() { "$BIN" eval --socket "$S" --json - > "$D/out" 2> "$D/err"; }
show() { echo "# out: $(head -c 800 "$D/out")"; echo "# err: $(head -c 800 "$D/err")"; }

cat > "$D/policies/hold.lua" <<'LUA'
-- fails on held.* events: they become dead letters, which archival must keep in the store
return { on = { "held.*" }, handle = function() error("held on purpose", 0) end }
LUA
cat > "$D/policies/idle.lua" <<'LUA'
-- matches nothing this test sends: its dispatch cursor stays where it started, at seq 0
return { on = { "never.*" }, handle = function() end }
LUA
daemon_config 'limits = { retry_attempts = 1, retry_base = "10ms" },'
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon starts"; exit 1; }
echo "1..15"

post() { curl -s -o "$D/post" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @"$1" "http://127.0.0.1:$PORT/v1/events"; }
batch() { # batch FILE FROM TO TYPE: a JSON array of events i = FROM..TO
    /usr/bin/python3 -c 'import json,sys; a,b,t=int(sys.argv[1]),int(sys.argv[2]),sys.argv[3]
print(json.dumps([{"id":"ev-%d"%i,"type":t,"tenant":"acme" if i%3 else "beta","data":{"i":i,"note":"usage sample %d for the archive test"%i}} for i in range(a,b+1)]))' "$2" "$3" "$4" > "$1"; }

batch "$D/a.json" 1 300 usage.recorded
[ "$(post "$D/a.json")" = 202 ]; ok $? "300 old events ingested"
# The cutoff lies between the two batches: the first is older than it, the second younger.
echo 'local t = require("steward.time").now()
local d = require "steward.runtime.store.decisions"
local st = require("steward.runtime.store").default()
for i = 1, 40 do assert(d.record(st, { policy = "demo", outcome = "ok", input = { i = i }, time = t - 1 })) end
return { cutoff = t }' | ev
cutoff=$(jx 'd[0]["cutoff"]' < "$D/out")
[ -n "$cutoff" ]; ok $? "the cutoff taken, 40 decisions recorded before it" || show
echo '[{"id":"held-1","type":"held.one"}]' > "$D/h.json"
post "$D/h.json" >/dev/null
batch "$D/b.json" 301 320 usage.recorded
[ "$(post "$D/b.json")" = 202 ]; ok $? "a held event and 20 new events ingested"
dead() { curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/dead-letters" | jx 'len(d["dead_letters"]) >= 1' >/dev/null; }
wait_for 20 dead; ok $? "the held event became a dead letter"

# The idle policy's cursor (0) holds nothing back: it has no event to handle. The held event
# (seq 301) is still needed: a run stops below it.
echo "return require('steward.archive').run{ before = $cutoff, segment = 120 }" | ev
jx 'd[0]["events"] == 300 and d[0]["decisions"] == 40 and len(d[0]["files"]) == 4' < "$D/out" >/dev/null
ok $? "archive.run moved 300 events (3 files) and 40 decisions (1 file)" || show
echo "return require('steward.archive').run{ before = require('steward.time').now() + 1, decisions = false }" | ev
jx 'd[0]["events"] == 0 and "dead letter" in d[0]["held"]["events"]' < "$D/out" >/dev/null
ok $? "a later run keeps the dead-lettered event and everything after it in the store" || show
echo 'return require("steward.runtime.store").default().db:query("SELECT seq FROM dispatch_cursor WHERE policy = $1", "idle")[1].seq + 0' | ev
jx 'd[0] >= 300' < "$D/out" >/dev/null; r=$? # (a cluster's leader may have moved it further itself)
ok $r "the idle policy's cursor moved up past what is archived (its recovery skips the archive)"; [ $r -eq 0 ] || show

echo 'local ev = require "steward.runtime.events"
local st = require("steward.runtime.store").default()
local seqs, prev, gaps = 0, 0, 0
for e in require("steward.events").replay{ from_seq = 1 } do
  seqs = seqs + 1; if e.seq ~= prev + 1 then gaps = gaps + 1 end; prev = e.seq
end
local beta = 0
for e in require("steward.events").replay{ tenant = "beta", type = "usage.*" } do beta = beta + 1 end
return { stored = ev.count(st), replayed = seqs, last = prev, gaps = gaps, beta = beta }' | ev
jx 'd[0]["stored"] == 21' < "$D/out" >/dev/null; ok $? "the store holds only the 21 newer events" || show
jx 'd[0]["replayed"] == 321 and d[0]["gaps"] == 0 and d[0]["last"] == 321' < "$D/out" >/dev/null
ok $? "events.replay from seq 1 yields all 321 events in seq order, none missing" || show
jx 'd[0]["beta"] == 106' < "$D/out" >/dev/null; ok $? "replay's filters apply to the archived part (tenant and type)" || show

"$BIN" archive list -c "$D/steward.lua" --json > "$D/list" 2>"$D/err"
jx 'all(s["bytes"] * 3 < s["raw"] for s in d["segments"]) and len(d["segments"]) == 4' < "$D/list" >/dev/null
ok $? "the segments are compressed (under a third of their JSON)" || { echo "# $(head -c 600 "$D/list")"; }
"$BIN" archive verify -c "$D/steward.lua" > "$D/verify" 2>&1; ok $? "steward archive verify passes" || sed 's/^/# /' "$D/verify"
"$BIN" audit -c "$D/steward.lua" --json > "$D/audit" 2>&1
grep -q '"command":"archive.run"' "$D/audit" && grep -q 'events-000000000000001-000000000000120.jsonl.zst count=120 sha256=' "$D/audit"
ok $? "each run is in the audit log with its files, counts and digests" || head -c 600 "$D/audit"

f=$(ls "$D/var/archive"/events-*-000000000000240.jsonl.zst)
printf 'X' | dd of="$f" bs=1 seek=200 conv=notrunc 2>/dev/null
"$BIN" archive verify -c "$D/steward.lua" > "$D/verify" 2>&1
[ $? -eq 1 ] && grep -q "FAILED  $f: corrupt archive" "$D/verify"; ok $? "a flipped byte: verify fails, naming the file" || sed 's/^/# /' "$D/verify"
echo 'local n = 0; for _ in require("steward.events").replay{} do n = n + 1 end; return n' | ev
grep -q "$(basename "$f"): corrupt archive" "$D/err" && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null
ok $? "replay over it fails with an error naming the file; the daemon keeps serving" || show
daemon_stop
exit $fail
