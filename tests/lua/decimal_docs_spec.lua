-- docs/lua-api/decimal.md: every example runs as written and prints what its --> comments say.
local t = require "steward.tap"

local examples = assert(loadfile("tests/support/doc_examples.lua"))()
examples("docs/lua-api/decimal.md", examples.checks(t, "docs/lua-api/decimal.md"))

t.done()
