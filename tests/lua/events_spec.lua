-- steward.runtime.events, the event log: validation, idempotent append, seq order, filters, cursors,
-- replay and purge. Part of the store conformance suite: set STEWARD_TEST_STORE to run it
-- against another backend (it tolerates events left by earlier runs).
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local json = require "steward.json"
local crypto = require "steward.crypto"
local util = require "steward.runtime.store.util"

local st, tmp = require("tests.support.test_store").open()
local run = crypto.hex(crypto.random(6))
local tenant = "t-" .. run

-- validate ------------------------------------------------------------------------------
local v, err = events.validate({ type = "alert.fired", data = { host = "a" }, time = "2024-05-01T10:00:00Z" })
t.ok(v, "a valid event validates")
t.is(v.time, util.parse_rfc3339("2024-05-01T10:00:00Z"), "RFC 3339 time becomes seconds")
t.like(v.id, "^%x+%-%x+%-7%x%x%x%-[89ab]%x%x%x%-%x+$", "a missing id becomes a UUIDv7")
v = events.validate({ type = "x", tenant = json.null, source = json.null, time = json.null, data = json.null, id = json.null })
t.ok(v and v.tenant == nil and type(v.time) == "number" and next(v.data) == nil and v.id,
  "json.null for an optional field means absent")

local function verr(ev, index)
  local r, e = events.validate(ev, index)
  if r then return "valid" end
  return e.field .. ": " .. e.reason .. (e.index and (" @" .. e.index) or "")
end
t.is(verr({}), "type: required", "type is required")
t.like(verr({ type = "Alert" }), "^type: dotted name", "type must be lower case")
t.like(verr({ type = "a..b" }), "^type: dotted name", "empty segment refused")
t.like(verr({ type = "a." }), "^type: dotted name", "trailing dot refused")
t.like(verr({ type = ("a"):rep(201) }), "^type: longer than 200", "type at most 200 bytes")
t.is(verr({ type = "a", id = "" }), "id: 1 to 200 printable bytes expected", "empty id refused")
t.is(verr({ type = "a", id = "a\nb" }), "id: 1 to 200 printable bytes expected", "control bytes in id refused")
t.is(verr({ type = "a", tenant = ("x"):rep(201) }), "tenant: longer than 200 bytes", "tenant at most 200")
t.is(verr({ type = "a", source = ("x"):rep(501) }), "source: longer than 500 bytes", "source at most 500")
t.like(verr({ type = "a", time = "yesterday" }), "^time: RFC 3339", "bad time string refused")
t.like(verr({ type = "a", time = "2024-02-30T00:00:00Z" }), "^time: date%-time out of range", "Feb 30 refused")
t.is(verr({ type = "a", data = { 1, 2 } }), "data: JSON object expected", "an array is not data")
t.is(verr({ type = "a", data = "x" }), "data: JSON object expected", "a string is not data")
t.is(verr({ type = "a", colour = "red" }, 3), "colour: unknown field @3", "unknown field named, with index")
t.is(verr("nope"), "(event): object expected", "a non-table event is refused")
local dec = assert(json.decode('{"type":"a.b","data":{},"tenant":null}'))
t.is(verr(dec), "valid", "a decoded JSON event validates (empty object data, null tenant)")

-- append ---------------------------------------------------------------------------------
local before = assert(events.last_seq(st))
local r = assert(events.append(st, {
  { id = "a-" .. run, type = "alert.fired", tenant = tenant, time = 1000, data = { n = 1 } },
  { id = "b-" .. run, type = "alert.resolved", tenant = tenant, time = 2000, data = { n = 2 } },
  { id = "c-" .. run, type = "deploy.done", tenant = tenant, time = 3000, source = "ci" },
}))
t.is(r.accepted, 3, "three accepted")
t.is(r.duplicates, 0, "no duplicates")
t.is_deeply(r.ids, { "a-" .. run, "b-" .. run, "c-" .. run }, "ids in order")
t.ok(r.seqs[1] > before and r.seqs[1] < r.seqs[2] and r.seqs[2] < r.seqs[3], "seqs increase in list order")
t.is(events.last_seq(st), r.seqs[3], "last_seq is the newest seq")

local r2 = assert(events.append(st, {
  { id = "b-" .. run, type = "alert.resolved", tenant = tenant, data = { n = 99 } },
  { id = "d-" .. run, type = "alert.fired", tenant = tenant, time = 4000 },
  { id = "d-" .. run, type = "alert.fired", tenant = tenant, time = 4000 },
}))
t.is(r2.accepted, 1, "re-append: one new")
t.is(r2.duplicates, 2, "a known id and a repeat within the list are duplicates")
t.is_deeply(r2.duplicate, { true, false, true }, "duplicate flags per event")
t.ok(r2.seqs[1] == nil and r2.seqs[2] > r.seqs[3] and r2.seqs[3] == nil, "seqs only for new events")
t.is(events.get(st, "b-" .. run).data.n, 2, "a duplicate does not overwrite the stored event")

