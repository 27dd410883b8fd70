-- steward.proc's long-running children: spawn (a session of its own, output to files), wait,
-- kill, and for processes that are not our children watch and info.
local t = require "steward.tap"
local proc = require "steward.proc"
local task = require "steward.task"
local time = require "steward.time"
local fs = require "steward.fs"

local base = (os.getenv("TMPDIR") or "/tmp") .. "/steward-spawn-spec-" .. os.time() .. "-" .. math.random(1e6)
assert(fs.mkdir(base))

local function until_true(f, secs)
  local deadline = time.monotonic() + (secs or 10)
  while time.monotonic() < deadline do
    if f() then return true end
    time.sleep(0.02)
  end
  return false
end

-- stdout and stderr go to files opened for append; the exit status comes from wait
local h = assert(proc.spawn{ cmd = { "sh", "-c", "echo out; echo err >&2; exit 3" },
  stdout = base .. "/out.log", stderr = base .. "/err.log" })
t.ok(type(h.pid) == "number" and h.pid > 0, "spawn returns a handle with its pid")
local st = h:wait()
t.is(st.code, 3, "wait returns the exit code")
t.is(st.signal, nil, "no signal for a normal exit")
t.is(h.exited, true, "the handle knows it exited")
t.is(h:wait().code, 3, "wait again after the exit answers at once")
t.is(fs.read(base .. "/out.log"), "out\n", "stdout went to its file")
t.is(fs.read(base .. "/err.log"), "err\n", "stderr went to its file")
h = assert(proc.spawn{ cmd = { "sh", "-c", "echo again" }, stdout = base .. "/out.log" })
h:wait()
t.is(fs.read(base .. "/out.log"), "out\nagain\n", "the log file is appended to, not truncated")
local ok, err, code = h:kill("TERM")
t.ok(ok == nil and code == "ESRCH", "kill after the exit refuses (the pid may be someone else's): " .. tostring(err))

-- a session of its own (setsid), environment and cwd as in proc.run
h = assert(proc.spawn{ cmd = { "sh", "-c", 'echo "$GREETING $(pwd) $(ps -o sid= -p $$) $$"' },
  env = { GREETING = "hi", PATH = os.getenv("PATH") }, cwd = base, stdout = base .. "/env.log" })
h:wait()
local line = fs.read(base .. "/env.log")
local greet, dir, sid, pid = line:match("^(%S+) (%S+) +(%d+) (%d+)")
t.is(greet, "hi", "env reaches the child")
t.is(dir, base, "cwd is the child's working directory")
t.ok(sid ~= nil and sid == pid, "the child leads its own session (sid = pid): " .. line)

-- kill with a signal; the status says which
h = assert(proc.spawn{ cmd = { "sleep", "30" } })
t.ok(proc.info(h.pid) ~= nil, "a running child has /proc info")
assert(h:kill("TERM"))
st = h:wait()
t.is(st.signal, 15, "killed by SIGTERM: signal = 15")
t.is(st.code, 143, "code is 128 + signal")

-- a task that spawned a child may end: the child lives on
local pid
local ran = task.spawn(function()
  local c = assert(proc.spawn{ cmd = { "sleep", "30" } })
  pid = c.pid
end)
ran:join()
collectgarbage(); collectgarbage()
time.sleep(0.05)
t.ok(proc.info(pid) ~= nil and proc.info(pid).state ~= "Z", "the child outlives the task that spawned it (and its handle)")
t.ok(proc.kill(pid, "KILL"), "proc.kill signals a pid")
t.ok(until_true(function() return proc.info(pid) == nil end),
  "a child whose handle was collected is still reaped when it exits (no zombie)")
local r1, e1, c1 = proc.kill(pid, 0)
t.ok(r1 == nil and c1 == "ESRCH", "proc.kill of a gone pid: nil, err, ESRCH (" .. tostring(e1) .. ")")

