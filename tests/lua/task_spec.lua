-- steward.task: spawn, join, cancel, timeouts, errors, cooperative yield.
local t = require "steward.tap"
local task = require "steward.task"
local time = require "steward.time"

local h = task.spawn(function(a, b) time.sleep(0.01); return a + b, "x" end, 1, 2)
t.is(h:status(), "running", "a spawned task that sleeps is running")
local ok, sum, x = h:join()
t.ok(ok, "join succeeds")
t.is(sum, 3, "join returns the first result")
t.is(x, "x", "join returns every result")
t.is(h:status(), "ok", "an ended task reports ok")
t.is(select("#", h:join()), 3, "joining an ended task again returns the same results")

local fh = task.spawn(function() error("boom", 0) end)
local fok, ferr = fh:join()
t.is(fok, false, "join of a failed task returns false")
t.like(ferr, "^boom", "and the error")
t.is(fh:status(), "error", "status is error")

local sh = task.spawn(function() time.sleep(10) end)
t.ok(sh:cancel(), "cancel of a running task returns true")
local cok, cerr = sh:join()
t.is(cok, false, "join of a cancelled task returns false")
t.is(cerr, "cancelled", "with the reason")
t.is(sh:cancel(), false, "cancel of an ended task returns false")

local th = task.spawn({ timeout = "20ms", name = "slow" }, function() time.sleep(10) end)
local tok, terr = th:join()
t.is(tok, false, "a task past its timeout fails")
t.is(terr, "timeout", "with reason timeout")

-- Several joiners wait on one task.
local target = task.spawn(function() time.sleep(0.01); return 7 end)
local got = {}
local joiners = {}
for i = 1, 3 do
  joiners[i] = task.spawn(function() local _, v = target:join(); got[#got + 1] = v end)
end
for i = 1, 3 do joiners[i]:join() end
t.is_deeply(got, { 7, 7, 7 }, "every joiner gets the result")

-- A task cancelled while joining is removed from the joiners without harm.
local long = task.spawn(function() time.sleep(0.05); return "done" end)
local j1 = task.spawn(function() return long:join() end)
j1:cancel()
t.is(select(2, long:join()), "done", "the joined task still ends normally")

-- Cooperative yields interleave tasks.
local order = {}
local a = task.spawn(function() for i = 1, 3 do order[#order + 1] = "a" .. i; task.yield() end end)
local b = task.spawn(function() for i = 1, 3 do order[#order + 1] = "b" .. i; task.yield() end end)
a:join(); b:join()
t.is(table.concat(order, " "), "a1 b1 a2 b2 a3 b3", "task.yield lets other tasks run in turn")

-- coroutine.yield at the task's own level is a cooperative yield too.
local cy = task.spawn(function() coroutine.yield(); return "after" end)
t.is(select(2, cy:join()), "after", "coroutine.yield in a task resumes on the next iteration")

t.raises(function() task.spawn("not a function") end, "function expected", "spawn checks its argument")
local self_h
self_h = task.spawn(function() time.sleep(0); return pcall(self_h.join, self_h) end)
local _, pok, perr = self_h:join()
t.ok(not pok and perr:find("cannot join itself"), "a task cannot join itself")

t.ok(task.current() ~= nil, "task.current inside a task is its id")
t.ok(task.count() >= 1, "task.count counts live tasks")

-- Many concurrent tasks.
local hs = {}
for i = 1, 500 do hs[i] = task.spawn(function() time.sleep(0.001); return i end) end
local all = true
for i = 1, 500 do local _, v = hs[i]:join(); all = all and v == i end
t.ok(all, "500 concurrent sleeping tasks all end with their own result")

t.done()
