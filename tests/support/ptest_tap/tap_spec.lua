-- Output that must stay valid TAP: printed lines, multi-line values in failures, a "#" in a
-- test name, an error message of several lines. Run by tests/e2e/steward_test.t.
local big = {}
for i = 1, 12 do big["key" .. i] = { i, "value number " .. i } end

describe("tap", function()
  it("prints from a spec", function() print("first line\nsecond line", 42) end)
  it("FAILS: a multi-line got", function() assert.same(big, { key1 = 1 }) end)
  it("FAILS: a long string got", function() assert.equal(string.rep("line of text\n", 3), "x") end)
  it("FAILS: an error of two lines", function() error("line one\nline two") end)
  it("names a # TODO that is not a directive", function() assert.truthy(true) end)
end)
