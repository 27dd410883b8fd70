-- PostgreSQL-specific checks of the store backend, run by tests/e2e/store_pg.t against its
-- throwaway server: URL forms, pool_size and pool_timeout, error codes, a server stopped and
-- started again under the store's feet. Env: PG_URL, PG_PORT, PG_STOP_CMD, PG_START_CMD.
local t = require "steward.tap"
local native = require "steward.runtime.store.native"
local task = require "steward.task"
local time = require "steward.time"
local proc = require "steward.proc"

local URL, PORT = assert(os.getenv("PG_URL")), assert(os.getenv("PG_PORT"))
local mono = time.monotonic

-- ---- URL forms ----
local function try(url)
  local db, err = native.open(url)
  if not db then return nil, err end
  local rows, qerr = db:query("SELECT current_database() AS d, current_user AS u")
  db:close()
  if not rows then return nil, qerr end
  return rows[1].d .. "/" .. rows[1].u
end
t.is(try(URL), "steward/postgres", "URI form postgres://user@host:port/db")
t.is(try((URL:gsub("^postgres://", "postgresql://"))), "steward/postgres", "URI form postgresql://")
t.is(try("postgres:host=127.0.0.1 port=" .. PORT .. " user=postgres dbname=steward pool_size=1"),
  "steward/postgres", "keyword/value form postgres:host=... dbname=... (with pool_size)")
t.is(try("postgres:"), "steward/postgres", "bare postgres: takes everything from PG* variables")
t.is(try(URL .. "?application_name=x&pool_size=2&pool_timeout=250ms"), "steward/postgres",
  "steward's options are taken out, libpq's passed on")
local bad, berr = native.open(URL .. "?pool_size=0")
t.ok(bad == nil and berr:find("pool_size"), "a bad pool_size is nil, err naming it: " .. tostring(berr))
bad, berr = native.open(URL .. "?no_such_option=1")
t.ok(bad == nil and berr:find("no_such_option"), "libpq's own errors come back: " .. tostring(berr))
local t0 = mono()
bad, berr = native.open("postgres://postgres@127.0.0.1:1/steward")
t.ok(bad == nil and type(berr) == "string" and mono() - t0 < 5, "an unreachable server fails the open: " .. tostring(berr))

-- ---- error codes ----
local db = assert(native.open(URL .. "?pool_size=3"))
t.is(db:backend(), "postgres", "backend is postgres")
assert(db:exec("CREATE TABLE pg_parent (id BIGINT PRIMARY KEY)"))
assert(db:exec("CREATE TABLE pg_child (id BIGINT PRIMARY KEY, parent BIGINT REFERENCES pg_parent (id), " ..
  "n BIGINT NOT NULL CHECK (n > 0), x BIGINT, EXCLUDE USING btree (x WITH =))"))
assert(db:exec("INSERT INTO pg_parent (id) VALUES (1)"))
local _, e, code = db:exec("INSERT INTO pg_child (id, parent, n) VALUES (1, 99, 1)")
t.is(code, "foreign_key_violation", "23503 is foreign_key_violation: " .. tostring(e))
_, e, code = db:exec("INSERT INTO pg_child (id, parent, n) VALUES (1, 1, 0)")
t.is(code, "check_violation", "23514 is check_violation")
_, e, code = db:exec("INSERT INTO pg_child (id, parent, n) VALUES (1, 1, NULL)")
t.is(code, "not_null_violation", "23502 is not_null_violation")
assert(db:exec("INSERT INTO pg_child (id, parent, n, x) VALUES (1, 1, 1, 5)"))
_, e, code = db:exec("INSERT INTO pg_child (id, parent, n) VALUES (1, 1, 1)")
t.is(code, "unique_violation", "23505 is unique_violation")
_, e, code = db:exec("INSERT INTO pg_child (id, parent, n, x) VALUES (2, 1, 1, 5)")
t.is(code, "integrity_constraint_violation", "another 23xxx (exclusion) is integrity_constraint_violation")
_, e, code = db:query("SELECT * FROM no_such_table")
t.ok(code == "error" and e:find("no_such_table"), "other errors are 'error' with the server's message")
local r = assert(db:exec("INSERT INTO pg_parent (id) VALUES (2), (3) RETURNING id"))
t.is(r.last_id, 3, "an INSERT returning an integer id reports the last as last_id")
r = assert(db:query("SELECT 2::int2 AS a, 3::int4 AS b, 4::int8 AS c, 1.5::float4 AS d, 2.25::numeric AS e, " ..
  "true AS f, 'x'::varchar AS g, '\\x00ff'::bytea AS h"))
t.is_deeply(r[1], { a = 2, b = 3, c = 4, d = 1.5, e = 2.25, f = 1, g = "x", h = "\0\255" },
  "column types map by OID")
