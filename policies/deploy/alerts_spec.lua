-- Spec for policies/deploy/alerts.lua: service.failed and rollout.aborted become alerts in the
-- alerting pipeline (alert.firing events), resolved by the instance's next ready and by the
-- service's next completed rollout. Run with `steward test policies/deploy`.
local astore = require "steward.alerting.store"
local fingerprint = require "steward.alerting.fingerprint"

local fired = emitted -- steward test: the data of the events of a type

describe("deploy.alerts", function()
  local p
  before_each(function() p = policy.load("policies/deploy/alerts.lua") end)

  it("takes the supervisor's and the rollouts' events", function()
    for _, ty in ipairs({ "service.failed", "service.instance.ready", "rollout.aborted", "rollout.completed" }) do
      assert.truthy(p:matches(ty), ty)
    end
    assert.falsy(p:matches("service.instance.started"))
  end)

  it("fires ServiceFailed for a service.failed, naming the instance and its last exit", function()
    p:handle({ type = "service.failed", data = { service = "api", revision = "v2", index = 1, restarts = 4,
      last_exit = { code = 1 }, reason = "start limit hit: 5 starts within 10s" } })
    local f = fired("alert.firing")
    assert.count(f, 1)
    assert.same(f[1].labels, { alertname = "ServiceFailed", service = "api", revision = "v2", instance = "1", severity = "critical" })
    assert.match(f[1].annotations.summary, "api v2 instance 1 failed: restarted 4 times")
    assert.match(f[1].annotations.description, "last exit: exit 1; start limit hit")
  end)

  it("resolves it when that instance is ready again, and only that one", function()
    p:handle({ type = "service.failed", data = { service = "api", revision = "v2", index = 1, restarts = 4, last_exit = { signal = 9 } } })
    p:handle({ type = "service.instance.ready", data = { service = "api", revision = "v2", index = 2 } })
    assert.count(fired("alert.resolved"), 0, "another instance's ready resolves nothing")
    clock.advance("1m")
    p:handle({ type = "service.instance.ready", data = { service = "api", revision = "v2", index = 1 } })
    local r = fired("alert.resolved")
    assert.count(r, 1)
    assert.equal(r[1].labels.alertname, "ServiceFailed")
    local fp = fingerprint.of({ alertname = "ServiceFailed", service = "api", revision = "v2", instance = "1", severity = "critical" })
    assert.equal(astore.get(store, { fp })[fp].announced, "resolved")
  end)

  it("fires RolloutAborted for rollout.aborted, resolved by the service's next completed rollout", function()
    p:handle({ type = "rollout.aborted", data = { id = "r-7", service = "web", revision = "v9", reason = "analysis failed: error_rate 0.2 > 0.05" } })
    local f = fired("alert.firing")
    assert.count(f, 1)
    assert.same(f[1].labels, { alertname = "RolloutAborted", service = "web", severity = "critical" })
    assert.match(f[1].annotations.description, "analysis failed")
    assert.equal(f[1].annotations.rollout, "r-7")
    p:handle({ type = "rollout.completed", data = { id = "r-8", service = "web", revision = "v10" } })
    assert.count(fired("alert.resolved"), 1)
  end)

  it("uses the configured severity", function()
    p = policy.load("policies/deploy/alerts.lua", { config = { rollout_severity = "warning" } })
    p:handle({ type = "rollout.aborted", data = { service = "web" } })
    assert.equal(fired("alert.firing")[1].labels.severity, "warning")
  end)

  it("sends nothing on a dry run", function()
    local r = p:handle({ type = "service.failed", data = { service = "api", revision = "v1", index = 1 } }, { dry_run = true })
    assert.equal(r.would, "fire")
    assert.count(fired("alert.firing"), 0)
  end)

  it("fails on an event without a service", function()
    assert.error(function() p:handle({ type = "service.failed", data = { revision = "v1" } }) end, "has no data.service")
  end)
end)
