-- Spec for policies/deploy/promote.lua: staging -> production after the soak time and an
-- approval (production's overlay), with the settings of the next environment; a denied or
-- expired approval stops the promotion; an abort in staging cancels the soak; the last
-- environment promotes nothing; overlays are validated against the settings schema.
local approvals = require "steward.deploy.approvals"
local events = require "steward.events"

local ENVS = {
  order = { "staging", "production" },
  settings = {
    soak = { type = "duration", default = "30m" },
    approval = { type = "boolean", default = false },
    approvers = { type = "array", default = { "operator" } },
    approval_timeout = { type = "duration", default = "4h" },
    replicas = { type = "integer", default = 2, min = 1 },
  },
  overlays = { production = { approval = true, replicas = 6, soak = "1h" } },
}

local DONE = { type = "rollout.completed", data = { service = "api", revision = "r42", environment = "staging" } }

describe("deploy.promote", function()
  local p
  before_each(function()
    p = policy.load("promote.lua", { config = { environments = ENVS } })
  end)

  it("soaks, asks for approval, then requests the deploy in production", function()
    local r = p:handle(DONE)
    assert.equal(r.seconds, 3600, "production's soak")
    assert.count(captured.events, 0)
    clock.advance("59m")
    assert.count(captured.fired, 0)
    clock.advance("1m") -- the soak timer fires: an approval is requested
    assert.count(captured.fired, 1)
    local list = assert(approvals.list({ subject = "promote:api:r42:production" }))
    assert.count(list, 1)
    assert.equal(list[1].state, "pending")
    assert.equal(list[1].step, "promote to production")
    assert.count(captured.events, 0, "nothing requested before the approval")
    p:handle({ type = "approval.granted", data = { approval = list[1].id, subject = "promote:api:r42:production",
      state = "granted", decided_by = "ana" } })
    assert.count(captured.events, 1)
    local ev = captured.events[1]
    assert.equal(ev.type, "deploy.requested")
    assert.same({ ev.data.service, ev.data.revision, ev.data.environment, ev.data.promoted_from },
      { "api", "r42", "production", "staging" })
    assert.equal(ev.data.settings.replicas, 6, "production's overlay")
    assert.equal(ev.id, "deploy.promote:promote:api:r42:production")
  end)

  it("asks once however often the completion is handled", function()
    p:handle(DONE)
    p:handle(DONE)
    clock.advance("2h")
    assert.count(captured.fired, 1, "one soak timer")
    assert.count(assert(approvals.list({ subject = "promote:api:r42:production" })), 1)
  end)

  it("stops on a denied or expired approval", function()
    p:handle({ type = "approval.denied", data = { subject = "promote:api:r42:production", state = "denied", decided_by = "bob" } })
    assert.equal(captured.events[1].type, "deploy.promote.stopped")
    assert.equal(captured.events[1].data.state, "denied")
    p:handle({ type = "approval.expired", data = { subject = "promote:api:r43:production", state = "expired" } })
    assert.equal(captured.events[2].data.revision, "r43")
  end)

  it("stops when nobody approves within the approval timeout (fake clock)", function()
    p:handle(DONE)
    clock.advance("1h")                          -- soaked: the approval is requested (timeout 4h)
    local a = assert(approvals.list({ subject = "promote:api:r42:production" }))[1]
    assert.equal(a.expires_at, clock.now() + 4 * 3600)
    clock.advance("3h59m")
    assert.equal(assert(approvals.get(a.id)).state, "pending")
    clock.advance("1m")                          -- the timeout timer fires: approval.expired
    assert.equal(assert(approvals.get(a.id)).state, "expired")
    local evs = assert(events.query({ type = "approval.expired" })).events
    assert.count(evs, 1)
    assert.equal(evs[1].data.subject, "promote:api:r42:production")
    p:handle(evs[1])
    assert.equal(captured.events[1].type, "deploy.promote.stopped")
    assert.equal(captured.events[1].data.state, "expired")
    assert.count(captured.events, 1, "nothing requested in production")
  end)

  it("takes only approvals of promotions", function()
    assert.falsy(p.def.when({ type = "approval.granted", data = { subject = "rollout:api:r42" } }))
    assert.truthy(p.def.when({ type = "approval.granted", data = { subject = "promote:api:r42:production" } }))
  end)

  it("cancels the soak when the release is aborted in staging", function()
    p:handle(DONE)
    p:handle({ type = "rollout.aborted", data = { service = "api", revision = "r42", environment = "staging" } })
    clock.advance("2h")
    assert.count(captured.fired, 0)
  end)

  it("promotes without approval or soak where the settings say so", function()
    p = policy.load("promote.lua", { config = { environments = { order = { "dev", "staging", "production" },
      settings = ENVS.settings, base = { soak = "0s" }, overlays = { production = { approval = true } } } } })
    p:handle({ type = "rollout.completed", data = { service = "api", revision = "r7", environment = "dev" } })
    assert.equal(captured.events[1].data.environment, "staging")
    assert.equal(captured.events[1].data.settings.replicas, 2)
  end)

  it("promotes nothing from the last environment", function()
    local r = p:handle({ type = "rollout.completed", data = { service = "api", revision = "r42", environment = "production" } })
    assert.same(r, { last = "production" })
    assert.count(captured.events, 0)
  end)

  it("refuses an overlay that breaks the settings schema, naming the field", function()
    local schema = require "steward.runtime.policy.schema"
    local function apply(envs)
      return schema.apply({ file = "promote.lua", name = "deploy.promote", config_decl = p.def.config_decl },
        { env = { ["deploy.promote"] = { environments = envs } } })
    end
    local ok, err = apply({ order = { "staging", "production" }, settings = ENVS.settings,
      overlays = { production = { replicas = 0 } } })
    assert.falsy(ok)
    assert.match(err, "overlays%.production: config%.replicas: value must be at least 1")
    ok, err = apply({ order = { "staging" }, overlays = { prod = {} } })
    assert.match(err, "environments%.overlays%.prod: not an environment")
    assert.truthy(apply(ENVS))
  end)
end)
