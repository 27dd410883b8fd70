-- steward.unix with {raw = true}: plain bytes both ways (the transport of line protocols such
-- as HAProxy's runtime API, steward.deploy.haproxy): bytes arrive as sent, in chunks, until
-- the peer closes; a framed conn is unchanged.
local t = require "steward.tap"
local unix = require "steward.unix"
local task = require "steward.task"

local path = "/tmp/steward-unix-raw-" .. os.time() .. "-" .. math.random(1e6) .. ".sock"

local function body()
  local srv = assert(unix.listen(path, { raw = true }))
  local server = task.spawn(function()
    local conn = assert(srv:accept())
    local got = {}
    while true do
      local data, err = conn:read()
      if not data then break end
      got[#got + 1] = data
      if table.concat(got):find("\n", 1, true) then break end
    end
    -- a line protocol answers and closes, like HAProxy's non-interactive runtime API
    conn:write("you said: " .. table.concat(got))
    conn:write(("x"):rep(200000))
    conn:close()
  end)
  local c = assert(unix.connect(path, { raw = true }))
  t.is(c:write("show "), true, "a raw write takes plain bytes")
  c:write("info\n")
  local parts = {}
  while true do
    local data, err = c:read()
    if not data then
      t.is(err, "closed", "read returns nil, 'closed' once the peer closed")
      break
    end
    t.is(type(data), "string", "read returns one string (no frame type)")
    parts[#parts + 1] = data
  end
  local all = table.concat(parts)
  t.is(all:sub(1, 20), "you said: show info\n", "the bytes arrive as written, split writes joined")
  t.is(#all, 20 + 200000, "a large answer arrives whole, over several reads")
  server:join()
  c:close()
  -- a raw conn's write raises on a missing argument, naming it
  local srv2_ok = pcall(function() c:write() end)
  t.ok(not srv2_ok, "write without data raises")
  srv:close()

  -- a framed conn to a raw server still frames
  local srv3 = assert(unix.listen(path .. "3", { raw = true }))
  local s3 = task.spawn(function()
    local conn = assert(srv3:accept())
    local data = conn:read()
    conn:close()
    return data
  end)
  local f = assert(unix.connect(path .. "3"))
  f:write("E", "return 1")
  local ok, data = s3:join()
  t.ok(ok, "the raw server task ends")
  t.is(data, "E\0\0\0\8return 1", "a framed client's bytes reach a raw server as the frame's bytes")
  f:close()
  srv3:close()
end

local h = task.spawn({ name = "unix-raw-spec", timeout = 10 }, body)
local ok, err = h:join()
if not ok then t.ok(false, "spec ran: " .. tostring(err)) end
t.done()
