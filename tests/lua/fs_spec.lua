-- steward.fs: async file operations on libuv's thread pool.
local t = require "steward.tap"
local fs = require "steward.fs"
local task = require "steward.task"
local proc = require "steward.proc"

local base = (os.getenv("TMPDIR") or "/tmp") .. "/steward-fs-spec-" .. os.time() .. "-" ..
  math.random(1e6)
assert(fs.mkdir(base))
local function p(name) return base .. "/" .. name end
local function names(dir)
  local out = {}
  for _, e in ipairs(assert(fs.list(dir))) do out[#out + 1] = e.name end
  return out
end

-- round trips
t.is(fs.write(p("a.txt"), "hello\0world"), true, "write returns true")
t.is(fs.read(p("a.txt")), "hello\0world", "read returns exactly what was written (binary-safe)")
t.is(fs.write(p("a.txt"), "x"), true, "write again")
t.is(fs.read(p("a.txt")), "x", "write truncates the old content")
t.is(fs.write(p("a.txt"), "yz", {append = true}), true, "append")
t.is(fs.read(p("a.txt")), "xyz", "append adds at the end")
t.is(fs.write(p("empty"), ""), true, "write an empty file")
t.is(fs.read(p("empty")), "", "read an empty file")
t.is(fs.write(p("m600"), "s", {mode = tonumber("600", 8)}), true, "write with mode")
t.is(fs.stat(p("m600")).mode, tonumber("600", 8), "a new file gets the mode")

-- large files
local big = string.rep("0123456789abcdef", 512 * 1024) -- 8 MiB
t.is(fs.write(p("big"), big), true, "write 8 MiB")
local got = fs.read(p("big"))
t.ok(got == big, "read 8 MiB back identical")
t.is(fs.stat(p("big")).size, #big, "stat size of the large file")
local none, err, code = fs.read(p("big"), {max = 1000})
t.is(none, nil, "read over max gives nil")
t.like(err, "^EFBIG: .*max.*" .. p("big"):gsub("%p", "%%%0"), "the error names the limit and path")
t.is(code, "EFBIG", "with the code")
t.is(#fs.read(p("big"), {max = #big}), #big, "read exactly at max works")
t.ok(#fs.read("/proc/self/status") > 0, "a /proc file (stat size 0) is read to EOF")

-- write_atomic
assert(fs.write(p("conf"), "old"))
assert(proc.run{cmd = {"chmod", "640", p("conf")}})
t.is(fs.write_atomic(p("conf"), "new content"), true, "write_atomic returns true")
t.is(fs.read(p("conf")), "new content", "write_atomic replaces the content")
t.is(fs.stat(p("conf")).mode, tonumber("640", 8), "write_atomic keeps the target's mode")
t.is(fs.write_atomic(p("conf2"), big, {mode = tonumber("600", 8)}), true, "write_atomic a large new file")
t.ok(fs.read(p("conf2")) == big, "its content is complete")
t.is(fs.stat(p("conf2")).mode, tonumber("600", 8), "with the given mode")
local function temp_files(dir)
  local n = 0
  for _, name in ipairs(names(dir)) do if name:find("%.tmp%-") then n = n + 1 end end
  return n
end
t.is(temp_files(base), 0, "write_atomic leaves no temp files")
assert(fs.mkdir(p("isdir")))
assert(fs.write(p("isdir/keep"), "k"))
none, err, code = fs.write_atomic(p("isdir"), "data")
t.is(none, nil, "write_atomic over a non-empty directory fails")
t.like(err, p("isdir"):gsub("%p", "%%%0"), "the error names the target")
t.is(temp_files(base), 0, "the temp file is removed after a failed rename")
none, err, code = fs.write_atomic(p("nodir/x"), "data")
t.is(code, "ENOENT", "write_atomic into a missing directory: ENOENT")

-- errors
none, err, code = fs.read(p("missing"))
t.is(none, nil, "read of a missing file gives nil")
t.is(err, "ENOENT: no such file or directory: " .. p("missing"), "err is code: message: path")
t.is(code, "ENOENT", "third value is the code name")
t.is(select(3, fs.stat(p("missing"))), "ENOENT", "stat of a missing path: ENOENT")
t.is(select(3, fs.list(p("missing"))), "ENOENT", "list of a missing dir: ENOENT")
t.is(select(3, fs.remove(p("missing"))), "ENOENT", "remove of a missing path: ENOENT")
t.is(select(3, fs.rename(p("missing"), p("x"))), "ENOENT", "rename of a missing path: ENOENT")
t.is(select(3, fs.list(p("a.txt"))), "ENOTDIR", "list of a file: ENOTDIR")
t.is(select(3, fs.write(p("nodir/f"), "x")), "ENOENT", "write into a missing dir: ENOENT")
t.raises(function() fs.read(nil) end, "fs.read: path: string expected, got nil", "misuse raises naming the argument")
t.raises(function() fs.write(p("q"), 42) end, "fs.write: data: string expected", "non-string data raises")
t.raises(function() fs.write(p("q"), "x", {mode = "644"}) end, "fs.write: mode", "string mode raises")
t.raises(function() fs.mkdir(p("q"), {parents = "yes"}) end, "fs.mkdir: parents: boolean", "bad option type raises")
t.raises(function() fs.rename(p("a"), nil) end, "fs.rename: to: string expected", "rename names its argument")
local co = coroutine.wrap(function() return pcall(fs.read, p("a.txt")) end)
local okc, cerr = co()
t.ok(not okc and tostring(cerr):find("fs.read"), "calling outside a task raises")

-- exists, stat, lstat
t.is(fs.exists(p("a.txt")), true, "exists: file")
t.is(fs.exists(base), true, "exists: directory")
t.is(fs.exists(p("missing")), false, "exists: missing is false, not an error")
t.is(fs.exists(p("a.txt/below")), false, "exists: below a file is false")
local st = fs.stat(p("a.txt"))
t.is(st.type, "file", "stat type file")
t.is(st.size, 3, "stat size")
t.ok(math.abs(st.mtime - os.time()) < 60 and st.ctime > 0 and st.atime > 0, "stat times are epoch seconds")
t.is(fs.stat(base).type, "directory", "stat type directory")
assert(proc.run{cmd = {"ln", "-s", "a.txt", p("link")}})
t.is(fs.lstat(p("link")).type, "link", "lstat sees the link")
t.is(fs.stat(p("link")).type, "file", "stat follows it")

-- mkdir
t.is(fs.mkdir(p("d1")), true, "mkdir")
none, err, code = fs.mkdir(p("d1"))
t.is(code, "EEXIST", "mkdir of an existing dir without parents: EEXIST")
t.is(select(3, fs.mkdir(p("x/y/z"))), "ENOENT", "mkdir of a deep path without parents: ENOENT")
t.is(fs.mkdir(p("x/y/z"), {parents = true}), true, "mkdir parents")
t.is(fs.stat(p("x/y/z")).type, "directory", "the deep directory exists")
t.is(fs.mkdir(p("x/y"), {parents = true}), true, "mkdir parents on an existing dir is fine")
t.is(select(3, fs.mkdir(p("a.txt/sub"), {parents = true})), "ENOTDIR", "mkdir parents through a file: ENOTDIR")
t.is(fs.mkdir(p("m700"), {mode = tonumber("700", 8)}), true, "mkdir with mode")
t.is(fs.stat(p("m700")).mode, tonumber("700", 8), "the mode is applied")

-- list: sorted by name, with types
assert(fs.mkdir(p("ls")))
for _, n in ipairs({"zeta", "alpha", "Mid", "beta"}) do assert(fs.write(p("ls/" .. n), n)) end
assert(fs.mkdir(p("ls/dir")))
assert(proc.run{cmd = {"ln", "-s", "alpha", p("ls/lnk")}})
local entries = fs.list(p("ls"))
t.is_deeply(entries, {
  {name = "Mid", type = "file"}, {name = "alpha", type = "file"}, {name = "beta", type = "file"},
  {name = "dir", type = "directory"}, {name = "lnk", type = "link"}, {name = "zeta", type = "file"},
}, "list is sorted by name (bytewise) with types")
t.is_deeply(fs.list(p("d1")), {}, "list of an empty directory")

-- remove
t.is(select(3, fs.remove(p("ls"))), "ENOTEMPTY", "remove of a non-empty dir: ENOTEMPTY")
t.is(fs.remove(p("d1")), true, "remove an empty directory")
t.is(fs.remove(p("empty")), true, "remove a file")
t.is(fs.exists(p("empty")), false, "the file is gone")
-- a tree with a symlink to a directory outside it: the link goes, the outside stays.
assert(fs.mkdir(p("outside")))
assert(fs.write(p("outside/precious"), "keep me"))
assert(fs.mkdir(p("tree/a/b"), {parents = true}))
assert(fs.write(p("tree/a/b/f"), "1"))
assert(fs.write(p("tree/a/g"), "2"))
assert(proc.run{cmd = {"ln", "-s", p("outside"), p("tree/a/out")}})
t.is(fs.remove(p("tree"), {recursive = true}), true, "recursive remove")
t.is(fs.exists(p("tree")), false, "the tree is gone")
t.is(fs.read(p("outside/precious")), "keep me", "a symlink in the tree is not followed")
t.is(fs.remove(p("link"), {recursive = true}), true, "recursive remove of a symlink removes the link")
t.is(fs.read(p("a.txt")), "xyz", "and not its target")

-- rename
t.is(fs.rename(p("a.txt"), p("b.txt")), true, "rename")
t.is(fs.exists(p("a.txt")), false, "old name gone")
t.is(fs.read(p("b.txt")), "xyz", "new name has the content")

-- concurrency: many tasks at once
local handles = {}
for i = 1, 64 do
  handles[i] = task.spawn(function()
    local f = p("c" .. i)
    assert(fs.write(f, string.rep(tostring(i), 1000 + i)))
    local s = assert(fs.read(f))
    assert(fs.remove(f))
    return #s
  end)
end
local all_ok = true
for i = 1, 64 do
  local ok, n = handles[i]:join()
  if not ok or n ~= #string.rep(tostring(i), 1000 + i) then all_ok = false end
end
t.ok(all_ok, "64 concurrent tasks write, read and remove their own files")

-- cancellation mid-operation: the request outlives the task; nothing leaks (ASan) and the
-- task is not touched again.
local cancelled = {}
for i = 1, 40 do
  local h = task.spawn(function()
    if i % 2 == 0 then return fs.read(p("big")) end
    return fs.write_atomic(p("conf2"), i % 4 == 1 and "short" or big)
  end)
  h:cancel()
  cancelled[#cancelled + 1] = h
end
local all_cancelled = true
for _, h in ipairs(cancelled) do
  if h:status() ~= "cancelled" then all_cancelled = false end
end
t.ok(all_cancelled, "40 tasks cancelled while their fs operation is queued or running")
-- Jobs already running when their task was cancelled finish on the pool, and nothing can
-- await them (their task is gone): wait, with a deadline, until their temp files are gone.
local time = require "steward.time"
local deadline = time.monotonic() + 10
while temp_files(base) > 0 and time.monotonic() < deadline do time.sleep("10ms") end
t.is(temp_files(base), 0, "cancelled write_atomic jobs leave no temp files")
local c2 = fs.read(p("conf2"))
t.ok(c2 == "short" or c2 == big, "a cancelled write_atomic leaves whole content, old or new")

-- timeouts (task-level) during fs work are cancellations too
local th = task.spawn({timeout = "1ms"}, function()
  for _ = 1, 1000 do fs.read(p("big")) end
end)
local tok, terr = th:join()
t.ok(not tok and tostring(terr):find("timeout"), "a task timing out during reads ends with timeout")

t.is(fs.remove(base, {recursive = true}), true, "clean up the scratch directory")
t.done()
