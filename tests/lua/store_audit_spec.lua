-- steward.runtime.store.audit: the append-only audit log of admin-socket commands: appending,
-- listing newest first, filters, cursors, and argument checks. Store conformance suite.
local t = require "steward.tap"
local audit = require "steward.runtime.store.audit"
local crypto = require "steward.crypto"

local st, tmp = require("tests.support.test_store").open()
local sess = "s-" .. crypto.hex(crypto.random(6))

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

st:close()
if tmp then os.remove(tmp) end
t.done()
