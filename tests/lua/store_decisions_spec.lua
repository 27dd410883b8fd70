-- steward.runtime.store.decisions: recording policy decisions and reading them back by filter and
-- cursor; purge by age. Store conformance suite.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local decisions = require "steward.runtime.store.decisions"
local json = require "steward.json"
local crypto = require "steward.crypto"

local st, tmp = require("tests.support.test_store").open()
local pol = "p-" .. crypto.hex(crypto.random(6))

local id1 = assert(decisions.record(st, {
  policy = pol, version = 3, event_id = "ev-1", outcome = "ok", result = { paged = "alice" },
  duration = 0.012, side_effects = { { kind = "http", url = "https://pager" } }, time = 1000,
}))
local id2 = assert(decisions.record(st, { policy = pol, version = "3", input = { x = 1 }, outcome = "error",
  error = "boom", side_effects = {}, time = 2000 }))
local id3 = assert(decisions.record(st, { policy = pol, outcome = "timeout", event_id = "ev-1", time = 3000 }))
t.ok(id1 < id2 and id2 < id3, "record returns increasing ids")

local d = assert(decisions.get(st, id1))
t.ok(d.policy == pol and d.version == "3" and d.event_id == "ev-1" and d.outcome == "ok", "get returns the fields")
t.is_deeply(d.result, { paged = "alice" }, "result is JSON")
t.is(d.side_effects[1].url, "https://pager", "side_effects is a JSON array")
t.is(d.duration, 0.012, "duration")
d = assert(decisions.get(st, id2))
t.ok(json.is_array(d.side_effects) and d.error == "boom" and d.input.x == 1, "an empty side_effects stays an array; error and input kept")
t.is(decisions.get(st, -1), nil, "get of an unknown id is nil")

local function ids(r) local o = {} for i, x in ipairs(r.decisions) do o[i] = x.id end return o end
t.is_deeply(ids(assert(decisions.query(st, { policy = pol }))), { id1, id2, id3 }, "query by policy, oldest first")
t.is_deeply(ids(assert(decisions.query(st, { policy = pol, event_id = "ev-1" }))), { id1, id3 }, "by event_id")
t.is_deeply(ids(assert(decisions.query(st, { policy = pol, outcome = "error" }))), { id2 }, "by outcome")
t.is_deeply(ids(assert(decisions.query(st, { policy = pol, since = 2000, ["until"] = 3000 }))), { id2 }, "by time")
local p1 = assert(decisions.query(st, { policy = pol, limit = 2 }))
local p2 = assert(decisions.query(st, { policy = pol, limit = 2, cursor = p1.next_cursor }))
t.ok(#p1.decisions == 2 and p1.next_cursor and #p2.decisions == 1 and p2.decisions[1].id == id3 and not p2.next_cursor,
  "cursor pages")

local function list_ids(l) local o = {} for i, x in ipairs(l) do o[i] = x.id end return o end
t.is_deeply(list_ids(assert(decisions.latest(st, { policy = pol, n = 2 }))), { id2, id3 }, "latest: the n newest, oldest of them first")
t.is_deeply(list_ids(assert(decisions.latest(st, { policy = pol, outcome = "error" }))), { id2 }, "latest by outcome")
t.is_deeply(list_ids(assert(decisions.latest(st, { policy = pol, event_id = "ev-1" }))), { id1, id3 }, "latest by event_id")
t.raises(function() decisions.latest(st, { n = 0 }) end, "decisions.latest: n", "latest: n out of range names n")
t.raises(function() decisions.latest(st, { policy = 5 }) end, "decisions.latest: policy", "latest: a bad filter names the field")

t.ok(assert(decisions.purge(st, { before = 2500 })) >= 2, "purge removes old decisions")
t.is_deeply(ids(assert(decisions.query(st, { policy = pol }))), { id3 }, "newer ones stay")

t.raises(function() decisions.record(st, { outcome = "ok" }) end, "policy", "policy is required")
t.raises(function() decisions.record(st, { policy = pol }) end, "outcome", "outcome is required")
t.raises(function() decisions.record(st, { policy = pol, outcome = "ok", side_effects = { a = 1 } }) end,
  "side_effects", "side_effects must be an array")
t.raises(function() decisions.record(st, { policy = pol, outcome = "ok", result = { f = print } }) end,
  "result", "an unencodable result raises naming it")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
