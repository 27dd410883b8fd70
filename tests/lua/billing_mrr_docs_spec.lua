-- docs/billing/mrr.md runs as written: each ```lua block of the page that is not a walkthrough
-- step (those run against a daemon in tests/e2e/billing_mrr.t) or a config fragment runs in a
-- fresh environment, and what it prints matches its `-->` comments, so page and modules cannot
-- drift apart.
local t = require "steward.tap"

local ran = assert(loadfile("tests/support/doc_examples.lua"))().tap(t, "docs/billing/mrr.md", {
  exact = true,
  skip = function(before) return before:match("walkthrough:") ~= nil end,
})
t.ok(ran >= 1, "the page has a Lua example")
t.done()
