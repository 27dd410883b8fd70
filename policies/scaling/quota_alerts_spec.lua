-- Spec for policies/scaling/quota_alerts.lua: quota.exceeded becomes the alert QuotaExceeded
-- (alert.firing), named by service and quota, ending resolve_after after the last refusal.
-- Run with `steward test policies/scaling`.
local astore = require "steward.alerting.store"
local fingerprint = require "steward.alerting.fingerprint"

local fired = emitted -- steward test: the data of the events of a type

local EV = { type = "quota.exceeded", data = { quota = "tenants.acme.instances", limit = 6, in_use = 6, requested = 1,
  service = "api", revision = "v2", tenant = "acme" } }

describe("scaling.quota_alerts", function()
  local p
  before_each(function() p = policy.load("policies/scaling/quota_alerts.lua") end)

  it("takes quota.exceeded only", function()
    assert.truthy(p:matches("quota.exceeded"))
    assert.falsy(p:matches("service.failed"))
  end)

  it("fires QuotaExceeded naming the service, the quota and the numbers", function()
    p:handle(EV)
    local f = fired("alert.firing")
    assert.count(f, 1)
    assert.same(f[1].labels, { alertname = "QuotaExceeded", service = "api", quota = "tenants.acme.instances",
      tenant = "acme", severity = "warning" })
    assert.match(f[1].annotations.summary, "api v2: a start was refused by the quota tenants.acme.instances")
    assert.match(f[1].annotations.description, "6 in use, 1 requested, limit 6")
  end)

  it("ends resolve_after after the last refusal; a new refusal renews it", function()
    p = policy.load("policies/scaling/quota_alerts.lua", { config = { resolve_after = "10m" } })
    p:handle(EV)
    local fp = fingerprint.of({ alertname = "QuotaExceeded", service = "api", quota = "tenants.acme.instances",
      tenant = "acme", severity = "warning" })
    local first = astore.get(store, { fp })[fp]
    clock.advance("5m")
    p:handle(EV)
    local second = astore.get(store, { fp })[fp]
    assert.equal(second.ends_at - first.ends_at, 300, "renewed by the second refusal")
    assert.count(fired("alert.firing"), 1, "one alert, not two")
  end)

  it("uses the configured severity, and sends nothing on a dry run", function()
    p = policy.load("policies/scaling/quota_alerts.lua", { config = { severity = "critical" } })
    local r = p:handle(EV, { dry_run = true })
    assert.equal(r.would, "fire")
    assert.count(fired("alert.firing"), 0)
    p:handle(EV)
    assert.equal(fired("alert.firing")[1].labels.severity, "critical")
  end)

  it("fails on an event without a quota", function()
    assert.error(function() p:handle({ type = "quota.exceeded", data = { service = "api" } }) end, "has no data.quota")
  end)
end)
