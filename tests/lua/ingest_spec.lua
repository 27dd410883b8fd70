-- The C ingest path (steward.runtime.ingest.native, bindings/ingest.c) against the reference
-- (steward.json's decode + steward.runtime.events.validate): whatever C accepts, the reference
-- accepts with the same values; the common shapes are taken by C; commits store each id once,
-- chunk large batches and tell duplicates apart. Runs on STEWARD_TEST_STORE's backend too.
local t = require "steward.tap"
local ingest = require "steward.runtime.ingest.native"
local events = require "steward.runtime.events"
local json = require "steward.json"
local crypto = require "steward.crypto"
local util = require "steward.runtime.store.util"

local st, tmp = require("tests.support.test_store").open()
local run = crypto.hex(crypto.random(6))
local NOW = 1700000000.25

local function opts(extra)
  local o = { max_depth = 64, max_values = 200000, max_batch = 10000, now = NOW,
              uuid = crypto.uuidv7, rfc3339 = util.parse_rfc3339 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The reference: what POST /v1/events' Lua path makes of body -> list of events | nil.
local function reference(body, o)
  local v = json.decode(body, { max_depth = o.max_depth, max_values = o.max_values })
  if type(v) ~= "table" then return nil end
  local list
  if v[1] ~= nil then list = v
  elseif json.is_array(v) or next(v) == nil then return nil
  else list = { v } end
  if #list > o.max_batch then return nil end
  local out = {}
  for i, raw in ipairs(list) do
    local ev = events.validate(raw, i - 1, o.now)
    if not ev then return nil end
    if o.tenant then
      if ev.tenant == nil then ev.tenant = o.tenant elseif ev.tenant ~= o.tenant then return nil end
    end
    out[i] = ev
  end
  return out
end

-- accepted bodies ---------------------------------------------------------------------------
local taken = {
  { '{"type":"a.b"}', "a bare event" },
  { '[{"type":"a.b","id":"x1","tenant":"t","source":"s","time":12.5,"data":{"k":[1,2,{"z":null}]}}]', "every field" },
  { '{"type":"a","time":"2024-05-01T10:00:00Z","data":{}}', "an RFC 3339 time, empty data" },
  { '{"type":"a","tenant":null,"source":null,"time":null,"data":null,"id":null}', "nulls mean absent" },
  { '{"type":"a_b-c.d9","data":{"s":"\\u00e9\\u0000x","n":-0.5,"big":12345678901234}}', "escapes and numbers" },
  { '{"type":"a","data":{"x":123456789012345678901234567890}}', "an integer no int64 holds" },
  { ' [ { "type" : "a" , "data" : { "k" : [ ] } } ] ', "whitespace everywhere" },
}
for _, c in ipairs(taken) do
  local b, why = ingest.prepare(c[1], opts())
  t.ok(b, "C takes " .. c[2] .. (b and "" or (": " .. tostring(why))))
  t.ok(reference(c[1], opts()), "the reference takes " .. c[2])
end

-- declined bodies: each is the reference path's to answer ------------------------------------
local declined = {
  { '', "an empty body" }, { 'nope', "not JSON" }, { '[]', "an empty array" }, { '{}', "an empty object" },
  { '"x"', "a string" }, { '[1]', "a number as an event" }, { '[[]]', "an array as an event" },
  { '{"type":"a","type":"b"}', "a duplicate key" }, { '{"type":"a","colour":"red"}', "an unknown field" },
  { '{"type":"A"}', "an upper-case type" }, { '{"type":"a..b"}', "an empty segment" },
  { '{"type":".a"}', "a leading dot" }, { '{"type":"a."}', "a trailing dot" },
  { '{"type":"' .. ("a"):rep(201) .. '"}', "a type over 200 bytes" }, { '{"id":"x"}', "no type" },
  { '{"type":5}', "a number as type" }, { '{"type":"a\\u0000"}', "NUL in type" },
  { '{"type":"a","id":""}', "an empty id" }, { '{"type":"a","id":"a\\nb"}', "a control byte in id" },
  { '{"type":"a","id":"a\\u007fb"}', "DEL in id" }, { '{"type":"a","id":' .. '"' .. ("i"):rep(201) .. '"}', "a long id" },
  { '{"type":"a","id":7}', "a number as id" },
  { '{"type":"a","tenant":"' .. ("t"):rep(201) .. '"}', "a long tenant" }, { '{"type":"a","tenant":1}', "a number as tenant" },
  { '{"type":"a","source":"' .. ("s"):rep(501) .. '"}', "a long source" }, { '{"type":"a","source":[]}', "an array as source" },
  { '{"type":"a","time":-1}', "a time before 1970" }, { '{"type":"a","time":253402300800}', "a time after 9999" },
  { '{"type":"a","time":1e400}', "an infinite time" }, { '{"type":"a","time":"yesterday"}', "a bad time string" },
  { '{"type":"a","time":"2024-02-30T00:00:00Z"}', "Feb 30" }, { '{"type":"a","time":true}', "a boolean time" },
  { '{"type":"a","data":[1]}', "an array as data" }, { '{"type":"a","data":[]}', "an empty array as data" },
  { '{"type":"a","data":"x"}', "a string as data" }, { '{"type":"a","data":{"x":1e400}}', "an infinite number in data" },
  { '{"type":"a"} x', "trailing bytes" }, { '{"type":"a"}\0', "a NUL byte after the event" },
  { '{"type":"a","id":"x\\ud83d\\ude00"}', "a surrogate pair (left to the reference)" },
  { '{"type":"a","tenant":7}', "a number as tenant" }, { '{"type":"a","data":01}', "a leading zero" },
  { '{"type":"a","data":{"a":1},"data":{"b":2}}', "data twice" }, { '{"type":"a","source":{}}', "an object as source" }, { '{"type":"a","data":{"s":"\\ud800"}}', "a lone surrogate" },
  { '{"type":"a","data":' .. ("["):rep(70) .. ("]"):rep(70) .. '}', "too deep" },
  { '[' .. ('{"type":"a"},'):rep(10) .. '{"type":"a"}]', "over max_batch", { max_batch = 10 } },
  { '{"type":"a","tenant":"other"}', "another tenant's event", { tenant = "mine" } },
}
for _, c in ipairs(declined) do
  local b = ingest.prepare(c[1], opts(c[3]))
  t.is(b, nil, "C declines " .. c[2])
end
t.ok(ingest.prepare('{"type":"a","tenant":"mine"}', opts({ tenant = "mine" })), "a tenant's own event is taken")

-- random bodies: C never accepts what the reference refuses ---------------------------------
local seed = tonumber(os.getenv("INGEST_SEED") or "") or os.time()
math.randomseed(seed)
local pool = {
  type = { '"a.b"', '"x"', '"A"', '"a..b"', '""', '5', 'null', '"a-b_c.d"', '"a.b."' },
  id = { '"id1"', '""', '"a b"', '"a\\tb"', '7', 'null', '"' .. ("z"):rep(200) .. '"', '"' .. ("z"):rep(201) .. '"' },
  tenant = { '"t"', 'null', '1', '"' .. ("t"):rep(200) .. '"', '"' .. ("t"):rep(201) .. '"', '"mine"' },
  source = { '"s"', 'null', '{}', '"' .. ("s"):rep(500) .. '"', '"' .. ("s"):rep(501) .. '"' },
  time = { '1', '0', '-1', '1.5', '253402300799', '253402300800', '"2024-05-01T10:00:00Z"', '"2024-05-01T10:00:00"',
           '"bad"', 'null', 'true', '1e308' },
  data = { '{}', 'null', '[]', '[1]', '{"a":1}', '"x"', '{"a":{"b":[true,false,null,"\\u00e9"]}}', '{"a":1e400}' },
  colour = { '"red"' },
}
local fields = { "type", "id", "tenant", "source", "time", "data", "colour" }
local agree, taken_n = true, 0
for _ = 1, 400 do
  local items = {}
  for i = 1, math.random(1, 3) do
    local parts = {}
    for _, f in ipairs(fields) do
      if math.random() < (f == "type" and 0.9 or f == "colour" and 0.03 or 0.5) then
        local vals = pool[f]
        parts[#parts + 1] = '"' .. f .. '":' .. vals[math.random(#vals)]
      end
    end
    items[i] = "{" .. table.concat(parts, ",") .. "}"
  end
  local body = #items == 1 and math.random() < 0.5 and items[1] or "[" .. table.concat(items, ",") .. "]"
  local o = opts(math.random() < 0.2 and { tenant = "mine" } or nil)
  local b = ingest.prepare(body, o)
  if b then
    taken_n = taken_n + 1
    if not reference(body, o) then
      agree = false
      t.diag("C took what the reference refuses: " .. body)
    end
  end
end
t.ok(agree, "400 random bodies: C accepted nothing the reference refuses (seed " .. seed .. ")")
t.ok(taken_n > 0, "and it took some of them (" .. taken_n .. ")")

-- commits --------------------------------------------------------------------------------------
local db = st.db
local function commit(body, o)
  local b = assert(ingest.prepare(body, opts(o)))
  local acc, dup = ingest.commit(db, b)
  assert(acc, dup)
  return b, acc, dup
end

local body = json.encode({
  { id = "i1-" .. run, type = "ingest.one", tenant = "t1", source = "spec", time = 1234.5, data = { n = 1, s = "é", l = json.array({}) } },
  { id = "i2-" .. run, type = "ingest.two", data = { nested = { x = true } } },
  { id = "i1-" .. run, type = "ingest.one" },
  { type = "ingest.three" },
})
local b, acc, dup = commit(body)
t.is(acc, 3, "three new events accepted")
t.is(dup, 1, "the repeated id within the batch is a duplicate")
local resp = json.decode(b:response())
t.is(resp.accepted, 3, "response: accepted")
t.is(resp.duplicates, 1, "response: duplicates")
t.is(#resp.ids, 4, "response: an id per event, in order")
t.is(resp.ids[1], "i1-" .. run, "response: the client's id")
t.is(resp.ids[3], "i1-" .. run, "response: the duplicate's id")
t.like(resp.ids[4], "^%x+%-%x+%-7%x%x%x%-[89ab]%x%x%x%-%x+$", "response: a missing id becomes a UUIDv7")

local e1 = assert(events.get(st, "i1-" .. run))
t.is(e1.type, "ingest.one", "stored: type")
t.is(e1.tenant, "t1", "stored: tenant")
t.is(e1.source, "spec", "stored: source")
t.is(e1.time, 1234.5, "stored: time")
t.is(e1.received, NOW, "stored: received")
t.is(e1.depth, 0, "stored: depth 0")
t.is_deeply(e1.data, { n = 1, s = "é", l = {} }, "stored: data")
t.ok(json.is_array(e1.data.l), "stored: an empty array stays an array")
local e2 = assert(events.get(st, "i2-" .. run))
t.is(e2.tenant, nil, "stored: no tenant is NULL")
t.is(e2.time, NOW, "stored: no time is now")

local raw = '{"id":"raw-' .. run .. '","type":"ingest.raw","data": {"b":2, "a":0.10000000000000001,"big":123456789012345678901234567890}}'
commit(raw)
local row = assert(st.db:query("SELECT data FROM events WHERE id = $1", "raw-" .. run))[1]
t.is(row.data, '{"b":2, "a":0.10000000000000001,"big":123456789012345678901234567890}',
  "data is stored as the exact bytes the client sent for it (order, digits, spaces)")

local fresh = b:fresh(json.decode)
t.is(#fresh, 3, "fresh: the three new events")
t.is(fresh[1].id, "i1-" .. run, "fresh: in batch order")
t.is(fresh[1].seq, e1.seq, "fresh: with their seq")
t.ok(fresh[1].seq < fresh[2].seq and fresh[2].seq < fresh[3].seq, "fresh: seqs increase in batch order")
t.is_deeply(fresh[2].data, { nested = { x = true } }, "fresh: data decoded")
t.is(fresh[3].type, "ingest.three", "fresh: the event without id")
local types = b:types()
t.is(#types, 3, "types: the distinct types of the new events")
t.is(types[1], "ingest.one", "types: in first-seen order")
t.is(types[3], "ingest.three", "types: all of them")

local _, acc2, dup2 = commit(body)
t.is(acc2, 1, "the same body again: only the event without id is new")
t.is(dup2, 3, "the same body again: the rest are duplicates")
local n = assert(st.db:query("SELECT COUNT(*) AS n FROM events WHERE id = $1", "i1-" .. run))[1].n
t.is(n, 1, "a duplicate id is stored once")

-- A batch over one INSERT's chunk (500 rows) commits whole.
local big = {}
for i = 1, 1201 do big[i] = { id = "big-" .. run .. "-" .. i, type = "ingest.big", data = { i = i } } end
local bb, bacc, bdup = commit(json.encode(big))
t.is(bacc, 1201, "1201 events in three INSERT chunks accepted")
t.is(bdup, 0, "no duplicates among them")
local bf = bb:fresh(json.decode)
t.is(bf[1201].data.i, 1201, "the last chunk's events are there")
t.ok(bf[500].seq < bf[501].seq, "seq order crosses the chunk boundary")

local tb = commit('{"type":"ingest.tenant","id":"tn-' .. run .. '"}', { tenant = "mine" })
t.is(tb:fresh(json.decode)[1].tenant, "mine", "a tenant token's event without tenant gets the token's tenant")

t.raises(function() ingest.commit(db, tb) end, "committed already", "a batch commits once")
local unc = assert(ingest.prepare('{"type":"a"}', opts()))
t.raises(function() unc:response() end, "not committed", "no response before the commit")

st:close()
if tmp then os.remove(tmp) end
t.done()
