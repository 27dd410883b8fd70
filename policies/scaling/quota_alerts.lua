-- scaling.quota_alerts: a refused start or scale-up (the event quota.exceeded, from
-- steward.scaling.quota) becomes the alert QuotaExceeded in the alerting pipeline, routed,
-- grouped, silenced and paged like any alert. A refusal is a moment, not a state: the alert
-- ends `resolve_after` after the last refusal of that quota and service (each refusal renews
-- it). Needs the `alerting` capability (granted in steward.lua, docs/scaling/quotas.md).
local alerts = require "steward.deploy.supervisor_alerts"
local time = require "steward.time"

local type, tostring = type, tostring

local need = alerts.need

return {
  capabilities = { "alerting" },
  on = { "quota.exceeded" },
  key = function(ev) return type(ev.data) == "table" and tostring(ev.data.service) or "?" end,
  config = { severity = "warning", resolve_after = "15m" },
  handle = function(ev, ctx)
    local cfg = ctx.config
    local d = need(ev, "quota")
    need(ev, "service")
    local ends_for, derr = time.parse_duration(cfg.resolve_after)
    if not ends_for then error("config.resolve_after: " .. tostring(derr), 0) end
    local labels = { alertname = "QuotaExceeded", service = d.service, quota = d.quota, severity = cfg.severity }
    if d.tenant then labels.tenant = d.tenant end
    if ctx.dry_run then return { would = "fire", alertname = "QuotaExceeded" } end
    local res, err = alerts.fire({ labels = labels, ends_for = ends_for, annotations = {
      summary = ("%s %s: a start was refused by the quota %s"):format(d.service, tostring(d.revision or "?"), d.quota),
      description = ("%s in use, %s requested, limit %s"):format(tostring(d.in_use), tostring(d.requested), tostring(d.limit)) } })
    if not res then error(err, 0) end
    return res
  end,
}
