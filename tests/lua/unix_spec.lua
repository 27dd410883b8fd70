-- steward.unix: the admin socket's framed unix-domain streams (listen/accept/connect,
-- frames split and merged, peer credentials, malformed and oversized frames, the socket
-- file's lifecycle and mode, wake-ups on close, write backpressure, cancellation).
local t = require "steward.tap"
local unix = require "steward.unix"
local task = require "steward.task"
local time = require "steward.time"
local fs = require "steward.fs"
local ffi = require "ffi"

-- A raw client (bytes the framed conn would never send) and the process's ids.
ffi.cdef [[
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, unsigned int len);
int connect(int fd, const void *addr, unsigned int len);
long write(int fd, const void *buf, unsigned long n);
int close(int fd);
unsigned int getuid(void);
unsigned int getgid(void);
int getpid(void);
struct steward_unix_spec_addr { unsigned short family; char path[108]; };
]]
local AF_UNIX, SOCK_STREAM = 1, 1

local function raw_socket(path, op)
  local fd = ffi.C.socket(AF_UNIX, SOCK_STREAM, 0)
  assert(fd >= 0, "socket")
  local a = ffi.new("struct steward_unix_spec_addr")
  a.family = AF_UNIX
  ffi.copy(a.path, path)
  if ffi.C[op](fd, a, ffi.sizeof(a)) ~= 0 then
    ffi.C.close(fd)
    return nil
  end
  return fd