local bad_r, bad_e = events.append(st, { { type = "ok.one", id = "e-" .. run }, { type = "BAD" } })
t.ok(bad_r == nil and bad_e.index == 2 and bad_e.field == "type", "one invalid event refuses the list, naming its index")
t.is(events.get(st, "e-" .. run), nil, "and nothing of that list is stored")
t.is(events.append(st, {}).accepted, 0, "an empty list appends nothing")

-- many events: crosses the INSERT chunk size, still one unit
local many = {}
for i = 1, 1234 do many[i] = { id = ("m-%s-%04d"):format(run, i), type = "bulk.item", tenant = tenant .. "-bulk", time = 5000 + i } end
local rm = assert(events.append(st, many))
t.is(rm.accepted, 1234, "1234 events appended in one call")
local ordered = true
for i = 2, 1234 do if not (rm.seqs[i] > rm.seqs[i - 1]) then ordered = false end end
t.ok(ordered, "their seqs follow list order across chunks")

-- get --------------------------------------------------------------------------------------
local e = events.get(st, "c-" .. run)
t.ok(e and e.type == "deploy.done" and e.source == "ci" and e.time == 3000 and e.tenant == tenant, "get returns the stored fields")
t.ok(type(e.received) == "number" and e.seq == r.seqs[3], "get returns seq and received")
t.is(events.get(st, "no-such-" .. run), nil, "get of an unknown id is nil")
t.raises(function() events.get(st, 5) end, "events.get: id: string expected", "get with a non-string id raises")

-- query ------------------------------------------------------------------------------------
local q = assert(events.query(st, { tenant = tenant }))
t.is(#q.events, 4, "query by tenant")
t.is(q.next_cursor, nil, "no cursor when everything fitted")
local function ids(list) local o = {} for i, x in ipairs(list) do o[i] = x.id:sub(1, 1) end return table.concat(o) end
t.is(ids(q.events), "abcd", "query returns seq order")
t.is(ids(assert(events.query(st, { tenant = tenant, type = "alert.*" })).events), "abd", "type prefix pattern")
t.is(ids(assert(events.query(st, { tenant = tenant, type = "alert.fired" })).events), "ad", "exact type")
t.is(ids(assert(events.query(st, { tenant = tenant, type = "alert" })).events), "", "exact type does not prefix-match")
t.is(ids(assert(events.query(st, { tenant = tenant, type = "*" })).events), "abcd", "* matches every type")
t.is(ids(assert(events.query(st, { tenant = tenant, since = 2000, ["until"] = 4000 })).events), "bc", "since inclusive, until exclusive")
t.is(ids(assert(events.query(st, { tenant = tenant, since = "1970-01-01T00:33:20Z" })).events), "bcd", "since as RFC 3339")
t.is(ids(assert(events.query(st, { tenant = tenant, after_seq = r.seqs[1], before_seq = r2.seqs[2] })).events), "bc", "seq bounds")
t.raises(function() events.query(st, { type = "Alert.*" }) end, "type", "a bad type pattern raises")
t.raises(function() events.query(st, { limit = 1001 }) end, "limit", "limit above 1000 raises")

local seen, cursor, pages = {}, nil, 0
repeat
  local page = assert(events.query(st, { tenant = tenant .. "-bulk", limit = 500, cursor = cursor }))
  pages = pages + 1
  for _, x in ipairs(page.events) do seen[#seen + 1] = x.seq end
  cursor = page.next_cursor
until not cursor
t.is(#seen, 1234, "cursors page through every event")
t.is(pages, 3, "in ceil(1234/500) pages")
t.ok(seen[1] == rm.seqs[1] and seen[1234] == rm.seqs[1234], "from the first to the last")
local nc, ncerr = events.query(st, { cursor = "garbage" })
t.ok(nc == nil and ncerr:find("cursor"), "a bad cursor is an error naming the cursor")

-- replay -----------------------------------------------------------------------------------
local n, last, inorder = 0, 0, true
for ev in events.replay(st, { tenant = tenant .. "-bulk", page = 100 }) do
  n = n + 1
  if ev.seq <= last then inorder = false end
  last = ev.seq
end
t.is(n, 1234, "replay visits every event, paging")
t.ok(inorder, "replay is in seq order")
n = 0
for _ in events.replay(st, { from_seq = rm.seqs[10], to_seq = rm.seqs[19], page = 3 }) do n = n + 1 end
t.is(n, 10, "replay from_seq..to_seq is inclusive")
n = 0
for _ in events.replay(st, { tenant = tenant, type = "alert.*" }) do n = n + 1 end
t.is(n, 3, "replay filters by type and tenant")

-- purge ------------------------------------------------------------------------------------
local purged = assert(events.purge(st, { before = 2500 }))
t.ok(purged >= 2, "purge removes events older than before")
t.is(ids(assert(events.query(st, { tenant = tenant })).events), "cd", "older events are gone, newer kept")
t.raises(function() events.purge(st, {}) end, "before", "purge without before raises")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
