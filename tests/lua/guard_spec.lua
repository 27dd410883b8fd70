-- steward.runtime.guard: CPU and memory budgets for policy code, including loops LuaJIT would compile,
-- pcall trying to swallow the stop, coroutines, yields that must not count, and the daemon's
-- HTTP server answering after a runaway handler.
local t = require "steward.tap"
local guard = require "steward.runtime.guard"
local sandbox = require "steward.runtime.policy.sandbox"
local task = require "steward.task"
local time = require "steward.time"
local httpd = require "steward.httpd"
local http = require "steward.http"

-- Compiles policy source the way the loader does (sandboxed, JIT off) and returns its value.
local function policy(src, extra)
  local env = sandbox.new_env({ name = "spec" })
  for k, v in pairs(extra or {}) do env[k] = v end
  local fn = assert(sandbox.compile(env, src, "=spec"))
  return fn()
end

local function timed(f, ...)
  local t0 = time.monotonic()
  local r = { f(...) }
  return time.monotonic() - t0, unpack(r, 1, 4)
end

-- Results and errors pass through.
local ok, a, b, c = guard.run(nil, function(x, y) return x + y, nil, "z" end, 1, 2)
t.ok(ok == true and a == 3 and b == nil and c == "z", "a run returns true and every result")
t.is(select("#", guard.run(nil, function() return 1, nil end)), 3, "trailing nil results are kept")
local eok, eerr, ekind = guard.run(nil, function() error("boom", 0) end)
t.ok(eok == false and eerr == "boom" and ekind == nil, "an error in fn is returned as false, err")
local _, terr = guard.run({ traceback = true }, function() error("deep", 0) end)
t.like(terr, "^deep\nstack traceback:", "traceback = true adds the traceback")
local _, oerr = guard.run(nil, function() error(setmetatable({}, { __tostring = function() return "custom" end })) end)
t.is(oerr, "custom", "an error object is turned into a string")
t.raises(function() guard.run({ cpu = "soon" }, function() end) end, "guard.run: cpu", "a bad cpu budget raises naming it")
t.raises(function() guard.run({ memory = "lots" }, function() end) end, "guard.run: memory", "a bad memory budget raises naming it")
t.raises(function() guard.run({}, 42) end, "function expected", "fn must be a function")
t.is(debug.gethook(), nil, "no hook is left set after a run")

-- CPU: an interpreted loop, and a loop that would be compiled to a trace.
local spin = policy("return function() local i = 0 while true do i = i + 1 end end")
local dt, sok, serr, skind = timed(guard.run, { cpu = 0.2, name = "spinner" }, spin)
t.ok(sok == false and serr == "cpu budget exceeded (0.2 s)" and skind == "cpu", "while true do end is stopped: " .. tostring(serr))
t.ok(dt >= 0.19 and dt < 0.6, string.format("within its budget (%.3f s)", dt))

-- Warm a nested function's loop until LuaJIT would have compiled it, then make it spin.
local hot = policy([[
  local function work(n) local s = 0 for i = 1, n do s = s + i % 7 end return s end
  return function(n) for _ = 1, 200 do work(1000) end return work(n) end
]])
hot(10)
local hdt, hok, herr = timed(guard.run, { cpu = 0.2 }, hot, 1e15)
t.ok(hok == false and herr:match("^cpu budget exceeded"), "a hot loop in a nested function of a policy chunk is stopped")
t.ok(hdt < 0.6, string.format("also within its budget (%.3f s)", hdt))

