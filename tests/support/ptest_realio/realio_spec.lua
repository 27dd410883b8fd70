-- Fixture for tests/e2e/steward_test.t: a spec that opts into real I/O. The .t file starts
-- tests/support/http_server.py and passes its port in PTEST_HTTP_PORT.
real_io = true

local port = assert(os.getenv("PTEST_HTTP_PORT"), "PTEST_HTTP_PORT is not set")
local url = "http://127.0.0.1:" .. port .. "/status/204"

describe("real I/O", function()
  it("sends an unstubbed request for real, and still records it", function()
    local p = policy.load("../ptest_fail/notify.lua", { config = { url = url } })
    assert.equal(p:handle({ type = "alert.firing" }), 204)
    assert.count(captured.http, 1)
    assert.truthy(captured.http[1].real)
    assert.equal(captured.http[1].response.status, 204)
  end)

  it("still answers stubbed requests from the stub", function()
    http_stub.on("POST", url, { status = 299 })
    local p = policy.load("../ptest_fail/notify.lua", { config = { url = url } })
    assert.equal(p:handle({ type = "alert.firing" }), 299)
    assert.falsy(captured.http[1].real)
  end)
end)
