-- os.time() and os.date() in a policy follow the fake clock, like time.now().
local p = policy.load("gate.lua")

describe("gate", function()
  it("sees the fake clock through os.time and os.date", function()
    local r = p:decide({})
    assert.equal(r.os_time, 1767225600)          -- 2026-01-01T00:00:00Z, the clock's start
    assert.equal(r.os_date, "2026-01-01 00:00:00")
    assert.equal(r.date_t, 0)
  end)
  it("moves with clock.advance", function()
    clock.advance("1d9h30m")                      -- Friday 2026-01-02 09:30 UTC, 10:30 in Paris
    local r = p:decide({})
    assert.equal(r.os_time, 1767225600 + 86400 + 9 * 3600 + 1800)
    assert.equal(r.os_date, "2026-01-02 09:30:00")
    assert.equal(r.local_text, "Fri 10:30 CET")
    assert.equal(r.allow, true)
  end)
  it("closes the gate at 17:00 local time", function()
    clock.advance("1d16h")                        -- 2026-01-02 16:00 UTC = 17:00 CET
    assert.equal(p:decide({}).allow, false)
  end)
  it("keeps the plain conversions of a given time", function()
    local r = p:decide({})
    assert.equal(r.fixed, "1970")
    assert.equal(type(r.table_time), "number")
  end)
end)
