-- docs/billing/invoices.md: every Lua example on the page runs as written and prints what its
-- --> comments say (tests/support/doc_examples.lua).
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

describe("docs/billing/invoices.md", function()
  it("its examples run as written and print what their --> comments say", function()
    assert(loadfile("tests/support/doc_examples.lua"))()("docs/billing/invoices.md", assert)
  end)
end)