r = assert(db:query("SELECT $1::float8 AS inf, $2 AS nul", math.huge, "a"))
t.is(r[1].inf, math.huge, "infinity round trips")
local dropped = pcall(function()
  assert(db:exec("DROP TABLE pg_child")); assert(db:exec("DROP TABLE pg_parent"))
end)
t.ok(dropped, "tables dropped")
db:close()

-- ---- pool_size limits concurrency; pool_timeout fails a waiting request with busy ----
do
  local p2 = assert(native.open(URL .. "?pool_size=2&application_name=pooltest"))
  local watch = assert(native.open(URL .. "?pool_size=1"))
  local function sleepers(n, secs)
    local hs = {}
    for i = 1, n do hs[i] = task.spawn(function() return p2:query("SELECT pg_sleep($1) AS s", secs) end) end
    return hs
  end
  local hs = sleepers(4, 0.4)
  -- wait (polling the server) until the pool's queries are running
  local running, deadline = 0, mono() + 10
  repeat
    local rows = assert(watch:query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = 'pooltest' " ..
      "AND state = 'active'"))
    running = rows[1].n
  until running >= 2 or mono() > deadline
  local rows = assert(watch:query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = 'pooltest'"))
  t.is(rows[1].n, 2, "pool_size=2 opens two connections")
  t.is(running, 2, "two queries run at once, the others wait")
  t0 = mono()
  local oks = 0
  for i = 1, 4 do if select(2, hs[i]:join()) then oks = oks + 1 end end
  t.is(oks, 4, "every queued request runs once a connection frees")
  t.ok(mono() - t0 > 0.3, "the second pair waited for the first")
  p2:close()

  local p1 = assert(native.open(URL .. "?pool_size=1&pool_timeout=200ms"))
  local h = task.spawn(function() return p1:query("SELECT pg_sleep(1.5) AS s") end)
  t0 = mono()
  local res, err, c = p1:query("SELECT 1 AS one")
  local waited = mono() - t0
  t.ok(res == nil and c == "busy", "a request waiting longer than pool_timeout fails with busy: " .. tostring(err))
  t.ok(waited >= 0.15 and waited < 1.2, "after about pool_timeout (" .. string.format("%.2f", waited) .. "s)")
  t.ok(err and err:find("pool_timeout"), "the message names pool_timeout")
  t.ok(select(2, h:join()), "the running request is not disturbed")
  p1:close()
  watch:close()
end

-- ---- the server stops and starts again ----
do
  local st = assert(native.open(URL .. "?pool_size=2&application_name=outage"))
  local watch = assert(native.open(URL .. "?pool_size=1"))
  assert(st:exec("CREATE TABLE outage (id BIGINT PRIMARY KEY)"))
  local reader = task.spawn(function() return st:query("SELECT pg_sleep(60) AS s") end)
  local writer = task.spawn(function() return st:exec("INSERT INTO outage (id) SELECT 1 FROM pg_sleep(60)") end)
  local deadline = mono() + 10
  repeat
    local rows = assert(watch:query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = 'outage' " ..
      "AND query LIKE '%pg_sleep(60)%'"))
  until rows[1].n >= 2 or mono() > deadline
  watch:close()
  t0 = mono()
  local stopped = proc.run({ cmd = { "bash", "-c", os.getenv("PG_STOP_CMD") } })
  t.ok(stopped and stopped.code == 0, "PostgreSQL stopped (immediate)")
  local _, res, err, c = reader:join()
  t.ok(res == nil and c == "unavailable", "a read in flight fails with unavailable: " .. tostring(err))
  _, res, err, c = writer:join()
  t.ok(res == nil and c == "unavailable" and err:find("not committed"),
    "a write in flight fails with unavailable, saying it was not committed: " .. tostring(err))
  t.ok(mono() - t0 < 5, "quickly")
  local t1 = mono()
  res, err, c = st:query("SELECT 1 AS one")
  t.ok(res == nil and c == "unavailable", "a new request while the server is down fails with unavailable: " .. tostring(err))
  res, err, c = st:exec("INSERT INTO outage (id) VALUES (2)")
  t.ok(res == nil and c == "unavailable", "so does a write")
  t.ok(mono() - t1 < 1, "at once, without queueing")
  local started = proc.run({ cmd = { "bash", "-c", os.getenv("PG_START_CMD") } })
  t.ok(started and started.code == 0, "PostgreSQL started again")
  local ok, tries
  deadline, tries = mono() + 20, 0
  repeat
    tries = tries + 1
    ok = st:exec("INSERT INTO outage (id) VALUES (3)")
    if not ok then time.sleep(0.05) end -- retrying a request, as a client would
  until ok or mono() > deadline
  t.ok(ok, "after the restart the same store reconnects and writes succeed (" .. tries .. " tries)")
  local rows = st:query("SELECT id FROM outage ORDER BY id")
  t.is_deeply(rows, { { id = 3 } }, "and reads; nothing of the failed writes was applied")
  assert(st:exec("DROP TABLE outage"))
  st:close()
end

t.done()
