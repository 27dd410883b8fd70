-- Runs a docs page's Lua examples as the reader would: each ```lua block that starts with
-- `local` (the other blocks are fragments of a config) runs in its own environment, and what it
-- prints must be what its `--> ` comments say, in order (a comment may be cut short with
-- a trailing part the reader need not see). Used by the specs of the pages' modules:
--   assert(loadfile("tests/support/doc_examples.lua"))()("docs/scaling/keda.md", assert)
return function(path, assert)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  local ran = 0
  for code in text:gmatch("```lua\n(.-)```") do
    if code:match("^local ") then
      ran = ran + 1
      local want, got = {}, {}
      for line in code:gmatch("%-%-> ([^\n]*)") do want[#want + 1] = line end
      local fn = assert(loadstring(code, "=" .. path))
      setfenv(fn, setmetatable({ print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        got[#got + 1] = table.concat(parts, " ")
      end }, { __index = _G }))
      fn()
      assert.equal(#got, #want)
      for i = 1, #got do assert.equal(got[i], want[i]:sub(1, #got[i])) end
    end
  end
  assert.truthy(ran > 0)
end