local swallow = policy([[return function()
  local caught = 0
  for _ = 1, 1e9 do
    local ok = pcall(function() while true do end end)
    if not ok then caught = caught + 1 end
  end
  return "escaped", caught
end]])
local wok, werr = guard.run({ cpu = 0.1 }, swallow)
t.ok(wok == false and werr:match("^cpu budget exceeded"), "pcall inside the policy cannot swallow the stop")
local xswallow = policy([[return function()
  while true do xpcall(function() while true do end end, function(e) return e end) end
end]])
local xok = guard.run({ cpu = 0.1 }, xswallow)
t.is(xok, false, "nor can xpcall with a handler")
local cospin = policy("return function() return coroutine.wrap(function() while true do end end)() end")
local cok, cerr = guard.run({ cpu = 0.1 }, cospin)
t.ok(cok == false and cerr:match("^cpu budget exceeded"), "a loop inside a coroutine the policy made is stopped")
local tostr = policy("return function() error(setmetatable({}, { __tostring = function() while true do end end })) end")
local tsok, tserr = guard.run({ cpu = 0.1 }, tostr)
t.ok(tsok == false and tserr:match("^cpu budget exceeded"), "an error object's __tostring runs under the budget too")
local sorter = policy([[return function()
  local x = {} for i = 1, 100 do x[i] = i end
  table.sort(x, function(a, b) while true do end end)
end]])
t.like(select(2, guard.run({ cpu = 0.1 }, sorter)), "^cpu budget exceeded", "a loop in a table.sort comparator is stopped")

-- Budget is per resume: time suspended does not count; time running after a resume does.
task.spawn(function()
  local waits = policy([[return function()
    local s = 0
    for _ = 1, 4 do time.sleep(0.1) for i = 1, 1e5 do s = s + i end end
    return s
  end]], { time = time })
  local gok, s = guard.run({ cpu = 0.15 }, waits)
  t.ok(gok == true and s == 4 * 5000050000, "a handler that waits longer than its budget is not stopped")
  local late = policy("return function() time.sleep(0.05) while true do end end", { time = time })
  local ldt, lok, lerr = timed(guard.run, { cpu = 0.15 }, late)
  t.ok(lok == false and lerr:match("^cpu budget exceeded"), "a handler spinning after a wait is stopped")
  t.ok(ldt >= 0.19 and ldt < 0.6, string.format("its budget counts from the resume (%.3f s)", ldt))
  local nok, nerr = guard.run(nil, function() guard.run({ cpu = 1e6 }, function() end) end)
  t.ok(nok == false and nerr:match("guard.run: already inside a guarded run"),
    "a run inside a run of the same task is refused (no way to widen a budget)")
  local inner = select(2, guard.run(nil, function()
    local _, e = pcall(guard.run, nil, function() end)
    return e
  end))
  t.like(inner, "already inside a guarded run", "also when attempted with pcall from inside")
end):join()

