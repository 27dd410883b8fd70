-- steward.archive.segment: one archive file: JSON lines (one event or decision per line, in
-- seq/id order) in a zstd frame, written and read in bounded memory through steward.compress.
-- Readers raise on a bad file (inside a for loop nobody sees a nil, err): the error names the
-- file and what is wrong with it (zstd corruption, truncation, a line that is not a record).
local compress = require "steward.compress"
local json = require "steward.json"

local type, tostring, error, find, sub, concat = type, tostring, error, string.find, string.sub, table.concat

local M = {}

-- writer(path) -> w with w:add(record), w:close() -> {bytes, raw, sha256, count} | nil, err.
-- Lines are buffered up to BUF bytes between writes to the compressor (one pool job each).
local BUF = 256 * 1024

function M.writer(path)
  local cw, err = compress.writer(path)
  if not cw then return nil, err end
  local buf, size, count = {}, 0, 0
  local w = {}
  local function flush()
    if size == 0 then return true end
    local ok, werr = cw:write(concat(buf))
    buf, size = {}, 0
    return ok, werr
  end
  function w.add(record)
    local line = json.encode(record) .. "\n"
    buf[#buf + 1] = line
    size = size + #line
    count = count + 1
    if size >= BUF then return flush() end
    return true
  end
  function w.close()
    local ok, ferr = flush()
    if not ok then cw:abort(); return nil, ferr end
    local info, cerr = cw:close()
    if not info then cw:abort(); return nil, cerr end
    info.count = count
    return info
  end
  function w.abort() cw:abort() end
  return w
end

-- records(path) -> iterator over the decoded records; at the end, sha256 and count are in the
-- returned stats table (for verify). Raises on a bad file.
function M.records(path)
  local r, err = compress.reader(path)
  if not r then error(err, 2) end
  local stats = { count = 0 }
  local pending, pos, lineno, done = "", 1, 0, false
  local function more()
    local chunk, rerr = r:read()
    if rerr then r:close(); error(rerr, 0) end
    if not chunk then
      done = true
      stats.sha256 = r:sha256()
      r:close()
      return false
    end
    pending = sub(pending, pos) .. chunk
    pos = 1
    return true
  end
  local function iter()
    while true do
      local nl = find(pending, "\n", pos, true)
      if nl then
        local line = sub(pending, pos, nl - 1)
        pos = nl + 1
        lineno = lineno + 1
        local ok, rec = pcall(json.decode, line)
        if not ok or type(rec) ~= "table" then
          error(path .. ": line " .. lineno .. ": not a JSON record", 0)
        end
        stats.count = lineno
        return rec
      end
      if done or not more() then
        if pos <= #pending then error(path .. ": truncated archive: the last line has no end", 0) end
        return nil
      end
    end
  end
  return iter, stats
end

return M
