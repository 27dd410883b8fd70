-- Spec for policies/ops/deploys.lua: the last deploy per service in kv "deploys"; a deploy
-- event without a service fails. Run with `steward test policies`.
local kv = require "steward.kv"

describe("ops.deploys", function()
  local p, ns
  before_each(function()
    p = policy.load("policies/ops/deploys.lua")
    ns = kv.ns("deploys", store)
  end)

  it("handles deploy events only", function()
    assert.truthy(p:matches("deploy.finished"))
    assert.falsy(p:matches("alert.firing"))
  end)

  it("records the last deploy of a service", function()
    p:handle({ id = "d1", type = "deploy.finished", data = { service = "checkout", version = "1.4.2", by = "ana" } })
    clock.advance("1h")
    p:handle({ id = "d2", type = "deploy.started", data = { service = "checkout", version = "1.4.3", by = "bo" } })
    local last = ns:get("checkout")
    assert.equal(last.version, "1.4.3")
    assert.equal(last.status, "started")
    assert.equal(last.event_id, "d2")
    assert.equal(last.at, clock.now())
  end)

  it("fails on a deploy event without a service, writing nothing", function()
    assert.error(function() p:handle({ id = "d3", type = "deploy.finished", data = { version = "2" } }) end,
      "has no data.service")
    assert.count(writes_to("kv"), 0)
  end)

  it("keeps deploys of one service in order", function()
    assert.equal(p.def.key({ id = "x", data = { service = "api" } }), "api")
  end)
end)
