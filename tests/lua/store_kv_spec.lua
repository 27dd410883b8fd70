-- steward.runtime.store.kv: JSON values, versions and compare-and-set, TTL expiry (with explicit
-- `now` values instead of sleeping), deletes and prefix listing. Store conformance suite.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local kvmod = require "steward.runtime.store.kv"
local json = require "steward.json"
local crypto = require "steward.crypto"

local st, tmp = require("tests.support.test_store").open()
local kv = kvmod.ns(st, "test-" .. crypto.hex(crypto.random(6)))
local other = kvmod.ns(st, kv.name .. "-other")

t.is(kv:get("missing"), nil, "get of an absent key is nil")
local v1 = assert(kv:put("a", { n = 1, tags = json.array() }))
t.is(v1, 1, "first put is version 1")
local val, ver = kv:get("a")
t.is_deeply(val, { n = 1, tags = json.array() }, "get returns the JSON value")
t.ok(json.is_array(val.tags), "an empty array stays an array")
t.is(ver, 1, "and its version")
t.is(kv:put("a", "two"), 2, "plain put bumps the version")
t.is(other:get("a"), nil, "namespaces are separate")

-- compare-and-set
local r, err = kv:put("a", 3, { version = 1 })
t.ok(r == nil and err == "conflict", "put with a stale version is a conflict")
t.is(kv:get("a"), "two", "and changes nothing")
t.is(kv:put("a", 3, { version = 2 }), 3, "put with the current version succeeds")
r, err = kv:put("a", 4, { version = 0 })
t.ok(r == nil and err == "conflict", "version 0 (only if absent) conflicts with a live key")
t.is(kv:put("b", true, { version = 0 }), 1, "version 0 creates an absent key")
r, err = kv:put("nope", 1, { version = 5 })
t.ok(r == nil and err == "conflict", "CAS on an absent key conflicts")

-- TTL
local now = 1e9
t.is(kv:put("t", "temp", { ttl = "10s", now = now }), 1, "put with a ttl")
t.is(kv:get("t", { now = now + 9 }), "temp", "visible before expiry")
t.is(kv:get("t", { now = now + 10 }), nil, "gone at expiry")
r, err = kv:put("t", "x", { version = 1, now = now + 11 })
t.ok(r == nil and err == "conflict", "CAS against an expired version conflicts")
local vt = kv:put("t", "again", { version = 0, now = now + 11 })
t.ok(vt and vt > 1, "version 0 succeeds over an expired key, and versions keep growing")
t.is(kv:get("t", { now = now + 1e6 }), "again", "a put without ttl clears the expiry")
kv:put("t2", 1, { ttl = 5, now = now })
t.is(kv:purge_expired({ now = now + 6 }), 1, "purge_expired removes expired keys")
t.raises(function() kv:put("t", 1, { ttl = "soon" }) end, "ttl", "a bad ttl raises naming ttl")

-- delete
t.is(kv:delete("b", { version = 7 }), nil, "delete with a wrong version fails")
t.is(select(2, kv:delete("b", { version = 7 })), "conflict", "with conflict")
t.is(kv:delete("b", { version = 1 }), true, "delete with the right version")
t.is(kv:get("b"), nil, "the key is gone")
t.is(kv:delete("b"), false, "delete of an absent key is false")

-- list
for _, k in ipairs { "app/1", "app/2", "app/3", "apple", "b/1", "APP/x" } do kv:put(k, k) end
local items, nxt = kv:list({ prefix = "app/" })
local function keys(list) local o = {} for i, x in ipairs(list) do o[i] = x.key end return table.concat(o, " ") end
t.is(keys(items), "app/1 app/2 app/3", "prefix lists the matching keys, case-sensitively")
t.is(nxt, nil, "no next page")
items, nxt = kv:list({ prefix = "app", limit = 2 })
t.is(keys(items), "app/1 app/2", "limit")
t.is(nxt, "app/2", "next names the key to continue after")
items = kv:list({ prefix = "app", after = nxt, limit = 2 })
t.is(keys(items), "app/3 apple", "the following page")
t.is(items[1].value, "app/3", "list returns values")
t.is(keys(kv:list()), "APP/x a app/1 app/2 app/3 apple b/1 t", "list without prefix returns every live key, bytewise order")

-- misuse
t.raises(function() kv:get(1) end, "kv.get: key", "a non-string key raises")
t.raises(function() kv:put("k") end, "kv.put: value", "put without a value raises")
t.raises(function() kv:put("k", 1, { version = -1 }) end, "version", "a negative version raises")
t.raises(function() kvmod.ns(st, "") end, "kv.ns: name", "an empty namespace raises")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
