-- The capacity and cost pages run as written: every ```lua block of docs/scaling/capacity.md
-- and docs/scaling/cost.md runs in a fresh environment, and what a block prints matches the
-- `-->` comments after its print calls (whitespace aside), so the pages and the modules cannot
-- drift apart.
local t = require "steward.tap"

local examples = assert(loadfile("tests/support/doc_examples.lua"))()
for _, page in ipairs({ "docs/scaling/capacity.md", "docs/scaling/cost.md" }) do
  examples.tap(t, page, { count = false })
end
t.done()