end
local function raw_write(fd, s) assert(ffi.C.write(fd, s, #s) == #s, "raw write") end

local function frame(ty, p)
  p = p or ""
  local n = #p
  return ty .. string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256) .. p
end

local base = (os.getenv("TMPDIR") or "/tmp") .. "/steward-unix-" .. os.time() .. "-" ..
  math.random(1e6)
assert(fs.mkdir(base))
local path = base .. "/admin.sock"

-- Runs fn as a task that cannot hang the suite.
local function spawn(fn, ...) return task.spawn({ name = "unix-spec", timeout = 10 }, fn, ...) end

local function body()
  -- listen / connect / accept round trip
  local srv, err = unix.listen(path)
  t.ok(srv, "listen: " .. tostring(err))
  t.is(srv:path(), path, "server:path()")
  local st = fs.stat(path)
  t.is(st.type, "socket", "the socket file exists")
  t.is(st.mode, 384, "created with mode 0600 by default")
  t.is(st.uid, ffi.C.getuid(), "owned by us")

  local acc = spawn(function() return srv:accept() end)
  local cli = assert(unix.connect(path))
  local _, sconn = acc:join()
  t.ok(sconn, "accept returns the connection")
  t.is(cli:write("E", "return 1 + 1"), true, "write returns true")
  local ty, payload = sconn:read()
  t.is(ty, "E", "read gives the type")
  t.is(payload, "return 1 + 1", "and the payload")
  assert(sconn:write("R", "2"))
  assert(sconn:write("I"))
  assert(sconn:write("O", "bin\0ary"))
  t.is_deeply({ cli:read() }, { "R", "2" }, "the answer comes back")
  t.is_deeply({ cli:read() }, { "I", "" }, "a zero-length frame reads as an empty payload")
  t.is_deeply({ cli:read() }, { "O", "bin\0ary" }, "payloads are binary-safe")

  -- peer credentials, on both ends
  local p = sconn:peer()
  t.is(p and p.uid, ffi.C.getuid(), "peer().uid is our uid")
  t.is(p and p.gid, ffi.C.getgid(), "peer().gid is our gid")
  t.is(p and p.pid, ffi.C.getpid(), "peer().pid is our pid")
  t.is(cli:peer().pid, ffi.C.getpid(), "the client sees the server's credentials too")

  -- misuse
  t.raises(function() cli:write("Q", "x") end, "frame type expected", "an unknown type raises")
  t.raises(function() cli:write("EE", "x") end, "frame type expected", "a type is one byte")
  t.raises(function() cli:write() end, "string expected", "the type is required")
  local r2 = spawn(function() return sconn:read() end)
  t.raises(function() sconn:read() end, "another task is already reading",
    "a second reader raises")
  local a2 = spawn(function() return srv:accept() end)
  t.raises(function() srv:accept() end, "another task is already accepting",
    "a second accepter raises")

  -- read and write at once from two tasks on one conn; the reader then gets the interrupt
  local outs = {}
  local writer = spawn(function()
    for i = 1, 5 do assert(sconn:write("O", "line " .. i)) end
    return true
  end)
  for i = 1, 5 do outs[i] = select(2, cli:read()) end
  t.is_deeply(outs, { "line 1", "line 2", "line 3", "line 4", "line 5" },
    "a task writes while another waits in read")
  t.is(r2:status(), "running", "the reader still waits")
  cli:write("I")
  local ok, rty = r2:join()
  t.ok(ok and rty == "I", "then the reader gets the interrupt")
  t.ok(writer:join(), "the writer finished")
  cli:close(); sconn:close()

  -- the second accepter gets the next connection; close wakes a blocked reader
  local cli2 = assert(unix.connect(path))
  local _, sconn2 = a2:join()
  t.ok(sconn2, "a queued accepter gets the next connection")
  local rr = spawn(function() return sconn2:read() end)
  sconn2:close()
  t.is_deeply({ select(2, rr:join()) }, { nil, "closed" }, "close wakes the reader with 'closed'")
  t.is_deeply({ sconn2:read() }, { nil, "closed" }, "read on a closed conn")
  t.is_deeply({ sconn2:write("O", "x") }, { nil, "closed" }, "write on a closed conn")
  t.is_deeply({ sconn2:peer() }, { nil, "closed" }, "peer on a closed conn")
  sconn2:close()
  t.pass("close twice is harmless")
  t.is_deeply({ cli2:read() }, { nil, "closed" }, "the peer sees EOF as 'closed'")
  cli2:close()

  -- connections that arrive while nobody accepts queue up, in order
  local c3 = assert(unix.connect(path))
  local c4 = assert(unix.connect(path))
  c3:write("H", "first")
  c4:write("H", "second")
  local s3, s4 = assert(srv:accept()), assert(srv:accept())
  t.is(select(2, s3:read()), "first", "queued connections are accepted in order (1)")
  t.is(select(2, s4:read()), "second", "queued connections are accepted in order (2)")
  for _, c in ipairs({ c3, c4, s3, s4 }) do c:close() end

  -- frames split across reads and merged in one write
  local fd = assert(raw_socket(path, "connect"))
  local sraw = assert(srv:accept())
  local f1 = frame("E", "split payload")
  raw_write(fd, f1:sub(1, 2)); time.sleep("20ms") -- shaping the stream, not synchronising
  raw_write(fd, f1:sub(3, 5)); time.sleep("20ms")
  raw_write(fd, f1:sub(6, 10)); time.sleep("20ms")
  raw_write(fd, f1:sub(11))
  t.is_deeply({ sraw:read() }, { "E", "split payload" }, "a frame split in four writes")
  raw_write(fd, frame("H", "a") .. frame("C", "pri") .. frame("I") .. frame("J", "{}"))
  local merged = {}
  for i = 1, 4 do merged[i] = table.concat({ sraw:read() }, ":") end
  t.is_deeply(merged, { "H:a", "C:pri", "I:", "J:{}" }, "four frames in one write")

  -- a malformed frame ends that conn's reading only
  raw_write(fd, frame("E", "ok") .. "Zjunk")
  t.is_deeply({ sraw:read() }, { "E", "ok" }, "the frame before the garbage is delivered")
  local none, merr = sraw:read()
  t.is(none, nil, "then read fails")
  t.is(merr, "malformed frame: unknown frame type 0x5a", "with the decoder's reason")
  t.is(select(2, sraw:read()), merr, "and keeps failing")
  t.is(sraw:write("B", "bad frame"), true, "the conn can still send a goodbye")
  sraw:close()
  ffi.C.close(fd)
  local c5 = assert(unix.connect(path))
  local s5 = assert(srv:accept())
  c5:write("E", "still here")
  t.is(select(2, s5:read()), "still here", "the server keeps working for other conns")
  c5:close(); s5:close()

  -- cancelling blocked accept and read tasks; the server works afterwards
  local ha = spawn(function() return srv:accept() end)
  t.is(ha:cancel(), true, "cancel a task blocked in accept")
  local c6 = assert(unix.connect(path))
  local s6 = assert(srv:accept())
  t.ok(s6, "accept works after a cancelled accepter")
  local hr = spawn(function() return s6:read() end)
  t.is(hr:cancel(), true, "cancel a task blocked in read")
  c6:write("E", "after cancel")
  t.is(select(2, s6:read()), "after cancel", "read works after a cancelled reader")
  c6:close(); s6:close()

  -- close wakes a waiting accepter and unlinks the file
  local hw = spawn(function() return srv:accept() end)
  srv:close()
  t.is_deeply({ select(2, hw:join()) }, { nil, "closed" }, "close wakes the accepter")
  t.is(fs.exists(path), false, "close removes the socket file")
  srv:close()
  t.pass("server close twice is harmless")
  t.is(srv:path(), path, "path() after close")
  t.is_deeply({ srv:accept() }, { nil, "closed" }, "accept on a closed server")
  local none2, cerr, code = unix.connect(path)
  t.is(none2, nil, "connect to a missing socket fails")
  t.is(cerr, "ENOENT: no such file or directory: " .. path, "naming the path")
  t.is(code, "ENOENT", "with the code")

  -- too-large frames, against a small max_frame
  local small = assert(unix.listen(path, { max_frame = 1024 }))
  local c7 = assert(unix.connect(path))
  local s7 = assert(small:accept())
  c7:write("E", string.rep("x", 1024))
  t.is(#select(2, s7:read()), 1024, "a frame of exactly max_frame passes")
  c7:write("E", string.rep("x", 2000))
  t.is_deeply({ s7:read() },
    { nil, "malformed frame: frame of 2000 bytes is over the limit of 1024" },
    "a frame over max_frame is refused")
  c7:close(); s7:close()
  t.is(select(2, c7:write("E", "x")), "closed", "writes to a closed conn fail")

  -- a live listener is never replaced; a stale file is
  local dup, derr, dcode = unix.listen(path)
  t.is(dup, nil, "a second listen on a live socket fails")
  t.is(derr, "address in use: " .. path .. " (another daemon is listening)", "err says why")
  t.is(dcode, "EADDRINUSE", "code EADDRINUSE")
  small:close()
  local sfd = assert(raw_socket(path, "bind"), "bind a socket nobody listens on")
  ffi.C.close(sfd)
  t.is(fs.stat(path).type, "socket", "a stale socket file is left behind")
  local none3, e3, c3code = unix.connect(path)
  t.is(c3code, "ECONNREFUSED", "connecting to it is refused: " .. tostring(e3))
  local again = unix.listen(path)
  t.ok(again, "listen replaces a stale socket")
  local c8 = assert(unix.connect(path))
  local s8 = again:accept()
  t.ok(s8, "and serves on it")
  c8:close(); if s8 then s8:close() end
  again:close()

  -- a file that is not a socket is never touched
  local plain = base .. "/plain"
  assert(fs.write(plain, "keep me"))
  local none4, e4 = unix.listen(plain)
  t.is(none4, nil, "listen on a regular file fails")
  t.is(e4, plain .. " exists and is not a socket", "err names the path")
  t.is(fs.read(plain), "keep me", "the file is untouched")
  local none5, e5 = unix.listen(base .. "/missing/dir.sock")
  t.like(e5, "^ENOENT: .*missing/dir%.sock$", "bind errors name the path")
  t.is(fs.exists(base .. "/missing"), false, "nothing created")
  local long = base .. "/" .. string.rep("l", 120)
  local none6, e6 = unix.listen(long)
  t.like(e6, "^ENAMETOOLONG", "too long a path is refused, not truncated")
  t.raises(function() unix.listen(path, { mode = "0600" }) end, "mode", "mode must be a number")
  t.raises(function() unix.listen(path, { max_frame = 0 }) end, "max_frame", "max_frame >= 1")
  t.raises(function() unix.listen("") end, "non%-empty path", "an empty path raises")
  local none7, e7 = unix.listen(path, { group = "steward-no-such-group" })
  t.like(e7, "unknown group 'steward%-no%-such%-group'", "an unknown group is an error")
  t.is(fs.exists(path), false, "and no file is left")

  -- closing a server whose file was replaced leaves the new owner's file alone
  local old = assert(unix.listen(path))
  assert(fs.remove(path))
  local new = assert(unix.listen(path))
  old:close()
  t.is(fs.exists(path), true, "close does not remove another server's socket file")
  local c9 = assert(unix.connect(path))
  local s9 = new:accept()
  t.ok(s9, "which still serves")
  c9:close(); if s9 then s9:close() end
  new:close()
  t.is(fs.exists(path), false, "its own close removes it")

  -- mode and group
  local g = assert(unix.listen(path, { mode = 432, group = ffi.C.getgid() })) -- 0660
  st = fs.stat(path)
  t.is(st.mode, 432, "mode 0660 as asked (umask does not interfere)")
  t.is(st.gid, ffi.C.getgid(), "the group is set")
  g:close()

  -- a script that ends with a server and conns open exits (and the file goes)
  local child = base .. "/child.lua"
  local cpath = base .. "/child.sock"
  assert(fs.write(child, [[
local unix = require "steward.unix"
local srv = assert(unix.listen(arg[1]))
local c = assert(unix.connect(arg[1]))
local s = assert(srv:accept())
c:write("E", "unread")
print("served")
]]))
  local r = require("steward.proc").run({
    cmd = { os.getenv("STEWARD_BIN") or "build/steward", "script", child, cpath }, timeout = 10 })
  t.ok(r.code == 0 and r.stdout == "served\n" and not r.timed_out,
    "open conns do not keep a script alive (" .. r.stderr .. ")")
  t.is(fs.exists(cpath), false, "the socket file is removed at exit")

  -- write backpressure: 8 MiB to a peer that does not read
  local bp = assert(unix.listen(path, { max_frame = 4 * 1024 * 1024 }))
  local wc = assert(unix.connect(path))
  local rs = assert(bp:accept())
  local chunk = string.rep("0123456789abcdef", 4096) -- 64 KiB
  local sent = 0
  local hwr = spawn(function()
    for i = 1, 128 do
      assert(wc:write("O", chunk))
      sent = i
    end
    return true
  end)
  t.is(hwr:status(), "running", "the writer yields while the peer does not read")
  t.ok(sent < 128, "after " .. sent .. " of 128 frames")
  local good = 0
  for _ = 1, 128 do
    local ty2, p2 = rs:read()
    if ty2 == "O" and p2 == chunk then good = good + 1 end
  end
  t.is(good, 128, "the reader gets all 8 MiB intact")
  t.ok(hwr:join(), "and the writer completes")

  -- outside a yieldable context write only queues
  local big = string.rep("x", 3 * 1024 * 1024)
  local qok
  string.gsub("x", "x", function() qok = wc:write("O", big) end)
  t.is(qok, true, "write in a non-yieldable callback queues without waiting")
  t.is(#select(2, rs:read()), #big, "and the data arrives")

  -- cancelling a blocked writer, then closing with writes pending
  local hb = spawn(function()
    for _ = 1, 64 do assert(wc:write("O", chunk)) end
  end)
  t.is(hb:status(), "running", "a second writer is blocked")
  t.is(hb:cancel(), true, "cancel a task blocked in write")
  local hb2 = spawn(function()
    for _ = 1, 64 do
      local okw, ew = wc:write("O", chunk)
      if not okw then return ew end
    end
  end)
  wc:close()
  t.is(select(2, hb2:join()), "closed", "close wakes a blocked writer with 'closed'")
  rs:close()
  bp:close()
end

local okb, berr = xpcall(body, debug.traceback)
if not okb then t.fail("spec body raised", berr) end
fs.remove(base, { recursive = true })
t.done()
