-- Spec for policies/tenants/alerts.lua: tenant.failed becomes the alert TenantProvisioningFailed
-- naming the step and the reason; tenant.provisioned or tenant.offboarding of that tenant
-- resolves it, another tenant's does not. Run with `steward test policies/tenants`.
local fired = emitted -- steward test: the data of the events of a type

describe("tenants.alerts", function()
  local p
  before_each(function() p = policy.load("policies/tenants/alerts.lua") end)

  it("takes the tenants' lifecycle events", function()
    for _, ty in ipairs({ "tenant.failed", "tenant.provisioned", "tenant.offboarding" }) do assert.truthy(p:matches(ty), ty) end
    assert.falsy(p:matches("tenant.requested"))
  end)

  it("fires TenantProvisioningFailed naming the step and the reason", function()
    p:handle({ type = "tenant.failed", tenant = "acme", data = { tenant = "acme", state = "failed",
      failed_step = "postgres", reason = "postgres: permission denied to create role" } })
    local f = fired("alert.firing")
    assert.count(f, 1)
    assert.same(f[1].labels, { alertname = "TenantProvisioningFailed", tenant = "acme", severity = "warning" })
    assert.match(f[1].annotations.summary, "tenant acme failed at step postgres")
    assert.match(f[1].annotations.description, "permission denied")
  end)

  it("resolves it when that tenant is provisioned, and only that tenant", function()
    p:handle({ type = "tenant.failed", tenant = "acme", data = { tenant = "acme", failed_step = "welcome", reason = "smtp down" } })
    p:handle({ type = "tenant.provisioned", tenant = "globex", data = { tenant = "globex" } })
    assert.count(fired("alert.resolved"), 0, "another tenant's provisioning resolves nothing")
    clock.advance("1m")
    p:handle({ type = "tenant.offboarding", tenant = "acme", data = { tenant = "acme" } })
    local r = fired("alert.resolved")
    assert.count(r, 1)
    assert.equal(r[1].labels.tenant, "acme")
  end)

  it("uses the configured severity", function()
    p = policy.load("policies/tenants/alerts.lua", { config = { severity = "critical" } })
    p:handle({ type = "tenant.failed", tenant = "acme", data = { tenant = "acme", failed_step = "tokens" } })
    assert.equal(fired("alert.firing")[1].labels.severity, "critical")
  end)

  it("refuses an event without data.tenant", function()
    assert.error(function() p:handle({ type = "tenant.failed", data = {} }) end, "has no data.tenant")
  end)
end)
