-- Lua side of the steward command line: what `steward eval` runs.
local pretty = require "steward.pretty"

local M = {}

-- Compiles code as an expression first ("return <code>"), then as a statement, as the
-- lua interpreter and Tarantool's console do.
function M.compile(code, chunkname)
  chunkname = chunkname or "=eval"
  local fn = loadstring("return " .. code, chunkname)
  if fn then return fn end
  local err
  fn, err = loadstring(code, chunkname)
  if not fn then return nil, err end
  return fn
end

local function pack(...) return { n = select("#", ...), ... } end

-- Runs code, prints each result on its own line; raises on a compile or run-time error so
-- that the command exits non-zero.
function M.eval(code)
  local fn, err = M.compile(code)
  if not fn then error(err, 0) end
  local res = pack(fn())
  for i = 1, res.n do
    io.stdout:write(pretty.format(res[i], { color = false }), "\n")
  end
  io.stdout:flush()
end

return M
