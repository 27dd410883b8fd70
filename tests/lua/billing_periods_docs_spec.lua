-- docs/billing/periods.md runs as written: every ```lua block runs in a fresh environment and
-- prints what its `-->` comments say, so the page and steward.billing.periods cannot drift.
local t = require "steward.tap"

local page = os.getenv("BILLING_DOC") or "docs/billing/periods.md"
local ran = assert(loadfile("tests/support/doc_examples.lua"))().tap(t, page)
t.ok(ran >= 4, page .. " has its examples")
t.done()
