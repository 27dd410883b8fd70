-- Conformance suite of steward.runtime.store.native, the SQL-level store interface. It runs against
-- the store named by STEWARD_TEST_STORE (default sqlite::memory:), so the same file checks
-- every backend: type round trips, NULLs, $n parameters, RETURNING, batch atomicity beside
-- concurrent units, many tasks, reads while writing, errors as nil, err, misuse raising.
local t = require "steward.tap"
local native = require "steward.runtime.store.native"
local json = require "steward.json"
local task = require "steward.task"

local URL = os.getenv("STEWARD_TEST_STORE")
if not URL or URL == "" then URL = "sqlite::memory:" end
t.diag("store: " .. URL)

local db, err = native.open(URL)
t.ok(db, "open " .. URL .. (err and (": " .. err) or ""))
if not db then return t.done() end
local backend = db:backend()
t.ok(backend == "sqlite" or backend == "postgres", "backend names itself: " .. tostring(backend))

-- Portable DDL: the few types that are spelled differently per backend.
local T = backend == "postgres"
  and { real = "DOUBLE PRECISION", blob = "BYTEA", autoid = "BIGSERIAL PRIMARY KEY", int = "BIGINT" }
  or { real = "REAL", blob = "BLOB", autoid = "INTEGER PRIMARY KEY", int = "INTEGER" }
