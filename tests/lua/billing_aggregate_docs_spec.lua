-- docs/billing/metrics.md runs as written: every ```lua block runs in a fresh environment and
-- prints what its `-->` comments say, so the page and steward.billing.aggregate cannot drift.
local t = require "steward.tap"

local page = os.getenv("BILLING_DOC") or "docs/billing/metrics.md"
local ran = assert(loadfile("tests/support/doc_examples.lua"))().tap(t, page)
t.ok(ran >= 5, page .. " has its examples")
t.done()
