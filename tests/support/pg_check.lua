-- steward.pg against a real server (run by tests/e2e/pg_binding.t). Env: PG_URL, PG_PORT,
-- PG_STOP_CMD, PG_START_CMD.
local t = require "steward.tap"
local pg = require "steward.pg"
local json = require "steward.json"
local task = require "steward.task"
local time = require "steward.time"
local proc = require "steward.proc"

local URL = assert(os.getenv("PG_URL"), "PG_URL")
local mono = time.monotonic

-- Polls cond() (a query, typically) until it holds or 10 s pass: waiting for the server to
-- reach a state, not for a fixed time.
local function eventually(cond)
  local deadline = mono() + 10
  repeat
    local v = cond()
    if v then return v end
    time.sleep(0.02)
  until mono() > deadline
  return false
end

-- ---- connecting ----
local db, err, code = pg.connect(URL, { connect_timeout = "5s" })
t.ok(db, "pg.connect returns a connection: " .. tostring(err))
t.is(db:status(), "ok", "status ok")
t.ok(type(db:backend_pid()) == "number" and db:backend_pid() > 0, "backend_pid is the server's pid")
local me = db:query("SELECT pg_backend_pid() AS pid")
t.is(me[1].pid, db:backend_pid(), "backend_pid matches pg_backend_pid()")

local bad, berr, bcode = pg.connect("postgres://postgres@127.0.0.1:1/steward")
t.ok(bad == nil and berr:find("pg.connect") and bcode == "08001",
  "a refused connection gives nil, err, 08001: " .. tostring(berr))
local kv = pg.connect("host=127.0.0.1 port=" .. os.getenv("PG_PORT") .. " user=postgres dbname=steward")
t.ok(kv and kv:query("SELECT 1 AS x")[1].x == 1, "a keyword=value DSN works")
kv:close()
kv:close()
t.is(kv:status(), "closed", "close is idempotent; status closed")
t.raises(function() kv:query("SELECT 1") end, "closed", "a query on a closed connection raises")

-- ---- type mapping ----
local r = assert(db:query([[SELECT
  1::int2 AS i2, '-2147483648'::int4 AS i4, 9007199254740992::int8 AS i8,
  9223372036854775807::int8 AS i8big, '-9007199254740993'::int8 AS i8neg, 26::oid AS o,
  1.5::float4 AS f4, 0.1::float8 AS f8, 'Infinity'::float8 AS finf,
  12345.678::numeric AS num, 1234567890.1234567890123::numeric AS numlong, 'NaN'::numeric AS numnan,
  true AS bt, false AS bf,
  '{"a":[1,2,{"b":null}]}'::json AS j, '{"k":"v","n":3}'::jsonb AS jb, '[]'::jsonb AS jempty,
  'héllo'::text AS tx, 'v'::varchar(3) AS vc, 'nm'::name AS nm,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
  '\x00ff41'::bytea AS by,
  '2024-03-05 06:07:08.25+02'::timestamptz AS tz, '2024-03-05 06:07:08'::timestamp AS ts,
  '1970-01-02'::date AS d, 'infinity'::timestamptz AS tinf,
  ARRAY[1,2,3] AS arr, '10.0.0.1'::inet AS ip, NULL::text AS nul, NULL::int AS nuli]]))