math.randomseed(os.time())
local suffix = tostring(os.time()) .. "_" .. math.random(1e6)
local function tbl(name) return "conf_" .. name .. "_" .. suffix end
local created = {}
local function create(name, cols)
  local n = tbl(name)
  local res, cerr = db:exec("CREATE TABLE " .. n .. " (" .. cols .. ")")
  assert(res, cerr)
  created[#created + 1] = n
  return n
end

-- ---- misuse raises, naming the argument ----
t.raises(function() native.open(nil) end, "string expected", "open: a non-string url raises")
t.raises(function() db:exec(42) end, "db:exec: sql: string expected", "exec: a non-string sql raises")
t.raises(function() db:query(nil) end, "db:query: sql: string expected", "query: a non-string sql raises")
t.raises(function() db:exec("SELECT $1", {}) end, "db:exec: parameter 1: .*got table",
  "exec: a table parameter raises naming it")
t.raises(function() db:exec("SELECT $1, $2", 1, print) end, "parameter 2: .*got function",
  "exec: a function parameter raises naming it")
t.raises(function() db:batch("SELECT 1") end, "table expected", "batch: a non-table raises")
t.raises(function() db:batch({}) end, "non%-empty", "batch: an empty list raises")
t.raises(function() db:batch({ "SELECT 1" }) end, "statement 1: table", "batch: a non-table statement raises")
t.raises(function() db:batch({ { "SELECT 1" }, { 7 } }) end, "statement 2: sql: string expected",
  "batch: a non-string sql raises naming the statement")
t.raises(function() db:batch({ { "SELECT $1", {} } }) end, "statement 1: parameter 1",
  "batch: a table parameter raises naming statement and parameter")
t.raises(function() coroutine.wrap(function() return db:exec("SELECT 1") end)() end, "db:exec",
  "exec from a plain coroutine raises")

-- ---- errors from the database come back as nil, err ----
do
  local r, e = db:exec("SELEC nonsense")
  t.ok(r == nil and type(e) == "string" and #e > 0, "a syntax error is nil, err: " .. tostring(e))
  r, e = db:query("SELECT * FROM no_such_table_" .. suffix)
  t.ok(r == nil and type(e) == "string", "query of a missing table is nil, err")
  r, e = db:exec("SELECT $1 AS a", 1, 2)
  t.ok(r == nil and type(e) == "string", "too many parameters is nil, err")
  r, e = db:exec("SELECT 1; SELECT 2")
  t.ok(r == nil and type(e) == "string", "two statements in one exec is nil, err")
  local bad, berr = native.open("nosuch://x")
  t.ok(bad == nil and type(berr) == "string", "open of an unknown scheme is nil, err")
  if backend == "sqlite" then
    bad, berr = native.open("postgres://127.0.0.1:1/x") -- no server listens on port 1
    t.ok(bad == nil and type(berr) == "string" and berr:find("^postgres"), "postgres:// without a server is nil, err: " .. tostring(berr))
    bad, berr = native.open("sqlite::memory:?synchronous=sometimes")
    t.ok(bad == nil and berr:find("synchronous"), "a bad option is nil, err naming it")
    bad, berr = native.open("sqlite:/nonexistent-dir-" .. suffix .. "/x.db")
    t.ok(bad == nil and type(berr) == "string", "an unopenable path is nil, err: " .. tostring(berr))
  end
end

-- ---- type round trips ----
local types = create("types", "id " .. T.int .. " PRIMARY KEY, i " .. T.int .. ", r " .. T.real ..
  ", s TEXT, b " .. T.blob)
local function roundtrip(id, i, r, s, b)
  local res, e = db:exec("INSERT INTO " .. types .. " (id, i, r, s, b) VALUES ($1, $2, $3, $4, $5)",
    id, i, r, s, b and native.blob(b) or nil)
  assert(res, e)
  local rows = assert(db:query("SELECT i, r, s, b FROM " .. types .. " WHERE id = $1", id))
  return rows[1]
end
do
  local row = roundtrip(1, 42, 1.5, "hello", "\0\1\2\255")
  t.is(row.i, 42, "integer round trip")
  t.is(row.r, 1.5, "real round trip")
  t.is(row.s, "hello", "text round trip")
  t.is(row.b, "\0\1\2\255", "blob round trip keeps every byte")
  row = roundtrip(2, -9007199254740992, -0.25, "", "")
  t.is(row.i, -9007199254740992, "-2^53 is an exact integer")
  t.is(row.r, -0.25, "negative real")
  t.is(row.s, "", "empty text is not NULL")
  t.is(row.b, "", "empty blob is not NULL")
  -- PostgreSQL's text cannot hold a NUL byte (a blob can): there it is an error instead
  local text = backend == "postgres" and "ünïcødé ✓ no nul" or "ünïcødé ✓ \0 nul inside"
  row = roundtrip(3, 9007199254740992, 1e300, text, nil)
  t.is(row.i, 9007199254740992, "2^53 is an exact integer")
  t.is(row.r, 1e300, "large real")
  t.is(row.s, text, "UTF-8 text (with an embedded NUL where the backend allows)")
  if backend == "postgres" then
    local r, e = db:query("SELECT $1 AS s", "a\0b")
    t.ok(r == nil and e:find("NUL"), "postgres: text with a NUL byte is nil, err: " .. tostring(e))
  end
  local rows = assert(db:query("SELECT $1 + 0 AS x, $2 + 0 AS y", true, false))
  t.is(rows[1].x, 1, "true binds as 1")
  t.is(rows[1].y, 0, "false binds as 0")
  rows = assert(db:query("SELECT $1 * 2 AS x", 0.5))
  t.is(rows[1].x, 1, "a non-integral number binds as REAL")
  if backend == "sqlite" then
    rows = assert(db:query("SELECT typeof($1) AS a, typeof($2) AS b", 3, 3.25))
    t.is(rows[1].a, "integer", "an integral number binds as INTEGER")
    t.is(rows[1].b, "real", "a fraction binds as REAL")
  end
end

-- ---- NULL ----
do
  t.is(native.null, json.null, "native.null is json.null")
  local row = roundtrip(10, nil, json.null, native.null, nil)
  t.is(row.i, nil, "a nil parameter writes NULL, read back as an absent column")
  t.is(row.r, nil, "json.null writes NULL")
  t.is(row.s, nil, "native.null writes NULL")
  local n = 0
  for _ in pairs(row) do n = n + 1 end
  t.is(n, 0, "a row of NULLs is an empty table")
  local rows = assert(db:query("SELECT COUNT(*) AS n FROM " .. types .. " WHERE i IS NULL AND s IS NULL"))
  t.is(rows[1].n, 1, "NULLs are SQL NULLs")
end

-- ---- $n parameters ----
do
  local rows = assert(db:query("SELECT $2 AS two, $1 AS one, $1 AS again", "a", "b"))
  t.is_deeply(rows[1], { one = "a", two = "b", again = "a" }, "$n binds by number, out of order and repeated")
  local r, e = db:query("SELECT $1 AS a, $2 AS b", "only one")
  t.ok(r == nil and type(e) == "string", "too few parameters is nil, err: " .. tostring(e))
  rows = assert(db:query("SELECT $1 AS a, $2 AS b", "x", nil))
  t.is_deeply(rows[1], { a = "x" }, "a trailing nil parameter counts and binds NULL")
  rows = assert(db:query("SELECT 1 AS a WHERE 1 = 0"))
  t.is_deeply(rows, {}, "no rows is an empty array")
end

-- ---- exec results: changes, last_id, RETURNING ----
local items = create("items", "id " .. T.autoid .. ", name TEXT NOT NULL UNIQUE, qty " .. T.int .. " CHECK (qty >= 0)")
do
  local r = assert(db:exec("INSERT INTO " .. items .. " (name, qty) VALUES ($1, $2)", "apple", 3))
  t.is(r.changes, 1, "insert: changes = 1")
  t.is_deeply(r.rows, {}, "no RETURNING: rows is empty")
  if backend == "sqlite" then t.ok(type(r.last_id) == "number" and r.last_id >= 1, "last_id is the new rowid") end
  r = assert(db:exec("INSERT INTO " .. items .. " (name, qty) VALUES ($1, $2), ($3, $4) RETURNING id, name",
    "pear", 1, "plum", 0))
  t.is(r.changes, 2, "multi-row insert: changes = 2")
  t.is(#r.rows, 2, "RETURNING gives one row per inserted row")
  t.is(r.rows[2].name, "plum", "RETURNING columns by name")
  t.ok(r.rows[2].id > r.rows[1].id, "RETURNING ids")
  r = assert(db:exec("UPDATE " .. items .. " SET qty = qty + 1 WHERE qty < $1", 5))
  t.is(r.changes, 3, "update: changes counts rows")
  r = assert(db:exec("UPDATE " .. items .. " SET qty = 0 WHERE name = $1 RETURNING qty", "nothing"))
  t.is(r.changes, 0, "update of no row: changes = 0")
  t.is(r.last_id, nil, "no insert: no last_id")
  r = assert(db:exec("DELETE FROM " .. items .. " WHERE name = $1 RETURNING name", "pear"))
  t.is_deeply({ r.changes, r.rows }, { 1, { { name = "pear" } } }, "delete RETURNING")
  local r2, e, code = db:exec("INSERT INTO " .. items .. " (name, qty) VALUES ($1, 1)", "apple")
  t.ok(r2 == nil and e:find("UNIQUE") or (e or ""):find("unique"), "unique violation is nil, err: " .. tostring(e))
  t.is(code, "unique_violation", "unique violation has the portable code")
  r2, e, code = db:exec("INSERT INTO " .. items .. " (name, qty) VALUES ($1, -1)", "neg")
  t.is(code, "check_violation", "check violation code: " .. tostring(e))
  r2, e, code = db:exec("INSERT INTO " .. items .. " (name, qty) VALUES ($1, 1)", nil)
  t.is(code, "not_null_violation", "not-null violation code: " .. tostring(e))
  local rq, qe = db:query("INSERT INTO " .. items .. " (name, qty) VALUES ('via-query', 1)")
  t.ok(rq == nil and type(qe) == "string", "query is read-only: a write through it fails: " .. tostring(qe))
end

local function count(name, where, ...)
  local rows = assert(db:query("SELECT COUNT(*) AS n FROM " .. name .. (where or ""), ...))
  return rows[1].n
end

-- ---- batch: one atomic unit ----
local log = create("log", "id " .. T.int .. " PRIMARY KEY, who TEXT")
do
  local res = assert(db:batch({
    { "INSERT INTO " .. log .. " (id, who) VALUES ($1, $2)", 1, "a" },
    { "INSERT INTO " .. log .. " (id, who) VALUES ($1, $2) RETURNING who", 2, "b" },
    { "UPDATE " .. log .. " SET who = $1 WHERE id = $2", "A", 1 },
    { "SELECT who FROM " .. log .. " ORDER BY id" },
  }))
  t.is(#res, 4, "batch returns one result per statement")
  t.is(res[2].rows[1].who, "b", "batch result has RETURNING rows")
  t.is(res[3].changes, 1, "batch result has changes")
  t.is_deeply(res[4].rows, { { who = "A" }, { who = "b" } }, "a statement sees the unit's earlier writes")

  local r, e = db:batch({
    { "INSERT INTO " .. log .. " (id, who) VALUES ($1, $2)", 3, "c" },
    { "UPDATE " .. log .. " SET who = 'changed' WHERE id = 1" },
    { "INSERT INTO " .. log .. " (id, who) VALUES ($1, $2)", 1, "duplicate" },
    { "INSERT INTO " .. log .. " (id, who) VALUES ($1, $2)", 4, "d" },
  })
  t.is(r, nil, "a failing batch returns nil")
  t.like(e, "^statement 3: ", "the error names the failing statement")
  t.is(count(log), 2, "nothing of the failed unit is applied (no insert)")
  t.is(count(log, " WHERE who = 'changed'"), 0, "nothing of the failed unit is applied (no update)")

  -- A failing unit beside concurrent units: only it is rolled back.
  local hs = {}
  for i = 1, 30 do
    hs[i] = task.spawn(function()
      if i == 15 then
        return db:batch({
          { "INSERT INTO " .. log .. " (id, who) VALUES ($1, 'x')", 1000 },
          { "INSERT INTO " .. log .. " (id, who) VALUES ($1, 'x')", 2 }, -- duplicate
        })
      end
      return db:batch({
        { "INSERT INTO " .. log .. " (id, who) VALUES ($1, 'c')", 100 + i },
        { "INSERT INTO " .. log .. " (id, who) VALUES ($1, 'c')", 200 + i },
      })
    end)
  end
  local oks, bad = 0, nil
  for i = 1, 30 do
    local _, res2, e2 = hs[i]:join()
    if i == 15 then bad = { res2, e2 } elseif res2 then oks = oks + 1 end
  end
  t.is(oks, 29, "concurrent units commit")
  t.ok(bad[1] == nil and tostring(bad[2]):find("^statement 2"), "the failing unit fails alone: " .. tostring(bad[2]))
  t.is(count(log, " WHERE id = 1000"), 0, "the failing unit's first statement is rolled back")
  t.is(count(log, " WHERE who = 'c'"), 58, "every statement of the other units is applied")
  local trail = { { "INSERT INTO " .. log .. " (id, who) VALUES ($1, $2)", 5000, nil, n = 3 } }
  assert(db:batch(trail))
  t.is(count(log, " WHERE id = 5000 AND who IS NULL"), 1, "batch: n keeps a trailing nil parameter")
end

-- ---- many tasks at once (group commit) ----
local many = create("many", "id " .. T.int .. " PRIMARY KEY, task " .. T.int)
do
  local before = db:stats()
  local N = 300
  local hs, failures = {}, 0
  for i = 1, N do
    hs[i] = task.spawn(function()
      return db:exec("INSERT INTO " .. many .. " (id, task) VALUES ($1, $2) RETURNING id", i, i)
    end)
  end
  for i = 1, N do
    local ok, r = hs[i]:join()
    if not (ok and r and r.rows[1].id == i) then failures = failures + 1 end
  end
  t.is(failures, 0, N .. " tasks each get their own result")
  t.is(count(many), N, "all " .. N .. " rows committed")
  local after = db:stats()
  t.ok(after.units - before.units >= N, "stats count units")
  t.ok(after.commits - before.commits < N, "group commit: fewer commits (" ..
    (after.commits - before.commits) .. ") than units (" .. N .. ")")
  t.ok(after.max_batch_units > 1, "several units shared a transaction (max " .. after.max_batch_units .. ")")
  for _, k in ipairs({ "commits", "units", "statements", "last_batch_units", "max_batch_units",
                       "queue_depth", "commit_seconds_total", "reads", "failed_units" }) do
    if type(after[k]) ~= "number" then t.fail("stats." .. k .. " is a number") end
  end
  t.pass("stats has its numeric fields")
end

-- ---- reads while writing ----
do
  local counter = create("counter", "id " .. T.int .. " PRIMARY KEY")
  local writing = true
  local writer = task.spawn(function()
    for i = 1, 400 do
      local hs = {}
      for j = 1, 5 do
        local id = (i - 1) * 5 + j
        hs[j] = task.spawn(function() return assert(db:exec("INSERT INTO " .. counter .. " (id) VALUES ($1)", id)) end)
      end
      for j = 1, 5 do hs[j]:join() end
    end
    writing = false
  end)
  local reads, monotonic, last, during = 0, true, -1, 0
  while writing do
    local rows, e = db:query("SELECT COUNT(*) AS n FROM " .. counter)
    if not rows then t.fail("read while writing", e) break end
    reads = reads + 1
    if rows[1].n < last then monotonic = false end
    if writing then during = during + 1 end
    last = rows[1].n
  end
  writer:join()
  t.ok(during > 0, "reads completed while writes were going on (" .. during .. " reads)")
  t.ok(monotonic, "reads see committed writes only, never going back")
  t.is(count(counter), 2000, "the writes all landed")
end

-- ---- a cancelled task's write still commits ----
do
  local h = task.spawn(function()
    return db:exec("INSERT INTO " .. log .. " (id, who) VALUES (7777, 'cancelled')")
  end)
  h:cancel()
  local ok, why = h:join()
  t.ok(not ok and why == "cancelled", "the task ends cancelled")
  -- the next write on the same queue is acknowledged after it
  assert(db:exec("INSERT INTO " .. log .. " (id, who) VALUES (7778, 'after')"))
  t.is(count(log, " WHERE id = 7777"), 1, "the queued write of a cancelled task commits")
end

-- ---- close flushes pending writes ----
do
  local url = URL
  if backend == "sqlite" and URL:find(":memory:", 1, true) then
    url = "sqlite:" .. os.tmpname() .. "?synchronous=normal"
  end
  local d2 = assert(native.open(url))
  local name = tbl("close")
  assert(d2:exec("CREATE TABLE " .. name .. " (id " .. T.int .. " PRIMARY KEY)"))
  for i = 1, 100 do task.spawn(function() d2:exec("INSERT INTO " .. name .. " (id) VALUES ($1)", i) end) end
  t.is(d2:close(), true, "close returns true")
  t.is(d2:close(), true, "closing twice is harmless")
  t.raises(function() d2:exec("SELECT 1") end, "closed", "using a closed store raises")
  t.is(d2:backend(), "closed", "a closed store says so")
  local d3 = assert(native.open(url))
  local rows = assert(d3:query("SELECT COUNT(*) AS n FROM " .. name))
  t.is(rows[1].n, 100, "writes queued before close were committed by close")
  assert(d3:exec("DROP TABLE " .. name))
  d3:close()
  if url ~= URL then
    local path = url:match("^sqlite:([^?]+)")
    os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
  end
end

for i = #created, 1, -1 do assert(db:exec("DROP TABLE " .. created[i])) end
t.is(db:close(), true, "close")
t.done()
