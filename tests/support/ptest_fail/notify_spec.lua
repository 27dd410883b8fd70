-- Failing fixture spec for tests/e2e/steward_test.t: each "FAILS" test must be reported as
-- not ok with the text the .t file looks for; the others pass.
-- A stub set while the file loads holds for every test of the file.
http_stub.on("POST", "https://alerts.example.org/file-level", { status = 201 })

describe("notify", function()
  local p
  before_each(function() p = policy.load("notify.lua") end)

  it("passes with a stub", function()
    http_stub.on("POST", "https://alerts.example.org/hook", { status = 202 })
    assert.equal(p:handle({ type = "alert.firing" }), 202)
  end)

  it("FAILS: an unstubbed request", function()
    p:handle({ type = "alert.firing" })
  end)

  it("FAILS: an unstubbed request the policy swallows", function()
    p:handle({ type = "alert.firing", data = { swallow = true } })
  end)

  it("FAILS: a deep difference", function()
    assert.same({ a = 1, b = { c = { 1, 2, 3 } }, d = "x" }, { a = 1, b = { c = { 1, 2, 4 } }, e = true })
  end)

  it("FAILS: an error in the test", function()
    local t = nil
    return t.field
  end)

  it("FAILS: assert.error without an error", function()
    assert.error(function() end, "boom")
  end)

  it("passes after failures, with the file's stub (a test's stubs end with it)", function()
    assert.count(http_stub.requests, 0)
    local q = policy.load("notify.lua", { config = { url = "https://alerts.example.org/file-level" } })
    assert.equal(q:handle({ type = "alert.resolved" }), 201)
    assert.count(captured.http, 1)
  end)
end)
