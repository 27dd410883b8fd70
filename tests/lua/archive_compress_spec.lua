-- steward.compress: zstd files written and read back in bounded chunks, the SHA-256 of the
-- compressed bytes, the .part discipline, and clear errors (naming the file) for damaged input.
local t = require "steward.tap"
local compress = require "steward.compress"
local crypto = require "steward.crypto"
local fs = require "steward.fs"
local task = require "steward.task"

local base = (os.getenv("TMPDIR") or "/tmp") .. "/steward-compress-spec-" .. os.time() .. "-" .. math.random(1e6)
assert(fs.mkdir(base))
local function p(name) return base .. "/" .. name end

local function read_all(path, opts)
  local r, err = compress.reader(path, opts)
  if not r then return nil, err end
  local parts, max = {}, 0
  while true do
    local s, rerr = r:read()
    if rerr then return nil, rerr end
    if not s then break end
    if #s > max then max = #s end
    parts[#parts + 1] = s
  end
  return table.concat(parts), r:sha256(), max
end

-- a round trip, in several writes, on the thread pool (a task)
local w = assert(compress.writer(p("a.zst")))
t.ok(fs.exists(p("a.zst.part")) and not fs.exists(p("a.zst")), "a writer writes <path>.part until close")
local lines = {}
for i = 1, 5000 do lines[i] = ('{"seq":%d,"type":"usage.recorded"}\n'):format(i) end
local text = table.concat(lines)
t.is(w:write(text:sub(1, 1000)), true, "write")
t.is(w:write(text:sub(1001)), true, "write again")
local info = assert(w:close())
t.ok(fs.exists(p("a.zst")) and not fs.exists(p("a.zst.part")), "close renames it to its final name")
t.is(info.raw, #text, "close reports the uncompressed size")
t.is(info.bytes, fs.stat(p("a.zst")).size, "close reports the compressed size")
t.ok(info.bytes * 10 < info.raw, "JSON lines compress well (" .. info.bytes .. " of " .. info.raw .. " bytes)")
t.is(info.sha256, crypto.hex(crypto.sha256(assert(fs.read(p("a.zst"))))), "sha256 is the digest of the file's bytes")
local back, digest, max = read_all(p("a.zst"), { chunk = 4096 })
t.is(back, text, "reading gives back exactly what was written")
t.is(digest, info.sha256, "the reader's sha256 matches the writer's")
t.ok(max <= 4096, "reads come in chunks of at most the asked size")
t.raises(function() w:write("x") end, "already closed", "a closed writer refuses writes")

-- large input: output in bounded chunks, not one string
local big = string.rep("0123456789abcdef", 1024 * 1024) -- 16 MiB
w = assert(compress.writer(p("big.zst")))
for _ = 1, 4 do assert(w:write(big)) end
info = assert(w:close())
t.is(info.raw, 4 * #big, "64 MiB written through the compressor")
local r = assert(compress.reader(p("big.zst")))
local total, chunks, biggest = 0, 0, 0
while true do
  local s = assert(r:read() or true)
  if s == true then break end
  total, chunks = total + #s, chunks + 1
  if #s > biggest then biggest = #s end
end
t.is(total, 4 * #big, "all of it read back")
t.ok(biggest <= 256 * 1024 and chunks >= 256, "in chunks of 256 KiB by default (" .. chunks .. " chunks)")

-- damaged files: an answer naming the file, never a crash
local good = assert(fs.read(p("a.zst")))
assert(fs.write(p("trunc.zst"), good:sub(1, #good - 7)))
local _, err = read_all(p("trunc.zst"))
t.like(err, "trunc%.zst: truncated archive", "a truncated file is named as truncated")
local flipped = good:sub(1, 100) .. string.char((good:byte(101) + 1) % 256) .. good:sub(102)
assert(fs.write(p("flip.zst"), flipped))
_, err = read_all(p("flip.zst"))
t.like(err, "flip%.zst: corrupt archive %(zstd%)", "a flipped byte is found (zstd's checksum)")
assert(fs.write(p("empty.zst"), ""))
_, err = read_all(p("empty.zst"))
t.like(err, "empty%.zst: truncated archive: empty file", "an empty file is not an archive")
assert(fs.write(p("text.zst"), "not zstd at all\n"))
_, err = read_all(p("text.zst"))
t.like(err, "text%.zst: corrupt archive", "a file that is not zstd")
_, err = compress.reader(p("missing.zst"))
t.like(err, "missing%.zst: open: No such file", "a missing file")
_, err = compress.writer(p("no/such/dir/x.zst"))
t.like(err, "x%.zst: open:", "a writer in a missing directory")

-- abort leaves nothing behind
w = assert(compress.writer(p("gone.zst")))
assert(w:write("abc"))
w:abort()
t.ok(not fs.exists(p("gone.zst.part")) and not fs.exists(p("gone.zst")), "abort removes the partial file")

-- misuse raises, naming the argument
t.raises(function() compress.writer(42) end, "compress.writer: path: string expected", "writer: path")
t.raises(function() compress.writer(p("x"), { level = 99 }) end, "level: integer from 1 to 9", "writer: level")
t.raises(function() compress.reader(p("a.zst"), { chunk = 0 }) end, "chunk: integer", "reader: chunk")
w = assert(compress.writer(p("m.zst")))
t.raises(function() w:write(nil) end, "data: string expected", "write: data")

-- one operation at a time per file; a task cancelled mid-read leaves the process sane
r = assert(compress.reader(p("big.zst"), { chunk = 1024 * 1024 }))
local th = task.spawn(function() return r:read() end)
t.raises(function() r:read() end, "another operation on this file is in progress", "a second read while one runs")
assert(th:join())
local th2 = task.spawn(function() while r:read() do end end)
th2:cancel()
collectgarbage(); collectgarbage()
t.pass("a cancelled read and a collected reader")

-- outside a task (a plain coroutine), the same calls run at once
local co = coroutine.wrap(function()
  local cw = assert(compress.writer(p("sync.zst")))
  assert(cw:write("hello"))
  assert(cw:close())
  return read_all(p("sync.zst"))
end)
t.is(co(), "hello", "the synchronous path outside a task")

assert(fs.remove(base, { recursive = true }))
t.done()