-- watch: a process that is not our child (a grandchild, as after a daemon restart)
local r = assert(proc.run{ cmd = { "sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!" } })
local gpid = tonumber(r.stdout:match("%d+"))
local info = proc.info(gpid)
t.ok(info and info.start_time > 0 and info.cmdline[1] == "sleep" and info.cmdline[2] == "30",
  "proc.info reads start_time and cmdline from /proc")
local watched = false
local w = task.spawn(function() watched = proc.watch(gpid) end)
time.sleep(0.05)
t.is(watched, false, "watch waits while the process runs")
proc.kill(gpid, "KILL")
w:join()
t.is(watched, true, "watch returns true once the process has ended")
local nw, nerr, ncode = proc.watch(2 ^ 22 + 7)
t.ok(nw == nil and ncode == "ESRCH", "watch of no process: nil, err, ESRCH (" .. tostring(nerr) .. ")")
t.is(proc.info(2 ^ 22 + 7), nil, "info of no process is nil")
-- a cancelled watch releases its pidfd and poll handle (ASan checks the memory)
local sleeper = assert(proc.spawn{ cmd = { "sleep", "30" } })
local cw = task.spawn({ timeout = 0.05 }, function() return proc.watch(sleeper.pid) end)
local cok = cw:join()
t.is(cok, false, "a watch inside a task that times out is cancelled")
sleeper:kill("KILL")
sleeper:wait()

-- a program that cannot start
local n, serr, scode = proc.spawn{ cmd = { "no-such-program-xyz" } }
t.ok(n == nil and scode == "ENOENT" and serr:find("no-such-program-xyz", 1, true), "missing program: nil, err, ENOENT")
n, serr, scode = proc.spawn{ cmd = { "true" }, stdout = base .. "/no/such/dir/out.log" }
t.ok(n == nil and scode == "ENOENT" and serr:find("out.log", 1, true), "unopenable stdout file: nil, err naming it")

-- misuse raises, naming the field
t.raises(function() proc.spawn("ls") end, "proc.spawn: options table expected", "not a table")
t.raises(function() proc.spawn{ cmd = {} } end, "proc.spawn: cmd: must name a program", "empty cmd")
t.raises(function() proc.spawn{ cmd = { "ls" }, stdout = 1 } end, "proc.spawn: stdout: string expected", "bad stdout")
t.raises(function() proc.kill(0, "TERM") end, "pid", "pid 0 is refused")
t.raises(function() proc.kill(-5) end, "pid", "a negative pid (a group) is refused")
t.raises(function() proc.kill(1, "NOPE") end, "proc.kill: signal", "bad signal")
t.raises(function() proc.info("x") end, "number expected", "info needs a pid")
-- two waiters
h = assert(proc.spawn{ cmd = { "sleep", "30" } })
local first = task.spawn(function() return h:wait() end)
t.raises(function() h:wait() end, "another task is already waiting", "a second waiter is refused")
h:kill("KILL")
local _, res = first:join()
t.is(res.signal, 9, "the first waiter sees the SIGKILL")

-- docs/lua-api/proc.md's spawn example runs as written
do
  local doc = assert(io.open("docs/lua-api/proc.md")):read("*a")
  local block
  for code in doc:gmatch("```lua\n(.-)```") do
    if code:find("proc.spawn", 1, true) then block = code end
  end
  local out = {}
  local env = setmetatable({ print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    out[#out + 1] = table.concat(parts, " ")
  end },
    { __index = _G })
  local fn = block and loadstring(block, "=proc.md")
  local ok, err = false, "no spawn example in docs/lua-api/proc.md"
  if fn then setfenv(fn, env); ok, err = pcall(fn) end
  t.ok(ok and out[1] == "true true" and out[2]:match("^15"), "docs/lua-api/proc.md's spawn example runs: " .. tostring(err or out[2]))
end

assert(fs.remove(base, { recursive = true }))
t.done()
