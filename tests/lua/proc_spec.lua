-- steward.proc: running programs without blocking the loop.
local t = require "steward.tap"
local proc = require "steward.proc"
local task = require "steward.task"
local time = require "steward.time"
local fs = require "steward.fs"

local base = (os.getenv("TMPDIR") or "/tmp") .. "/steward-proc-spec-" .. os.time() .. "-" ..
  math.random(1e6)
assert(fs.mkdir(base))

-- exit codes, stdout and stderr kept apart
local r = proc.run{cmd = {"sh", "-c", "echo out; echo err >&2; exit 3"}}
t.is(r.code, 3, "exit code")
t.is(r.signal, nil, "no signal for a normal exit")
t.is(r.stdout, "out\n", "stdout")
t.is(r.stderr, "err\n", "stderr separately")
t.is(r.timed_out, false, "not timed out")
t.is(r.truncated, false, "not truncated")
t.ok(type(r.duration) == "number" and r.duration >= 0 and r.duration < 5, "duration in seconds")
t.ok(type(r.pid) == "number" and r.pid > 0, "pid")
t.is(proc.run{cmd = {"true"}}.code, 0, "true exits 0")
t.is(proc.run{cmd = {"sh", "-c", "exit 255"}}.code, 255, "exit 255")
t.is(proc.run{cmd = {"printf", "%s|", "a b", "$HOME", "*"}}.stdout, "a b|$HOME|*|",
  "argv is passed as is: no shell expansion or splitting")

-- signals
r = proc.run{cmd = {"sh", "-c", "kill -9 $$"}}
t.is(r.signal, 9, "killed by SIGKILL: signal = 9")
t.is(r.code, 137, "code is 128 + signal")

