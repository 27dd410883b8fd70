-- docs/lua-api/decimal.md: every example runs as written and prints what its --> comments say.
local t = require "steward.tap"

local checks = setmetatable({
  equal = function(got, want) t.is(got, want, "prints " .. tostring(want)) end,
  truthy = function(v) t.ok(v, "the page has examples") end,
}, { __call = function(_, v, msg, ...)
  if not v then error(msg or "assertion failed", 2) end
  return v, msg, ...
end })
assert(loadfile("tests/support/doc_examples.lua"))()("docs/lua-api/decimal.md", checks)

t.done()