-- Memory: unbounded growth, pcall trying to swallow it, churn that is fine.
local grow = policy("return function() local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end end")
local mok, merr, mkind = guard.run({ cpu = 10, memory = 8e6 }, grow)
t.ok(mok == false and merr == "memory budget exceeded (8000000 bytes)" and mkind == "memory", "unbounded growth is stopped: " .. tostring(merr))
local big = policy("return function() return #string.rep('x', 1e9) end")
t.like(select(2, guard.run({ memory = 16e6 }, big)), "^memory budget exceeded", "one huge allocation is refused before it is made")
local mswallow = policy([[return function()
  local n = 0
  while true do if not pcall(string.rep, "x", 1e8) then n = n + 1 end end
end]])
t.like(select(2, guard.run({ cpu = 5, memory = 8e6 }, mswallow)), "^memory budget exceeded", "pcall cannot swallow a memory stop")
local churn = policy("return function() for i = 1, 1e6 do local x = { i, tostring(i), { i } } end return 'done' end")
local chok, chres = guard.run({ cpu = 10, memory = 4e6 }, churn)
t.ok(chok == true and chres == "done", "a handler that churns without growing is not stopped: " .. tostring(chres))
local keep = {}
local retain = policy("return function(keep) for i = 1, 20 do keep[i] = string.rep('y', 1e5) .. i end return #keep end")
t.is(select(2, guard.run({ memory = 8e6 }, retain, keep)), 20, "growth within the budget is allowed")
collectgarbage()
t.ok(#string.rep("z", 64e6) == 64e6, "outside a run nothing is limited")
t.is(guard.current(), nil, "no run is current outside guard.run")
local cur = select(2, guard.run({ name = "me", memory = 1e6 }, function() return guard.current() end))
t.ok(cur and cur.name == "me" and cur.memory == 1e6, "guard.current() describes the run")

-- A task a guarded policy starts through the sandbox's steward.task runs under the budget,
-- even after it has waited.
task.spawn(function()
  local env = sandbox.new_env({ name = "spawner", cpu = 0.1 })
  local fn = assert(sandbox.compile(env, [[
    local task, time = require "steward.task", require "steward.time"
    return function()
      return task.spawn(function() time.sleep(0.02) while true do end end)
    end]], "=spawner"))
  local h = select(2, guard.run({ cpu = 0.1 }, fn()))
  local jok, jerr = h:join()
  t.ok(jok == false and tostring(jerr):match("cpu budget exceeded"), "a spawned task is held to the policy's budget")
end):join()

-- The HTTP server answers a request that came in while a runaway handler held the loop.
task.spawn(function()
  local srv = assert(httpd.listen({ host = "127.0.0.1", port = 0, handler = function()
    return 200, {}, "alive"
  end }))
  local client = task.spawn(function()
    return http.request({ url = "http://127.0.0.1:" .. srv:port() .. "/", timeout = 5 })
  end)
  local runaway = task.spawn(function() return guard.run({ cpu = 0.3 }, spin) end)
  local _, rok, rerr = runaway:join()
  local _, res = client:join()
  t.ok(rok == false and rerr:match("^cpu budget exceeded"), "the runaway handler is stopped")
  t.ok(res and res.status == 200 and res.body == "alive", "and the HTTP server answers")
  srv:close()
end):join()

-- Time slicing: a run that computes without end still lets other tasks (and the HTTP
-- server) have turns while it burns its budget; the budget is not refilled by the turns.
do
  local task = require "steward.task"
  local time = require "steward.time"
  local ticks, spinning = 0, true
  local sleeper = task.spawn(function()
    while spinning do ticks = ticks + 1; time.sleep(0.002) end
  end)
  local spin = loadstring("local n = 0 while true do n = n + 1 end")
  jit.off(spin, true)
  local h = task.spawn(function() return guard.run({ cpu = 0.2, name = "slice" }, spin) end)
  local _, ok, err = h:join()
  local during = ticks
  spinning = false
  sleeper:join()
  t.ok(ok == false and err:find("cpu budget exceeded"), "a sliced run still meets its CPU budget")
  t.ok(during > 0, "other tasks ran while it computed (" .. during .. " turns)")
end

-- issue 13: a loop in a coroutine the policy made (wrap, create/resume, nested) is sliced like
-- one in the handler itself: other tasks run while it computes, and its budget still ends it.
local function ticking(f)
  local ticks, spinning = 0, true
  local sleeper = task.spawn(function()
    while spinning do ticks = ticks + 1; time.sleep(0.002) end
  end)
  local r = { f() }
  spinning = false
  sleeper:join()
  return ticks, unpack(r, 1, 3)
end
for what, src in pairs({
  wrap = "return function() return coroutine.wrap(function() while true do end end)() end",
  resume = [[return function()
    local co = coroutine.create(function() while true do end end)
    local ok, err = coroutine.resume(co)
    return ok, err
  end]],
  nested = [[return function()
    return coroutine.wrap(function() return coroutine.wrap(function() while true do end end)() end)()
  end]],
}) do
  local fn = policy(src)
  local ticks, _, ok, err = ticking(function()
    return task.spawn(function() return guard.run({ cpu = 0.3, name = "co-" .. what }, fn) end):join()
  end)
  t.ok(ok == false and tostring(err):match("^cpu budget exceeded %(0.3 s%)"),
    "coroutine " .. what .. ": the loop is still stopped by the budget: " .. tostring(err))
  t.ok(ticks > 1, "coroutine " .. what .. ": other tasks ran while it computed (" .. ticks .. " turns)")
end

-- Slicing does not change what a policy's coroutines do: values, voluntary yields (also with
-- no values), errors and status are as in plain Lua.
task.spawn(function()
  local fn = policy([[return function()
    local out = {}
    local co = coroutine.create(function(a)
      local b = coroutine.yield(a + 1)
      coroutine.yield()
      local n = 0
      for i = 1, 3e5 do n = n + i end -- long enough to be sliced on a slow machine, maybe
      return b * 2, n
    end)
    local ok1, v1 = coroutine.resume(co, 1)
    out.quiet = { coroutine.resume(co, 10) }
    out.last = { coroutine.resume(co) }
    out.first, out.ok, out.status = v1, ok1, coroutine.status(co)
    local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
    out.gen = gen() + gen() + gen()
    local wok, werr = pcall(coroutine.wrap(function() error("inner", 0) end))
    out.werr = werr
    out.dead = select(2, coroutine.resume(co))
    return out
  end]])
  local ok, out = guard.run({ cpu = 2 }, fn)
  t.ok(ok and out.first == 2 and out.ok, "coroutine.resume passes values both ways")
  t.ok(out.quiet[1] == true and #out.quiet == 1, "a voluntary yield with no values comes back as true alone")
  t.ok(out.last[1] == true and out.last[2] == 20 and out.last[3] == 45000150000, "the coroutine's results come back after its loop")
  t.is(out.status, "dead", "status is as in Lua")
  t.is(out.gen, 6, "coroutine.wrap generators work")
  t.is(out.werr, "inner", "an error inside coroutine.wrap propagates")
  t.is(out.dead, "cannot resume dead coroutine", "a dead coroutine cannot be resumed")
end):join()

-- A loop inside a C call's callback cannot yield: it is stopped after the stall allowance
-- (limits.policy_stall), not after the whole CPU budget.
guard.configure({ stall = 0.1 })
for what, src in pairs({
  gsub = "return function() return ('xxxx'):gsub('.', function() while true do end end) end",
  sort = [[return function()
    local x = {} for i = 1, 100 do x[i] = i end
    table.sort(x, function(a, b) while true do end end)
  end]],
}) do
  local fn = policy(src)
  local _, ok, err, kind = task.spawn(function() return guard.run({ cpu = 60 }, fn) end):join()
  t.ok(ok == false and tostring(err):match("^cpu stall limit exceeded %(0.1 s without yielding") and kind == "cpu",
    what .. " callback loop: stopped by the stall limit: " .. tostring(err))
end
local slow_ok = task.spawn(function()
  return guard.run({ cpu = 60 }, policy("return function() local s = 0 for i = 1, 3e6 do s = s + i end return s end"))
end)
t.ok(select(2, slow_ok:join()) == true, "a long computation that can yield is not touched by the stall limit")
guard.configure({ stall = 0.2 })

-- The total: a ceiling on the heap while policy code allocates. One run holds memory and
-- waits; another that would take the heap past the ceiling fails, and with the heap over it a
-- new run does not start; once the holder is done, runs start again.
task.spawn(function()
  local hold = policy([[return function(wait) local t = {} for i = 1, 150 do t[i] = string.rep("h", 1e5) .. i end
    wait() return #t end]], {})
  local grow = policy([[return function() local t = {} for i = 1, 1e9 do t[i] = string.rep("g", 1e5) .. i end end]])
  local holding, release = false, false
  local holder = task.spawn(function()
    return guard.run({ memory = 64e6, name = "holder" }, hold, function()
      holding = true
      while not release do time.sleep(0.005) end
    end)
  end)
  local bystander_go = false
  local bystander = task.spawn(function()
    return guard.run({ name = "bystander" }, function()
      while not bystander_go do time.sleep(0.005) end
      local keep = {}
      for i = 1, 200 do keep[i] = string.rep("b", 1000) .. i end -- 200 KB
      return #keep
    end)
  end)
  local deadline = time.monotonic() + 30
  while not holding and time.monotonic() < deadline do time.sleep(0.005) end
  t.ok(holding, "the holder holds its memory")
  collectgarbage()
  collectgarbage()
  local held = guard.stats().heap -- live: the holder's 15 MB and everything else
  guard.configure({ memory_total = held + 10e6 })
  local ok, err, kind = guard.run({ memory = 64e6, cpu = 10, name = "second" }, grow)
  t.ok(ok == false and tostring(err):match("^policy memory total exceeded %(the heap is at %d+ bytes") and kind == "memory",
    "a run that would take the heap past limits.policy_memory_total fails (its own budget is larger): " .. tostring(err))
  collectgarbage()
  collectgarbage() -- (a second cycle frees what the first finalized)
  guard.configure({ memory_total = guard.stats().heap - 8e6 }) -- the holder keeps 15 MB of it live
  local rok, rerr = guard.run({ name = "third" }, function() return 1 end)
  t.ok(rok == false and tostring(rerr):match("^policy memory total exceeded"), "with the heap over it, a new run does not start")
  -- A run already going when the heap is over the ceiling, doing small allocations: the
  -- ceiling stops runs that grow, not bystanders.
  bystander_go = true
  local _, bok, bn = bystander:join()
  t.ok(bok == true and bn == 200, "a run that grows by less than 1 MiB is not stopped at the ceiling: " .. tostring(bn))
  local xok, xn = guard.run({ name = "repl", heap_ceiling = false }, function() return #string.rep("r", 1e6) end)
  t.ok(xok == true and xn == 1e6, "a run with heap_ceiling = false (the REPL's) starts and allocates all the same")
  release = true
  local _, hok, n = holder:join()
  t.ok(hok == true and n == 150, "the run holding the memory finishes")
  t.ok(select(1, guard.run(nil, function() return 1 end)) == true, "then new runs start again (its memory was collected)")
  guard.configure({ memory_total = 0 })
end):join()

-- After a memory spike, the heap goes back: a run stopped for memory leaves no garbage behind.
collectgarbage()
local before = collectgarbage("count") * 1024
local bomb = policy("return function() local t = {} for i = 1, 1e9 do t[i] = string.rep('b', 1000) .. i end end")
t.like(select(2, guard.run({ cpu = 10, memory = 48e6 }, bomb)), "^memory budget exceeded", "the bomb is stopped")
local after = collectgarbage("count") * 1024
t.ok(after - before < 8e6, string.format("the heap is back near its size before the run (%.1f MB more)", (after - before) / 1e6))

-- context(): a table private to the current run, for the runtime.
t.is(guard.context(), nil, "no context outside a run")
local c1, c1b = select(2, guard.run(nil, function() return guard.context(), guard.context() end))
local c2 = select(2, guard.run(nil, function() return guard.context() end))
t.ok(type(c1) == "table" and c1 == c1b and c1 ~= c2, "one context per run, the same all through it")

-- stop(): the runtime ends a run for a limit of its own, and pcall cannot swallow it.
local stopper = policy([[return function(stop)
  while true do pcall(stop, "over the limit", "emit") end
end]])
t.ok(select(2, task.spawn(function() return guard.run({ cpu = 5 }, stopper, guard.stop) end):join()) == false,
  "a stopped run fails")
local _, sok2, serr2, skind2 = task.spawn(function() return guard.run({ cpu = 5 }, stopper, guard.stop) end):join()
t.ok(sok2 == false and serr2 == "over the limit" and skind2 == "emit", "with the message and kind given, pcall or not: " .. tostring(serr2))
t.is(guard.stop("outside"), false, "outside a run stop() does nothing")

t.done()
