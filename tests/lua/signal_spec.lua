-- steward.signal: signals start tasks.
local t = require "steward.tap"
local signal = require "steward.signal"
local task = require "steward.task"
local proc = require "steward.proc"

local got = {}
local waiter = task.spawn(function() require("steward.time").sleep(10) end)
local w = signal.on("USR1", function(name) got[#got + 1] = name; waiter:cancel() end)
local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
local res = proc.run({ cmd = { "kill", "-USR1", pid } })
t.is(res.code, 0, "kill ran")
waiter:join()
t.is_deeply(got, { "USR1" }, "the handler ran as a task with the signal's name")
t.is(w:cancel(), true, "cancel an active watch")
t.is(w:cancel(), false, "cancel twice")
local w2 = signal.on("SIGUSR2", function() end)
t.ok(w2, "SIG prefix accepted")
w2:cancel()
t.raises(function() signal.on("KILL", function() end) end, "expected HUP", "unknown signals are refused")
t.raises(function() signal.on("HUP") end, "function expected", "a function is required")
t.done()
