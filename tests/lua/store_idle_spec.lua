-- The SQLite store gives an idle connection's caches back (prepared statements, page cache,
-- malloc's free pages): the writer and each reader after a quiet second. What matters is that
-- the store then works exactly as before: statements are prepared again, $n parameters still
-- map, and the next quiet period gives back again.
local t = require "steward.tap"
local native = require "steward.runtime.store.native"
local time = require "steward.time"

local dir = os.getenv("TMPDIR") or "/tmp"
local path = dir .. "/steward-idle-" .. tostring(os.time()) .. "-" .. math.random(1e6) .. ".db"
local db = assert(native.open("sqlite:" .. path))

local function remove()
  os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
end

-- Polls for n more idle releases than `since`, for at most 15 s.
local function releases_after(since, n)
  local deadline = time.monotonic() + 15
  while db:stats().idle_releases < since + n and time.monotonic() < deadline do time.sleep(0.05) end
  return db:stats().idle_releases - since
end

t.is(type(db:stats().idle_releases), "number", "stats has idle_releases")
assert(db:exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)"))
local ins = "INSERT INTO items (name, qty, id) VALUES ($2, $3, $1) RETURNING id, name, qty"
local sel = "SELECT name, qty FROM items WHERE qty >= $2 AND id <= $1 ORDER BY id"
local r = assert(db:exec(ins, 1, "one", 10))
t.is(r.rows[1].name, "one", "write before idling")
local rows = assert(db:query(sel, 5, 1))
t.is(#rows, 1, "read before idling (a reader started)")

local base = db:stats().idle_releases
t.ok(releases_after(base, 2) >= 2, "the writer and the reader both gave their caches back once idle")

r = assert(db:exec(ins, 2, "two", 20))
t.ok(r.rows[1].id == 2 and r.rows[1].name == "two" and r.rows[1].qty == 20,
  "the same write after the release: prepared again, parameters in their places")
rows = assert(db:query(sel, 5, 15))
t.ok(#rows == 1 and rows[1].name == "two" and rows[1].qty == 20,
  "the same read after the release: prepared again, parameters in their places")
local bad, err = db:exec("INSERT INTO items (id, name) VALUES ($1, $2)", 2, "dup")
t.ok(bad == nil and tostring(err):find("UNIQUE", 1, true), "errors are still reported after a release")

base = db:stats().idle_releases
t.ok(releases_after(base, 2) >= 2, "used again, both give back again at the next quiet second")
rows = assert(db:query("SELECT COUNT(*) AS n FROM items"))
t.is(rows[1].n, 2, "nothing lost across releases")

t.is(db:close(), true, "close")
remove()
t.done()
