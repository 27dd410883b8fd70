-- steward.runtime.store: opening, st:sql / st:batch, the default store, and schema migrations —
-- applied in order, once, each version atomically; a database newer than the code is refused.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local crypto = require "steward.crypto"

local url, tmp = os.getenv("STEWARD_TEST_STORE"), nil
if not url then
  tmp = os.tmpname()
  url = "sqlite:" .. tmp
end
local run = crypto.hex(crypto.random(6))
local mod = "test_" .. run
local tbl = "mig_" .. run

store.register_migrations(mod, {
  { version = 2, sql = "ALTER TABLE " .. tbl .. " ADD COLUMN note TEXT; INSERT INTO " .. tbl .. " (id, note) VALUES (2, 'v2;still one string')" },
  { version = 1, sql = { sqlite = "CREATE TABLE " .. tbl .. " (id INTEGER PRIMARY KEY, name TEXT)",
                         postgres = "CREATE TABLE " .. tbl .. " (id BIGINT PRIMARY KEY, name TEXT)" } },
})

local st = assert(store.open(url))
t.ok(store.is_store(st), "open returns a store")
t.ok(st:backend() == "sqlite" or st:backend() == "postgres", "backend names the backend")
local versions = assert(st:versions())
t.is(versions[mod], 2, "both versions applied, in order despite the list order")
t.ok(versions.events and versions.kv and versions.timers and versions.jobs and versions.decisions, "built-in modules migrated")
local rows = assert(st:sql("SELECT id, note FROM " .. tbl))
t.is(rows[1] and rows[1].note, "v2;still one string", "statements split on ; outside quotes")
local hist = assert(st:sql("SELECT version FROM schema_version WHERE module = $1 ORDER BY version", mod))
t.is(#hist, 2, "schema_version records each version")
t.ok(type(assert(st:sql("SELECT applied_at FROM schema_version WHERE module = $1", mod))[1].applied_at) == "number", "with applied_at")

-- st:sql and st:batch
local res = assert(st:sql("INSERT INTO " .. tbl .. " (id, name) VALUES ($1, $2)", 10, "ten"))
t.is(res.changes, 1, "st:sql of a write returns the exec result")
local br = assert(st:batch({ { "INSERT INTO " .. tbl .. " (id, name) VALUES ($1, $2)", 11, "eleven" },
  { "UPDATE " .. tbl .. " SET name = $1 WHERE id = $2", "TEN", 10 } }))
t.ok(#br == 2 and br[2].changes == 1, "batch returns a result per statement")
local ok, err = st:batch({ { "INSERT INTO " .. tbl .. " (id, name) VALUES ($1, $2)", 12, "twelve" },
  { "INSERT INTO " .. tbl .. " (id, name) VALUES ($1, $2)", 11, "dup" } })
t.ok(ok == nil and type(err) == "string", "a failing batch returns nil, err")
t.is(#assert(st:sql("SELECT id FROM " .. tbl .. " WHERE id = 12")), 0, "and none of it is applied")
t.raises(function() st:sql(5) end, "store:sql: query", "st:sql without a string raises")

-- reopening is idempotent
st:close()
st = assert(store.open(url))
t.is(#assert(st:sql("SELECT version FROM schema_version WHERE module = $1", mod)), 2, "reopening applies nothing again")
t.is(#assert(st:sql("SELECT id FROM " .. tbl .. " WHERE id = 2")), 1, "data migrations ran once")

-- default store
t.is(store.default(), nil, "no default store at first")
store.set_default(st)
t.is(store.default(), st, "set_default / default")
t.raises(function() store.set_default({}) end, "store.set_default", "set_default of a non-store raises")

-- registration misuse
t.raises(function() store.register_migrations("", { { version = 1, sql = "x" } }) end, "module", "empty module name raises")
t.raises(function() store.register_migrations("m", { { version = 0, sql = "x" } }) end, "version", "version 0 raises")
t.raises(function() store.register_migrations("m", { { version = 1, sql = "x" }, { version = 1, sql = "y" } }) end,
  "twice", "a repeated version raises")
t.raises(function() store.register_migrations("m", { { version = 1, sql = { sqlite = "x", mysql = "y" } } }) end, "backend",
  "an unknown backend raises")

-- a failing migration is atomic and reported
local bad = "bad_" .. run
store.register_migrations(bad, { { version = 1, sql = "CREATE TABLE " .. bad .. " (id INTEGER); THIS IS NOT SQL" } })
local st2, merr = store.open(url)
t.ok(st2 == nil and merr:find(bad, 1, true) and merr:find("migration 1", 1, true), "a failing migration names module and version")
t.is(#assert(st:sql("SELECT version FROM schema_version WHERE module = $1", bad)), 0, "and records nothing")
local created = pcall(function() return assert(st:sql("SELECT * FROM " .. bad)) end)
t.ok(not created, "and its first statement was rolled back")
store.register_migrations(bad, { { version = 1, sql = "CREATE TABLE " .. bad .. " (id INTEGER)" } })

-- a database newer than the code
store.register_migrations(mod, { { version = 1, sql = "SELECT 1" } })
local st3, nerr = store.open(url)
t.ok(st3 == nil, "a database with a newer version is refused")
t.ok(nerr and nerr:find(mod, 1, true) and nerr:find("version 2", 1, true) and nerr:find("version 1", 1, true),
  "the error names the module and both versions")

store.set_default(nil)
st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
