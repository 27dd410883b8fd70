-- steward.runtime.store.audit: the append-only, hash-chained audit log: appending, listing newest
-- first, filters, cursors, argument checks; the chain from a genesis after entries written
-- before it existed, concurrent appends, checkpoints, verify naming a changed entry.
-- Store conformance suite (tests/e2e/store_pg.t runs it on PostgreSQL).
local t = require "steward.tap"
local audit = require "steward.runtime.store.audit"
local audit_chain = require "steward.runtime.store.audit_chain"
local audit_key = require "steward.runtime.store.audit_key"
local crypto = require "steward.crypto"
local task = require "steward.task"

local st, tmp = require("tests.support.test_store").open()
local sess = "s-" .. crypto.hex(crypto.random(6))

-- Two entries as a store migrated from before the chain holds them: no prev_hash, no hash.
for id = 1, 2 do
  assert(st:exec("INSERT INTO audit (id, time, source, uid, command, outcome) VALUES ($1, 500, 'repl', 0, 'old()', 'ok')", id))
end

local a = assert(audit.append(st, { source = "repl", session = sess, uid = 1000, role = "admin",
  command = "status()", outcome = "ok", time = 1000 }))
local b = assert(audit.append(st, { source = "repl", session = sess, uid = 1000, role = "admin",
  command = "error('x')", outcome = "error", detail = "repl:1: x", time = 2000 }))
local c = assert(audit.append(st, { source = "repl", session = sess, uid = 65534, role = "readonly",
  command = "attach", outcome = "refused", time = 3000 }))
t.ok(a < b and b < c, "append returns increasing ids")

local function ids(r) local o = {} for i, x in ipairs(r.entries) do o[i] = x.id end return o end
t.is_deeply(ids(assert(audit.list(st, { session = sess }))), { c, b, a }, "list: newest first")
local e = assert(audit.list(st, { session = sess, outcome = "error" })).entries[1]
t.ok(e and e.command == "error('x')" and e.detail == "repl:1: x" and e.uid == 1000 and e.role == "admin"
  and e.source == "repl" and e.time == 2000, "an entry keeps every field")
t.is_deeply(ids(assert(audit.list(st, { session = sess, uid = 65534 }))), { c }, "filter by uid")
t.is_deeply(ids(assert(audit.list(st, { session = sess, since = 2000, ["until"] = 3000 }))), { b }, "filter by time")
local p1 = assert(audit.list(st, { session = sess, limit = 2 }))
local p2 = assert(audit.list(st, { session = sess, limit = 2, cursor = p1.next_cursor }))
t.ok(#p1.entries == 2 and p1.next_cursor and #p2.entries == 1 and p2.entries[1].id == a and not p2.next_cursor,
  "cursor pages backwards")
t.is_deeply({ audit.list(st, { cursor = "nope" }) }, { nil, "audit.list: cursor: not a cursor this function returned" },
  "a foreign cursor is refused")