-- stdin
r = proc.run{cmd = {"cat"}, stdin = "piped\0in"}
t.is(r.stdout, "piped\0in", "stdin is written then closed (cat sees EOF)")
r = proc.run{cmd = {"cat"}, stdin = ""}
t.is(r.stdout, "", "empty stdin gives immediate EOF")
local bigin = string.rep("abcdefghijklmnop", 64 * 1024) -- 1 MiB
r = proc.run{cmd = {"cat"}, stdin = bigin, max_output = 2 * #bigin}
t.ok(r.stdout == bigin and not r.truncated, "1 MiB through cat, both ways at once")
r = proc.run{cmd = {"cat"}}
t.is(r.stdout, "", "without stdin the child reads /dev/null")
r = proc.run{cmd = {"true"}, stdin = bigin}
t.is(r.code, 0, "a child that ignores its stdin does not break the run")

-- env: replace vs extend
r = proc.run{cmd = {"env"}, env = {FOO = "bar", N = 42}}
local lines = {}
for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
table.sort(lines)
t.is_deeply(lines, {"FOO=bar", "N=42"}, "env replaces the environment entirely")
r = proc.run{cmd = {"sh", "-c", 'echo "$FOO:$HOME"'}, env_add = {FOO = "baz"}}
t.is(r.stdout, "baz:" .. os.getenv("HOME") .. "\n", "env_add extends the parent environment")
r = proc.run{cmd = {"sh", "-c", 'echo "$FOO:$A:${HOME-unset}"'}, env = {A = "1", FOO = "x"},
  env_add = {FOO = "y"}}
t.is(r.stdout, "y:1:unset\n", "env_add overlays env when both are given")

-- cwd
r = proc.run{cmd = {"pwd"}, cwd = base}
t.is(r.stdout, base .. "\n", "cwd")
local none, err, code = proc.run{cmd = {"pwd"}, cwd = base .. "/missing"}
t.is(none, nil, "a missing cwd gives nil")
t.like(err, "missing", "the error names the cwd")

-- missing program
none, err, code = proc.run{cmd = {"steward-no-such-program", "x"}}
t.is(none, nil, "a missing program gives nil")
t.like(err, "^ENOENT: .*steward%-no%-such%-program", "err names the program")
t.is(code, "ENOENT", "and the code")
assert(fs.write(base .. "/noexec", "#!/bin/sh\n"))
none, err, code = proc.run{cmd = {base .. "/noexec"}}
t.is(code, "EACCES", "a non-executable file: EACCES")

-- timeout
local t0 = time.monotonic()
r = proc.run{cmd = {"sleep", "10"}, timeout = "200ms"}
t.is(r.timed_out, true, "timed_out")
t.is(r.signal, 15, "killed with SIGTERM by default")
t.ok(time.monotonic() - t0 < 3, "the run returns soon after the timeout")
t.ok(r.duration >= 0.19, "duration covers the timeout")
-- The timeout counts from the run's start even after the task kept the loop busy in this turn
-- (libuv's cached loop time is then behind; the timer fired early, a flake of the line above
-- on a loaded machine).
local busy_until = time.monotonic() + 0.3
while time.monotonic() < busy_until do end
r = proc.run{cmd = {"sleep", "10"}, timeout = "200ms"}
t.ok(r.timed_out and r.duration >= 0.19, "after a busy stretch the timeout still covers 200ms (got " .. r.duration .. ")")
r = proc.run{cmd = {"sh", "-c", 'trap "" TERM; exec sleep 10'}, timeout = 0.1, grace = "200ms"}
t.is(r.signal, 9, "a child ignoring SIGTERM gets SIGKILL after the grace period")
t.ok(r.duration >= 0.29 and r.duration < 3, "after timeout + grace")
r = proc.run{cmd = {"sleep", "10"}, timeout = 0.1, kill_signal = "INT"}
t.is(r.signal, 2, "kill_signal chooses the first signal")
r = proc.run{cmd = {"sh", "-c", "sleep 2 & echo started; exec sleep 10"}, timeout = 0.2,
  kill_signal = "KILL"}
t.ok(r.timed_out and r.stdout == "started\n",
  "after a timeout the run does not wait for a grandchild holding the pipes")
r = proc.run{cmd = {"true"}, timeout = 5}
t.is(r.timed_out, false, "a fast child is not timed out")

-- max_output
r = proc.run{cmd = {"head", "-c", "5000000", "/dev/zero"}}
t.is(#r.stdout, 1024 * 1024, "default max_output keeps 1 MiB")
t.is(r.truncated, true, "truncated")
t.is(r.code, 0, "the rest was drained: head finished normally")
r = proc.run{cmd = {"sh", "-c", "head -c 5000000 /dev/zero >&2; echo ok"}, max_output = 1000}
t.is(#r.stderr, 1000, "max_output applies to stderr")
t.is(r.stdout, "ok\n", "stdout is kept separately")
t.is(r.truncated, true, "truncated is set by either stream")
r = proc.run{cmd = {"head", "-c", "5000000", "/dev/zero"}, max_output = 6000000}
t.ok(#r.stdout == 5000000 and not r.truncated, "a larger max_output keeps everything")

-- many at once
local hs = {}
for i = 1, 40 do
  hs[i] = task.spawn(function()
    return proc.run{cmd = {"sh", "-c", 'echo "$0"; exit $(($0 % 7))', tostring(i)}}
  end)
end
local all = true
for i = 1, 40 do
  local ok, res = hs[i]:join()
  if not ok or res.stdout ~= i .. "\n" or res.code ~= i % 7 then all = false end
end
t.ok(all, "40 concurrent processes each get their own output and exit code")

-- cancellation: the child is killed and reaped; handles are closed by their callbacks. The
-- timeout leaves a loaded machine time to start the shell and write its pid file.
local pidfile = base .. "/pid"
local h = task.spawn({timeout = "1s"}, function()
  return proc.run{cmd = {"sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 10', pidfile}}
end)
local ok, jerr = h:join()
t.ok(not ok and tostring(jerr):find("timeout"), "the task ends with its timeout")
local pid = tonumber(fs.read(pidfile))
t.ok(pid, "the child had started")
-- Reaping is asynchronous: wait for it with a deadline. kill -0 succeeds on a zombie, so
-- this also checks the child was reaped.
local gone = false
for _ = 1, 250 do
  if proc.run{cmd = {"kill", "-0", tostring(pid)}}.code ~= 0 then gone = true break end
  time.sleep("20ms")
end
t.ok(gone, "the child process is gone (killed and reaped)")
local h2 = task.spawn(function() return proc.run{cmd = {"cat"}, stdin = bigin} end)
h2:cancel()
t.is(h2:status(), "cancelled", "cancel a run while stdin is being written")

-- misuse raises naming the field
t.raises(function() proc.run() end, "proc.run: options table expected", "no options")
t.raises(function() proc.run{} end, "proc.run: cmd", "cmd missing")
t.raises(function() proc.run{cmd = "ls -l"} end, "proc.run: cmd: array of strings", "cmd as a string")
t.raises(function() proc.run{cmd = {}} end, "proc.run: cmd", "empty cmd")
t.raises(function() proc.run{cmd = {"ls", 1}} end, "proc.run: cmd%[2%]: string expected", "non-string argument")
t.raises(function() proc.run{cmd = {"ls"}, env = {"x"}} end, "proc.run: env", "env array")
t.raises(function() proc.run{cmd = {"ls"}, env_add = {A = true}} end, "proc.run: env_add.A", "bad env value")
t.raises(function() proc.run{cmd = {"ls"}, cwd = 1} end, "proc.run: cwd: string", "bad cwd")
t.raises(function() proc.run{cmd = {"ls"}, stdin = {}} end, "proc.run: stdin: string", "bad stdin")
t.raises(function() proc.run{cmd = {"ls"}, timeout = "soon"} end, "proc.run: timeout", "bad timeout")
t.raises(function() proc.run{cmd = {"ls"}, kill_signal = "NOPE"} end, "proc.run: kill_signal", "bad signal")
t.raises(function() proc.run{cmd = {"ls"}, max_output = -1} end, "proc.run: max_output", "bad max_output")

-- gh-12.3: a child inherits stdin, stdout and stderr only, whatever the parent holds open
-- (a store, a socket, a pipe without O_CLOEXEC).
local held = io.open(base .. "/held.txt", "w") -- Lua's io opens without O_CLOEXEC
local listing = assert(proc.run{cmd = {"/bin/ls", "/proc/self/fd"}})
held:close()
local fds = {}
for fd in listing.stdout:gmatch("%d+") do fds[#fds + 1] = tonumber(fd) end
table.sort(fds)
t.is(table.concat(fds, " "), "0 1 2 3", "a child holds only 0, 1, 2 (and ls's own directory, 3)")

assert(fs.remove(base, {recursive = true}))
t.done()
