-- The PostgreSQL store's pipelined write groups (core/store/store_pg.c on the connection
-- engine of core/store/pg_conn.c): units failing in the middle of one group fail alone, each
-- naming its statement, while the others commit; a connection killed mid-pipeline
-- (pg_terminate_backend) loses nothing that was acknowledged and comes back; duplicate event
-- ids in one group are stored once. Run by tests/e2e/store_pg.t with
-- STEWARD_TEST_STORE=postgres://...; skipped on other stores.
local URL = os.getenv("STEWARD_TEST_STORE") or ""
if not URL:match("^postgres") then
  io.write("1..0 # SKIP needs STEWARD_TEST_STORE=postgres://...\n")
  return
end
local t = require "steward.tap"
local native = require "steward.runtime.store.native"
local task = require "steward.task"
local time = require "steward.time"
local mono = time.monotonic

local function with(url, opts)
  return url .. (url:find("?", 1, true) and "&" or "?") .. opts
end

local function join_all(hs)
  local out = {}
  for i = 1, #hs do out[i] = { select(2, hs[i]:join()) } end
  return out
end

-- Queues units behind a slow one, so that they all go out in the next write group.
local function behind_slow_unit(db, n, unit)
  local slow = task.spawn(function() return db:exec("SELECT pg_sleep(0.3) AS s") end)
  time.sleep(0.05) -- the slow unit is the running group; the rest queue behind it
  local hs = {}
  for i = 1, n do hs[i] = task.spawn(unit, i) end
  assert(select(2, slow:join()))
  return join_all(hs)
end

-- ---- units failing in the middle of one pipelined group ----
do
  local db = assert(native.open(with(URL, "pool_size=2")))
  assert(db:exec("CREATE TABLE pl_mid (id BIGINT PRIMARY KEY, note TEXT)"))
  assert(db:exec("INSERT INTO pl_mid (id, note) VALUES (1000, 'taken')"))
  local ins = "INSERT INTO pl_mid (id, note) VALUES ($1, $2)"
  local res = behind_slow_unit(db, 21, function(i)
    if i == 6 then -- fails on the server at its second statement: its first is undone
      return db:batch({ { ins, 600, "undone" }, { ins, 1000, "dup" } })
    elseif i == 11 then -- fails when PostgreSQL prepares it
      return db:exec("INSERT INTO pl_no_such_table (id) VALUES ($1)", i)
    elseif i == 16 then -- refused before it is sent: one parameter too many
      return db:exec("INSERT INTO pl_mid (id) VALUES ($1)", i, "extra")
    end
    return db:exec(ins .. " RETURNING id", i, "u" .. i)
  end)
  local st = db:stats()
  t.ok(st.max_batch_units >= 21, "the 21 units ran as one write group (largest group: " .. st.max_batch_units .. ")")
  local okd = 0
  for i = 1, 21 do
    if i ~= 6 and i ~= 11 and i ~= 16 and res[i][1] and res[i][1].rows[1].id == i then okd = okd + 1 end
  end
  t.is(okd, 18, "the 18 good units succeed, each with its own result")
  t.ok(res[6][1] == nil and res[6][3] == "unique_violation" and res[6][2]:find("^statement 2: "),
    "a unit failing at its second statement reports it: " .. tostring(res[6][2]))
  t.ok(res[11][1] == nil and res[11][3] == "error" and tostring(res[11][2]):find("pl_no_such_table"),
    "a unit whose statement cannot be prepared fails alone: " .. tostring(res[11][2]))
  t.ok(res[16][1] == nil and tostring(res[16][2]):find("expects 1 parameter, got 2"),
    "a unit refused before sending fails alone: " .. tostring(res[16][2]))
  local rows = assert(db:query("SELECT array_agg(id ORDER BY id)::text AS ids FROM pl_mid"))
  t.is(rows[1].ids, "{1,2,3,4,5,7,8,9,10,12,13,14,15,17,18,19,20,21,1000}",
    "exactly the good units are stored; the failing unit's first statement was undone")
  -- the statements prepared in that group still work (the cache forgot only what never ran)
  local again = behind_slow_unit(db, 5, function(i) return db:exec(ins, 2000 + i, "again") end)
  local n = 0
  for i = 1, 5 do n = n + (again[i][1] and again[i][1].changes or 0) end
  t.is(n, 5, "the next group on the same connections runs normally")
  assert(db:exec("DROP TABLE pl_mid"))
  db:close()
end

