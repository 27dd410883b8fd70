-- tenants.alerts: a tenant whose provisioning failed needs a person, so tenant.failed becomes
-- the alert TenantProvisioningFailed in the alerting pipeline (routed, grouped, silenced and
-- paged like any alert), naming the step that failed and why; it resolves when the tenant is
-- provisioned after all (tenant.provisioned) or given up (tenant.offboarding). Needs the
-- `alerting` capability (granted in steward.lua; docs/tenants.md).
local alerts = require "steward.deploy.supervisor_alerts"

local type, tostring = type, tostring

local function labels(d, cfg)
  return { alertname = "TenantProvisioningFailed", tenant = tostring(d.tenant), severity = cfg.severity }
end

return {
  capabilities = { "alerting" },
  on = { "tenant.failed", "tenant.provisioned", "tenant.offboarding" },
  -- one tenant's events in order: what resolves comes after what fired
  key = function(ev) return ev.tenant or (type(ev.data) == "table" and tostring(ev.data.tenant)) or "?" end,
  config = { severity = "warning" },
  handle = function(ev, ctx)
    local d = ev.data
    if type(d) ~= "table" or type(d.tenant) ~= "string" then
      error(("%s event %s has no data.tenant"):format(ev.type, tostring(ev.id)), 0)
    end
    local res, err
    if ev.type == "tenant.failed" then
      if ctx.dry_run then return { would = "fire", alertname = "TenantProvisioningFailed" } end
      res, err = alerts.fire({ labels = labels(d, ctx.config), annotations = {
        summary = ("provisioning of tenant %s failed at step %s"):format(d.tenant, tostring(d.failed_step or "?")),
        description = tostring(d.reason or ""), failed_step = tostring(d.failed_step or "") } })
    else
      if ctx.dry_run then return { would = "resolve", alertname = "TenantProvisioningFailed" } end
      res, err = alerts.resolve({ labels = labels(d, ctx.config) })
    end
    if not res then error(err, 0) end
    return res
  end,
}