local big = string.rep("x", 70000)
local id = assert(audit.append(st, { source = "repl", session = sess, command = big, outcome = "ok" }))
local got = assert(audit.list(st, { session = sess, limit = 1 })).entries[1]
t.ok(got.id == id and #got.command < 70000 and got.command:find("cut at 64 KiB", 1, true), "a huge command is cut, marked")

t.raises(function() audit.append(st, { source = "repl", outcome = "ok" }) end, "audit.append: command: non%-empty string expected",
  "command is required")
t.raises(function() audit.append(st, { source = "repl", command = "x", outcome = "ok", uid = 1.5 }) end,
  "audit.append: uid: integer expected", "uid must be an integer")
t.raises(function() audit.append(st, "x") end, "audit.append: entry: table expected", "entry must be a table")
t.raises(function() audit.list(st, { limit = 0 }) end, "audit.list: limit: integer from 1 to 1000", "limit is checked")
t.ok(audit.update == nil and audit.delete == nil, "the module offers no way to change or delete entries")

-- ---- the chain ----
local first = assert(st:query("SELECT id, prev_hash FROM audit WHERE hash IS NOT NULL ORDER BY id LIMIT 1"))[1]
t.ok(first.id == 3 and first.prev_hash == audit.GENESIS, "the chain starts after the older entries, at the genesis")
local rep = assert(audit_chain.verify(st))
t.ok(rep.ok and rep.legacy == 2 and rep.first == 3 and rep.last == id and rep.checked == id - 2,
  "verify: the chained entries check, the older ones are counted")

local handles = {}
for i = 1, 20 do
  handles[i] = task.spawn(function()
    return audit.append(st, { source = "http", actor = "token:t" .. i, command = "test.concurrent", outcome = "ok",
      target = tostring(i), after = audit.digest({ i = i }) })
  end)
end
local got_ids, seen = {}, {}
for i = 1, 20 do
  local ok, eid = handles[i]:join()
  if ok and eid and not seen[eid] then seen[eid] = true; got_ids[#got_ids + 1] = eid end
end
t.is(#got_ids, 20, "20 concurrent appends: 20 distinct ids")
rep = assert(audit_chain.verify(st))
t.ok(rep.ok and rep.last == id + 20, "after concurrent appends the chain is whole and linear")

local sk = crypto.ed25519_keypair()
local key = assert(audit_key.from_pem((crypto.ed25519_pem(sk))))
local other = assert(audit_key.from_pem((crypto.ed25519_pem((crypto.ed25519_keypair())))))
local cp = assert(audit_chain.checkpoint(st, key))
local row = assert(st:query("SELECT target, key_id, sig, prev_hash FROM audit WHERE id = $1", cp))[1]
t.ok(row.target == tostring(cp - 1) and row.key_id == key.id and audit_key.verify(key, row.prev_hash, row.sig),
  "a checkpoint signs the hash of the entry before it, with the key's id")
t.is(audit_chain.checkpoint_due(st, key), false, "no second checkpoint while the head is one")
rep = assert(audit_chain.verify(st, { keys = { key } }))
t.ok(rep.ok and rep.checkpoints == 1 and rep.last_checkpoint == cp, "verify checks the checkpoint's signature")
rep = assert(audit_chain.verify(st, { keys = { other } }))
t.ok(not rep.ok and rep.problem.id == cp and rep.problem.reason:match("^checkpoint signed by key"),
  "verify with another key names the checkpoint")
local pub_only = assert(audit_key.from_pem(key.public_pem))
t.ok(pub_only.secret == nil and pub_only.id == key.id, "a public PEM gives a key that verifies, with the same id")
t.raises(function() audit_chain.checkpoint(st, pub_only) end, "a private audit key expected", "signing needs the private key")

local victim = id + 5
assert(st:exec("UPDATE audit SET outcome = 'error' WHERE id = $1", victim))
rep = assert(audit_chain.verify(st, { keys = { key } }))
t.ok(not rep.ok and rep.problem.id == victim and rep.problem.reason:match("content does not match"),
  "an edited field: verify names the entry")
assert(st:exec("UPDATE audit SET outcome = 'ok' WHERE id = $1", victim))
rep = assert(audit_chain.verify(st, { keys = { key }, from = victim }))
t.ok(rep.ok and rep.first == victim, "restored, it verifies again; --from starts there")

local lines = {}
t.is(assert(audit_chain.export(st, {}, function(l) lines[#lines + 1] = l end)), cp - 2, "export: every chained entry")
t.ok(audit.hash(lines[1]) == lines[2]:match('^{"prev_hash":"(%x+)"') and lines[1]:match('^{"prev_hash":"0+","id":3,'),
  "export: each line's SHA-256 is the next line's prev_hash")
t.is(audit.digest({ b = 1, a = { 2, 3 } }), audit.digest({ a = { 2, 3 }, b = 1 }), "digest: key order does not matter")
t.is(audit.digest("x"), crypto.hex(crypto.sha256("x")), "digest: a string is hashed as it is")

st:close()
if tmp then os.remove(tmp) end
t.done()
