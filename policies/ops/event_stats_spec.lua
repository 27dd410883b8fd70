-- Spec for policies/ops/event_stats.lua: counters per type and tenant in the kv namespace
-- "event_stats". Run with `steward test policies`.
local kv = require "steward.kv"

describe("ops.event_stats", function()
  local p, ns
  before_each(function()
    p = policy.load("policies/ops/event_stats.lua")
    ns = kv.ns("event_stats", store)
  end)

  it("is named ops.event_stats and handles every event type", function()
    assert.equal(p.name, "ops.event_stats")
    assert.truthy(p:matches("alert.firing"))
    assert.truthy(p:matches("deploy.finished"))
  end)

  it("counts an event per type and tenant, with the time it was seen", function()
    p:handle({ type = "demo.hello", tenant = "t1" })
    assert.same(ns:get("demo.hello/t1"), { count = 1, last_seen = clock.now() })
    clock.advance("5m")
    p:handle({ type = "demo.hello", tenant = "t1" })
    assert.same(ns:get("demo.hello/t1"), { count = 2, last_seen = clock.now() })
  end)

  it("keeps separate counters per tenant, and '-' for events without one", function()
    p:handle({ type = "demo.other", tenant = "a" })
    p:handle({ type = "demo.other" })
    p:handle({ type = "demo.other" })
    assert.same(ns:get("demo.other/a").count, 1)
    assert.same(ns:get("demo.other/-").count, 2)
  end)

  it("writes only its kv namespace, and has no other side effects", function()
    p:handle({ type = "demo.quiet", tenant = "t9" })
    local writes = writes_to("kv")
    assert.count(writes, 1)
    assert.equal(writes[1].params[1], "event_stats")
    assert.equal(writes[1].params[2], "demo.quiet/t9")
    assert.count(captured.http, 0)
    assert.count(captured.events, 0)
    assert.count(captured.timers, 0)
  end)

  it("orders events by type (one counter per type never races)", function()
    assert.equal(p.def.key({ type = "x.y", tenant = "t" }), "x.y")
  end)
end)
