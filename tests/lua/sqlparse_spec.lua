-- steward.sqlparse inside a task: the parser and the scanner run on libuv's thread pool and
-- the Lua tables are built in slices, so a large migration never holds the loop (other tasks'
-- timers keep firing); the answer is the same as the synchronous path's (a call that cannot
-- yield); cancelling a task at any point of a parse frees everything (run under ASan too).
local t = require "steward.tap"
local sqlparse = require "steward.sqlparse"
local task = require "steward.task"
local time = require "steward.time"

local N = 20000
local parts = {}
for i = 1, N do
  parts[i] = ("ALTER TABLE t%d ADD COLUMN c%d text DEFAULT 'x';\n"):format(i % 50, i)
end
local big = table.concat(parts)

-- A task ticking every 10 ms; ticks() tells how many ticks so far.
local function ticker()
  local n, running = 0, true
  local h = task.spawn(function()
    while running do
      time.sleep("10ms")
      n = n + 1
    end
  end)
  return function() return n end, function() running = false; h:join() end
end

-- The same call where the task cannot yield (inside string.gsub's callback): the
-- synchronous path.
local function sync(fn, sql)
  local a, b, c
  ("x"):gsub("x", function() a, b, c = fn(sql) end)
  return a, b, c
end

-- ---- the loop keeps running ----

do
  local ticks, stop = ticker()
  local before = ticks()
  local tree, err = sqlparse.parse(big)
  local during = ticks() - before
  stop()
  t.ok(tree, "parse: a migration of " .. N .. " statements parses: " .. tostring(err))
  t.ok(during > 0, "parse: another task's 10 ms timer ticked during the parse (" .. during .. " ticks)")
  t.is(#tree.stmts, N, "parse: every statement, over several slices")
  t.is(tree.stmts[N].location, #big - #parts[N] - 1, "parse: the last statement's location (right after the ';')")
  t.ok(tree.stmts[N].stmt.AlterTableStmt, "parse: the last statement's node")
  t.is(tree.version, 150001, "parse: the parser's version")
end

do
  local ticks, stop = ticker()
  local before = ticks()
  local toks = sqlparse.scan(big)
  local during = ticks() - before
  stop()
  t.ok(during > 0, "scan: another task's 10 ms timer ticked during the scan (" .. during .. " ticks)")
  t.is(#toks, N * 10, "scan: every token, over several slices")
  t.is(toks[#toks].stop, #big - 1, "scan: the last token ends before the last newline")
end

do
  -- Policy code runs under guard.run's budgets; its calls yield the same way.
  local guard = require "steward.runtime.guard"
  local ticks, stop = ticker()
  local before = ticks()
  local ok, n = guard.run({ memory = 2 ^ 30, cpu = "60s" }, function() return #sqlparse.parse(big).stmts end)
  local during = ticks() - before
  stop()
  t.ok(ok and n == N, "parse: under a policy's budgets too: " .. tostring(n))
  t.ok(during > 0, "parse: ... and the timer ticked meanwhile (" .. during .. " ticks)")
end

-- ---- the same answer on both paths ----

do
  local sql = table.concat(parts, "", 1, 3000) .. "CREATE INDEX CONCURRENTLY i ON t1 (c1)"
  local a = assert(sqlparse.parse(sql))
  local b = assert(sync(sqlparse.parse, sql))
  t.is(#a.stmts, 3001, "parse: a tree of several slices")
  t.is_deeply(a, b, "parse: the task's tree is the synchronous path's")
  t.is_deeply(assert(sqlparse.scan(sql)), assert(sync(sqlparse.scan, sql)),
    "scan: the task's tokens are the synchronous path's")
  local r1, e1, i1 = sqlparse.parse("SELECT 1;\nALTER TABLE t ADD COLUMN;")
  local r2, e2, i2 = sync(sqlparse.parse, "SELECT 1;\nALTER TABLE t ADD COLUMN;")
  t.ok(r1 == nil and r2 == nil and e1 == e2 and i1.position == 35 and i2.position == 35,
    "parse: a syntax error is the same nil, err, {position} on both paths")
  local r, err, info = sqlparse.parse("SELECT 1;\nSELECT '\255'")
  t.is(r, nil, "parse: a literal JSON cannot carry is nil, err")
  t.like(err, "^parse tree not decodable", "parse: ... saying why")
  t.is(info.message, err, "parse: ... with the message in info, no position")
  local deep = "SELECT " .. ("f("):rep(100) .. "1" .. (")"):rep(100)
  local dr, derr = sqlparse.parse(deep)
  t.is(dr, nil, "parse: a tree nested past steward.json's depth limit is nil, err")
  t.like(derr, "not decodable", "parse: ... not decodable")
  local e, serr = sqlparse.scan("SELECT 'unterminated")
  t.is(e, nil, "scan: an unterminated literal is nil, err")
  t.like(serr, "unterminated", "scan: ... PostgreSQL's message")
end

-- ---- cancellation ----

do
  -- Six large parses at once: more than libuv's four pool threads, so some jobs are still
  -- queued when their tasks are cancelled, others running or building tables.
  local handles = {}
  for i = 1, 6 do
    handles[i] = task.spawn(function() return sqlparse.parse(big) end)
  end
  for _, h in ipairs(handles) do h:cancel("test") end
  local all = true
  for _, h in ipairs(handles) do all = all and h:status() == "cancelled" end
  t.ok(all, "cancel: tasks cancelled while their parse is queued or running end at once")
  -- Cancelled later, while the tables are being built: after k other ticks.
  for _, k in ipairs({ 1, 3, 10, 30 }) do
    local ticks, stop = ticker()
    local h = task.spawn(function() return sqlparse.scan(big) end)
    local h2 = task.spawn(function() return sqlparse.parse(big) end)
    local deadline = time.now() + 30
    while ticks() < k and h:status() == "running" and time.now() < deadline do time.sleep("5ms") end
    h:cancel("test")
    h2:cancel("test")
    stop()
  end
  collectgarbage()
  collectgarbage()
  local tree = assert(sqlparse.parse("SELECT 1; SELECT 2"))
  t.is(#tree.stmts, 2, "cancel: parses after cancelled ones work (the pool's jobs were freed)")
end

t.done()
