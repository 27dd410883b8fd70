-- Fixture for tests/e2e/steward_test.t: a spec file with a syntax error is reported, not fatal.
describe("broken", function()
  it("never runs", function() end
end)