-- ---- the connection killed mid-pipeline ----
do
  local app = "pl_kill_" .. tostring(math.floor(mono() * 1000) % 1000000)
  local db = assert(native.open(with(URL, "pool_size=2&application_name=" .. app)))
  local watch = assert(native.open(with(URL, "pool_size=1")))
  assert(db:exec("CREATE TABLE pl_kill (id BIGINT PRIMARY KEY)"))
  -- one group, in flight: its first unit sleeps in the server, 30 more are pipelined behind it
  local slow = task.spawn(function() return db:exec("SELECT pg_sleep(0.3) AS s") end)
  time.sleep(0.05)
  local hs = {}
  hs[1] = task.spawn(function() return db:exec("INSERT INTO pl_kill (id) SELECT 1 FROM pg_sleep(30)") end)
  for i = 2, 31 do hs[i] = task.spawn(function() return db:exec("INSERT INTO pl_kill (id) VALUES ($1)", i) end) end
  assert(select(2, slow:join()))
  local pid
  local deadline = mono() + 10
  repeat
    local rows = assert(watch:query("SELECT pid FROM pg_stat_activity WHERE application_name = $1 " ..
      "AND query LIKE '%pg_sleep(30)%' AND state = 'active'", app))
    pid = rows[1] and rows[1].pid
    if not pid then time.sleep(0.02) end
  until pid or mono() > deadline
  t.ok(pid, "the pipelined group is running on the server (pid " .. tostring(pid) .. ")")
  assert(watch:query("SELECT pg_terminate_backend($1::int) AS k", pid or 0))
  local res = join_all(hs)
  local failed, wrong = 0, {}
  for i = 1, 31 do
    if res[i][1] == nil and res[i][3] == "unavailable" and tostring(res[i][2]):find("not committed") then
      failed = failed + 1
    else
      wrong[#wrong + 1] = i .. ": " .. tostring(res[i][2])
    end
  end
  t.is(failed, 31, "every unit of the killed group fails with unavailable, not committed " .. table.concat(wrong, "; "))
  local rows = assert(watch:query("SELECT COUNT(*) AS n FROM pl_kill"))
  t.is(rows[1].n, 0, "and none of them was applied")
  -- the lost connection is opened again in the background
  deadline = mono() + 10
  local n
  repeat
    n = assert(watch:query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = $1", app))[1].n
    if n < 2 then time.sleep(0.05) end
  until n >= 2 or mono() > deadline
  t.is(n, 2, "the store reconnects: both pool connections are back")
  t.ok(db:exec("INSERT INTO pl_kill (id) VALUES (100)"), "and writes again")

  -- under load: writers keep going while their connections are killed again and again;
  -- every acknowledged write is stored, every write reported as not committed is not
  local acked, refused, stop = {}, {}, false
  local writers = {}
  for w = 1, 8 do
    writers[w] = task.spawn(function()
      local id = w * 100000
      while not stop do
        id = id + 1
        local r, err, code = db:exec("INSERT INTO pl_kill (id) VALUES ($1)", id)
        if r then
          acked[#acked + 1] = id
        elseif code == "unavailable" and err:find("not committed") then
          refused[#refused + 1] = id
        elseif code ~= "unavailable" then
          error("unexpected failure: " .. tostring(err))
        else
          time.sleep(0.01) -- unavailable for a moment: a client backs off
        end
      end
    end)
  end
  local kills = 0
  for _ = 1, 6 do
    time.sleep(0.15)
    local k = assert(watch:query("SELECT COUNT(pg_terminate_backend(pid)) AS k FROM pg_stat_activity " ..
      "WHERE application_name = $1", app))
    kills = kills + k[1].k
  end
  time.sleep(0.3)
  stop = true
  for w = 1, 8 do
    local ok, e = writers[w]:join()
    if not ok then t.fail("writer " .. w .. " ended: " .. tostring(e)) end
  end
  local stored = {}
  for _, r in ipairs(assert(watch:query("SELECT id FROM pl_kill"))) do stored[r.id] = true end
  local lost, applied = 0, 0
  for _, id in ipairs(acked) do if not stored[id] then lost = lost + 1 end end
  for _, id in ipairs(refused) do if stored[id] then applied = applied + 1 end end
  t.ok(kills >= 3 and #acked > 0, ("%d backends killed under load, %d writes acknowledged, %d refused")
    :format(kills, #acked, #refused))
  t.is(lost, 0, "no acknowledged write is lost")
  t.is(applied, 0, "no write reported as not committed was applied")
  watch:close()
  db:close()
end

-- ---- duplicate event ids in one group ----
do
  local store = require "steward.runtime.store"
  local events = require "steward.runtime.events"
  local st = assert(store.open(URL))
  local run = tostring(math.floor(mono() * 1e6))
  local slow = task.spawn(function() return st.db:exec("SELECT pg_sleep(0.3) AS s") end)
  time.sleep(0.05)
  local batch = {
    { id = "dup-a-" .. run, type = "pl.dup" },
    { id = "dup-b-" .. run, type = "pl.dup" },
    { id = "dup-a-" .. run, type = "pl.dup" },
  }
  local hs = {}
  for i = 1, 4 do hs[i] = task.spawn(function() return events.append(st, batch) end) end
  assert(select(2, slow:join()))
  local res = join_all(hs)
  local accepted, dups = 0, 0
  for i = 1, 4 do
    if res[i][1] then
      accepted = accepted + res[i][1].accepted
      dups = dups + res[i][1].duplicates
    end
  end
  t.is(accepted, 2, "four requests with the same three events in one group: two events accepted")
  t.is(dups, 10, "every other copy is acknowledged as a duplicate")
  local rows = assert(st.db:query("SELECT COUNT(*) AS n FROM events WHERE id LIKE $1", "dup-%-" .. run))
  t.is(rows[1].n, 2, "and each id is stored once")
  st:close()
end

t.done()