local row = r[1]
t.is(row.i2, 1, "int2 -> number")
t.is(row.i4, -2147483648, "int4 -> number")
t.is(row.i8, 9007199254740992, "int8 up to 2^53 -> number")
t.is(row.i8big, "9223372036854775807", "int8 beyond 2^53 -> string")
t.is(row.i8neg, "-9007199254740993", "negative int8 beyond -2^53 -> string")
t.is(row.o, 26, "oid -> number")
t.is(row.f4, 1.5, "float4 -> number")
t.is(row.f8, 0.1, "float8 -> number")
t.is(row.finf, math.huge, "float8 Infinity -> math.huge")
t.is(row.num, 12345.678, "numeric that fits -> number")
t.is(row.numlong, "1234567890.1234567890123", "numeric with more than 15 digits -> string")
t.is(row.numnan, "NaN", "numeric NaN -> string")
t.is(row.bt, true, "bool true")
t.is(row.bf, false, "bool false")
t.is_deeply(row.j, { a = { 1, 2, { b = json.null } } }, "json -> decoded table (null inside is json.null)")
t.is_deeply(row.jb, { k = "v", n = 3 }, "jsonb -> decoded table")
t.is(json.encode(row.jempty), "[]", "an empty jsonb array stays an array")
t.is(row.tx, "héllo", "text -> string (UTF-8)")
t.is(row.vc, "v", "varchar -> string")
t.is(row.nm, "nm", "name -> string")
t.is(row.u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid -> string")
t.is(row.by, "\0\255A", "bytea -> raw bytes")
t.is(row.tz, 1709611628.25, "timestamptz -> epoch seconds (offset applied)")
t.is(row.ts, 1709618828, "timestamp without zone -> epoch seconds, read as UTC")
t.is(row.d, 86400, "date -> epoch seconds of its midnight UTC")
t.is(row.tinf, math.huge, "infinity timestamp -> math.huge")
t.is(row.arr, "{1,2,3}", "arrays -> their text form")
t.is(row.ip, "10.0.0.1", "other types -> their text form")
t.ok(row.nul == pg.null and row.nuli == pg.null, "NULL -> pg.null")
t.ok(pg.null == json.null, "pg.null is steward.json.null")
t.is(r.n, 1, "rows.n")
t.is(r.command, "SELECT 1", "rows.command")
t.is(r.affected, 1, "rows.affected for a SELECT is its row count")
t.is(r.columns[1], "i2", "rows.columns lists the columns in order")
local z = db:query("SET TIME ZONE 'America/New_York'")
t.ok(z, "a session time zone can be set")
t.is(db:query("SELECT '2024-03-05 06:07:08.25+02'::timestamptz AS tz")[1].tz, 1709611628.25,
  "timestamptz is the same instant whatever the session time zone")
db:query("SET TIME ZONE 'UTC'")

-- ---- parameters ----
local p = assert(db:query(
  "SELECT $1::int AS a, $2::text IS NULL AS isnull, $3::bool AS b, $4::float8 AS f, $5::text AS s, " ..
  "$6::jsonb AS j, $7::int8 AS big, $8::text IS NULL AS pnull",
  42, nil, true, 2.5, "it's", { x = { 1, 2 } }, 4294967296, pg.null))
t.is(p[1].a, 42, "number parameter")
t.is(p[1].isnull, true, "nil parameter -> NULL")
t.is(p[1].b, true, "boolean parameter")
t.is(p[1].f, 2.5, "fractional number parameter")
t.is(p[1].s, "it's", "string parameter (no quoting needed)")
t.is_deeply(p[1].j, { x = { 1, 2 } }, "table parameter -> json")
t.is(p[1].big, 4294967296, "large integer parameter")
t.is(p[1].pnull, true, "pg.null parameter -> NULL")
local tn = db:query("SELECT $1 AS a, $2 AS b", nil, "x")
t.ok(tn and tn[1].a == pg.null and tn[1].b == "x", "a nil before other parameters keeps their positions")

-- ---- commands, affected, errors ----
assert(db:query("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, meta jsonb)"))
local ins = db:query("INSERT INTO items VALUES ($1, $2, $3), ($4, $5, NULL)", 1, "a", { tag = "t" }, 2, "b")
t.ok(ins and ins.command == "INSERT 0 2" and ins.affected == 2 and ins.n == 0,
  "INSERT: command and affected")
local upd = db:query("UPDATE items SET name = name || '!' WHERE id >= $1", 1)
t.ok(upd.command == "UPDATE 2" and upd.affected == 2, "UPDATE 2")
local ret = db:query("DELETE FROM items WHERE id = 2 RETURNING id, name")
t.ok(ret.affected == 1 and ret.n == 1 and ret[1].name == "b!", "DELETE ... RETURNING gives rows")
local e1, m1, c1 = db:query("SELECT * FROM missing_table")
t.ok(e1 == nil and c1 == "42P01", "missing relation -> 42P01")
t.is(m1, 'SQLSTATE 42P01: relation "missing_table" does not exist', "the error message names the SQLSTATE")
local _, m2, c2 = db:query("INSERT INTO items VALUES (1, 'dup')")
t.ok(c2 == "23505" and m2:find("duplicate key") and m2:find("Key %(id%)=%(1%)"),
  "unique violation -> 23505 with the detail: " .. tostring(m2))
local _, _, c3 = db:query("SELECT 1/0")
t.is(c3, "22012", "division by zero -> 22012")
local _, m4, c4 = db:query("SELEC 1")
t.ok(c4 == "42601" and m4:find("syntax error"), "syntax error -> 42601")
local _, _, c5 = db:query("SELECT $1::int", "nope")
t.is(c5, "22P02", "a bad parameter value -> 22P02")
t.ok(db:query("SELECT 1 AS ok")[1].ok == 1, "the connection works after errors")
local e6 = db:query("SELECT 1 AS x", "extra")
t.is(e6, nil, "more parameters than the statement uses is an error")

-- ---- misuse raises ----
t.raises(function() db:query(42) end, "sql: string expected", "sql must be a string")
t.raises(function() db:query("SELECT $1", function() end) end, "parameter 1", "a function parameter raises naming it")
t.raises(function() db:query("SELECT $1", "a\0b") end, "NUL", "a string with NUL raises")
t.raises(function() db:notification("soon") end, "timeout", "a bad timeout raises naming it")
t.raises(function() pg.connect(nil) end, "dsn: string expected", "pg.connect needs a dsn")
t.raises(function() pg.pool(URL, { size = 0 }) end, "size", "pool size must be >= 1")
t.raises(function() db:transaction("x") end, "fn: function expected", "transaction needs a function")
t.raises(function() db:listen(7) end, "channel", "listen needs a channel name")

-- ---- transactions ----
local tr = { db:transaction(function(tx)
  assert(tx:query("INSERT INTO items VALUES (10, 'ten')"))
  assert(tx:query("INSERT INTO items VALUES (11, 'eleven')"))
  return "done", 2
end) }
t.is_deeply(tr, { "done", 2 }, "transaction returns fn's results")
t.is(db:query("SELECT count(*) AS n FROM items WHERE id IN (10, 11)")[1].n, 2, "committed")
t.is(db:transaction(function() end), true, "a transaction whose fn returns nothing gives true")
local rb, rerr = db:transaction(function(tx)
  assert(tx:query("INSERT INTO items VALUES (12, 'twelve')"))
  error("boom")
end)
t.ok(rb == nil and tostring(rerr):find("boom"), "an error in fn -> nil, err")
t.is(db:query("SELECT count(*) AS n FROM items WHERE id = 12")[1].n, 0, "and it was rolled back")
local rb2, rerr2, rcode2 = db:transaction(function(tx)
  assert(tx:query("INSERT INTO items VALUES (13, 'x')"))
  local ok, e, c = tx:query("INSERT INTO items VALUES (13, 'dup')")
  if not ok then return nil, e, c end
end)
t.ok(rb2 == nil and rcode2 == "23505" and rerr2:find("duplicate"), "fn returning nil, err rolls back and returns them")
t.is(db:query("SELECT count(*) AS n FROM items WHERE id = 13")[1].n, 0, "nothing of it committed")
local rb3, _, rcode3 = db:transaction(function(tx)
  tx:query("INSERT INTO items VALUES (14, 'x')")
  tx:query("SELECT 1/0") -- failure ignored by fn
  return true
end)
t.ok(rb3 == nil and rcode3 == "25P02", "COMMIT of an aborted transaction -> nil, err, 25P02")
t.is(db:query("SELECT count(*) AS n FROM items WHERE id = 14")[1].n, 0, "nothing committed")
t.ok(db:query("SELECT 1 AS x"), "the connection is usable after a rolled-back transaction")

-- ---- one command at a time per connection ----
local t0 = mono()
local hs = {}
for i = 1, 3 do
  hs[i] = task.spawn(function() return db:query("SELECT $1::int AS i, pg_sleep(0.1)", i) end)
end
local order = {}
for i = 1, 3 do
  local ok, rows = hs[i]:join()
  order[i] = ok and rows and rows[1].i
end
t.is_deeply(order, { 1, 2, 3 }, "concurrent calls on one connection queue and all succeed")
t.ok(mono() - t0 >= 0.29, "they ran one after another on the one session")

-- ---- LISTEN / NOTIFY ----
local l = assert(pg.connect(URL))
t.is(l:listen("jobs"), true, "listen")
t.is(l:listen('Odd "Name"'), true, "listen on a channel that needs quoting")
local waiter = task.spawn(function() return l:notification(5) end)
t.is(db:notify("jobs", "hello"), true, "notify")
local okw, note = waiter:join()
t.ok(okw and note and note.channel == "jobs" and note.payload == "hello", "the notification arrives at a waiting task")
t.is(note and note.pid, db:backend_pid(), "with the sender's pid")
db:query("NOTIFY jobs, 'from sql'")
local n2 = l:notification("2s")
t.ok(n2 and n2.payload == "from sql", "NOTIFY in SQL is delivered")
db:query([[SELECT pg_notify('Odd "Name"', 'q')]])
local n3 = l:notification(2)
t.ok(n3 and n3.channel == 'Odd "Name"' and n3.payload == "q", "quoted channel names work")
db:transaction(function(tx) tx:notify("jobs", "one"); tx:notify("jobs", "two") end)
local a, b = l:notification(2), l:notification(2)
t.ok(a and b and a.payload == "one" and b.payload == "two", "notifications from a transaction arrive in order")
t0 = mono()
local none, terr = l:notification("150ms")
t.ok(none == nil and terr == "timeout" and mono() - t0 >= 0.14, "notification times out with nil, \"timeout\"")
t.is(l:unlisten("jobs"), true, "unlisten")
db:notify("jobs", "ignored")
t.is(select(2, l:notification("100ms")), "timeout", "no notification after unlisten")
local lw = task.spawn(function() return l:notification() end)
local lq = l:query("SELECT 7 AS x")
t.ok(lq and lq[1].x == 7, "a query runs while another task waits for a notification")
db:notify('Odd "Name"', "late")
local okl, nl = lw:join()
t.ok(okl and nl and nl.payload == "late", "and the waiting task still gets its notification")
local cw = task.spawn(function() return l:notification() end)
t.ok(cw:cancel(), "a task waiting for a notification can be cancelled")
t.ok(l:query("SELECT 1 AS x"), "the connection is fine after that")

-- ---- pools ----
local pool = pg.pool(URL, { size = 2, wait_timeout = "5s" })
t.raises(function() pool:listen("x") end, "pg.connect", "a pool cannot listen")
local pr = pool:query("SELECT $1::int + 1 AS v", 41)
t.is(pr and pr[1].v, 42, "pool:query")
t.is(pool:transaction(function(tx) return tx:query("SELECT 5 AS five")[1].five end), 5, "pool:transaction")
t0 = mono()
local peak = 0
local ph = {}
for i = 1, 4 do
  ph[i] = task.spawn(function()
    local rows = pool:query("SELECT pg_backend_pid() AS pid, pg_sleep(0.2)")
    peak = math.max(peak, pool:stats().open)
    return rows and rows[1].pid
  end)
end
local pids = {}
for i = 1, 4 do
  local ok, pid = ph[i]:join()
  if ok and pid then pids[pid] = true end
end
local npids = 0
for _ in pairs(pids) do npids = npids + 1 end
t.ok(npids <= 2 and peak <= 2, "a pool of size 2 never opens more than 2 connections (" .. npids .. ")")
t.ok(mono() - t0 >= 0.39, "the calls beyond its size waited for a free connection")
local small = pg.pool(URL, { size = 1, wait_timeout = "150ms" })
local hold = task.spawn(function() return small:query("SELECT pg_sleep(0.6)") end)
task.yield()
t0 = mono()
local wt, wterr, wtcode = small:query("SELECT 1")
t.ok(wt == nil and wtcode == "timeout" and wterr:find("wait_timeout"),
  "a call waiting longer than wait_timeout fails: " .. tostring(wterr))
t.ok(mono() - t0 >= 0.14 and mono() - t0 < 0.5, "after wait_timeout")
t.ok(select(2, hold:join()), "the holder finished")
t.ok(small:query("SELECT 1 AS x"), "the pool serves again")

-- ---- cancelling a task mid-query ----
local watch = assert(pg.connect(URL))
local function sleeping(tag)
  local rows = watch:query("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1",
    "%" .. tag .. "%")
  return rows and rows[1].n
end
local victim = task.spawn(function() return small:query("SELECT pg_sleep(30) /* cancelme */") end)
t.ok(eventually(function() return sleeping("cancelme") == 1 end), "the query is running on the server")
t0 = mono()
t.ok(victim:cancel(), "the task is cancelled")
local after = small:query("SELECT 'alive' AS s")
t.ok(after and after[1].s == "alive", "the pool (size 1) serves the next call")
t.ok(mono() - t0 < 5, "promptly: the server-side query was cancelled")
t.ok(eventually(function() return sleeping("cancelme") == 0 end), "nothing is left running on the server")
-- the same on a connection in a transaction: the transaction is rolled back
local txdb = assert(pg.connect(URL))
local tv = task.spawn(function()
  return txdb:transaction(function(tx)
    tx:query("INSERT INTO items VALUES (20, 'cancelled')")
    return tx:query("SELECT pg_sleep(30) /* txcancel */")
  end)
end)
t.ok(eventually(function() return sleeping("txcancel") == 1 end), "a transaction's query is running")
tv:cancel()
local st = txdb:query("SELECT count(*) AS n FROM items WHERE id = 20")
t.ok(st and st[1].n == 0, "after cancelling, the connection works and the open transaction was rolled back")
t.ok(txdb:query("INSERT INTO items VALUES (21, 'x')") and
  watch:query("SELECT count(*) AS n FROM items WHERE id = 21")[1].n == 1,
  "a later statement is not swallowed by a leftover transaction")

-- ---- the server restarts ----
local during = pg.pool(URL, { size = 2 })
assert(during:query("SELECT 1"))
local listener = task.spawn(function() return l:notification() end)
local inflight = task.spawn(function() return db:query("SELECT pg_sleep(30) /* inflight */") end)
t.ok(eventually(function() return sleeping("inflight") == 1 end), "a query is in flight before the stop")
local stopped = proc.run({ cmd = { "bash", "-c", os.getenv("PG_STOP_CMD") } })
t.ok(stopped and stopped.code == 0, "PostgreSQL stopped (-m fast)")
local _, q1, q1err, q1code = inflight:join()
t.ok(q1 == nil and (q1code == "57P01" or q1code:match("^08")),
  "the query in flight fails with the server's code: " .. tostring(q1code) .. " " .. tostring(q1err))
local _, ln, lerr, lcode = listener:join()
t.ok(ln == nil and lcode and lcode:match("^08"), "a task waiting for a notification is told: " .. tostring(lerr))
local q2, q2err, q2code = db:query("SELECT 1")
t.ok(q2 == nil and q2code == "08006" and q2err:find("connection"), "a later call fails with 08006: " .. tostring(q2err))
t.is(db:status(), "broken", "status broken")
local dn, dnerr = pg.connect(URL, { connect_timeout = "2s" })
t.ok(dn == nil and dnerr, "connecting while the server is down fails")
local pd, pderr = during:query("SELECT 1")
t.ok(pd == nil and pderr, "a pool call while the server is down fails: " .. tostring(pderr))
local started = proc.run({ cmd = { "bash", "-c", os.getenv("PG_START_CMD") } })
t.ok(started and started.code == 0, "PostgreSQL started again")
local fresh = pg.connect(URL)
t.ok(fresh and fresh:query("SELECT 1 AS x")[1].x == 1, "a new pg.connect works")
local pq = during:query("SELECT 2 AS x")
t.ok(pq and pq[1].x == 2, "the pool recovers on its next call")
local pp2 = pool:query("SELECT 3 AS x")
t.ok(pp2 and pp2[1].x == 3, "so does a pool idle during the restart")
t.ok(select(2, db:query("SELECT 1")) ~= nil, "the broken connection stays broken")
db:close()
t.is(db:status(), "closed", "a broken connection closes")

fresh:close(); watch:close(); l:close(); txdb:close()
pool:close(); small:close(); during:close()
t.raises(function() pool:query("SELECT 1") end, "closed", "a closed pool raises")
collectgarbage()
t.done()
