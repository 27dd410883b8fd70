-- deploy.alerts: deployments that need a person become alerts in the alerting pipeline
-- (routed, grouped, silenced and paged by policies/alerting/router.lua like any alert):
--   service.failed   (an instance hit its restart burst limit)  -> ServiceFailed, firing until
--                    that instance is ready again (service.instance.ready);
--   rollout.aborted  (analysis failed, or someone aborted)       -> RolloutAborted, firing until
--                    a rollout of the service completes (rollout.completed).
-- Needs the `alerting` capability (granted in steward.lua, docs/deploy/services.md).
local alerts = require "steward.deploy.supervisor_alerts"

local type, tostring = type, tostring

local function failed_labels(d, cfg)
  return { alertname = "ServiceFailed", service = d.service, revision = d.revision,
    instance = tostring(d.index), severity = cfg.service_severity }
end

local function rollout_labels(d, cfg)
  return { alertname = "RolloutAborted", service = d.service, severity = cfg.rollout_severity }
end

local need = alerts.need

return {
  capabilities = { "alerting" },
  on = { "service.failed", "service.instance.ready", "rollout.aborted", "rollout.completed" },
  -- one service's events in order: a ready after a failure resolves what the failure fired
  key = function(ev) return type(ev.data) == "table" and tostring(ev.data.service) or "?" end,
  config = { service_severity = "critical", rollout_severity = "critical" },
  handle = function(ev, ctx)
    local cfg = ctx.config
    local d = need(ev, "service")
    local res, err
    if ev.type == "service.failed" then
      local last = type(d.last_exit) == "table" and d.last_exit or {}
      local how = last.signal and ("signal " .. tostring(last.signal)) or ("exit " .. tostring(last.code))
      if ctx.dry_run then return { would = "fire", alertname = "ServiceFailed" } end
      res, err = alerts.fire({ labels = failed_labels(d, cfg), annotations = {
        summary = ("%s %s instance %s failed: restarted %s times, then the start limit"):format(
          d.service, tostring(d.revision), tostring(d.index), tostring(d.restarts)),
        description = ("last exit: %s; %s"):format(how, tostring(d.reason or "")) } })
    elseif ev.type == "service.instance.ready" then
      if ctx.dry_run then return { would = "resolve", alertname = "ServiceFailed" } end
      res, err = alerts.resolve({ labels = failed_labels(d, cfg) })
    elseif ev.type == "rollout.aborted" then
      if ctx.dry_run then return { would = "fire", alertname = "RolloutAborted" } end
      res, err = alerts.fire({ labels = rollout_labels(d, cfg), annotations = {
        summary = ("rollout of %s %s aborted"):format(d.service, tostring(d.revision or "?")),
        description = tostring(d.reason or d.message or ""), rollout = tostring(d.id or d.rollout or "") } })
    else -- rollout.completed
      if ctx.dry_run then return { would = "resolve", alertname = "RolloutAborted" } end
      res, err = alerts.resolve({ labels = rollout_labels(d, cfg) })
    end
    if not res then error(err, 0) end
    return res
  end,
}
