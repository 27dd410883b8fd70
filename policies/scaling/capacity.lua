-- scaling.capacity: capacity forecasts become alerts in the alerting pipeline (routed, grouped,
-- silenced and paged by policies/alerting/router.lua like any alert). Every 15 minutes (and on
-- a capacity.check event, to ask now) each service of the `capacity` config key is reported
-- (steward.capacity.report): CapacityHorizon fires while the forecast reaches the service's
-- limit within its lead time, or the load is already at the limit, and resolves once neither
-- holds. Needs the `alerting` capability (granted in steward.lua, docs/scaling/capacity.md).
local capacity = require "steward.capacity"
local alerts = require "steward.deploy.supervisor_alerts"

local format, tostring = string.format, tostring

local function days(v) return v and format("%.1f", v) or "?" end

return {
  capabilities = { "alerting" },
  schedule = "*/15 * * * *",
  on = { "capacity.check" },
  key = function() return "capacity" end, -- one report at a time: fire and resolve never race
  timeout = "5m", -- a Holt-Winters fit per service
  config = { severity = "warning" },
  handle = function(_, ctx)
    local list, err = capacity.report()
    if not list then error(err, 0) end
    local out = { firing = {}, resolved = {}, ok = {} }
    for _, r in ipairs(list) do
      local labels = { alertname = "CapacityHorizon", service = r.service, severity = ctx.config.severity }
      local res, aerr
      if r.alert then
        out.firing[#out.firing + 1] = r.service
        if not ctx.dry_run then
          res, aerr = alerts.fire({ labels = labels, annotations = {
            summary = r.status == "saturated" and format("%s is at its capacity limit (%s)", r.service, r.limit_text)
              or format("%s reaches its capacity limit in %s days (%s to %s), lead time %s days", r.service,
                days(r.horizon.days), days(r.horizon.low), days(r.horizon.high), days(r.lead_time_days)),
            description = tostring(r.reason), metric = r.metric, status = r.status,
            model = tostring(r.model or ""), horizon_days = r.horizon and days(r.horizon.days) or "" } })
        end
      else
        out[r.status == "ok" and "ok" or "resolved"][#out[r.status == "ok" and "ok" or "resolved"] + 1] = r.service
        if not ctx.dry_run then res, aerr = alerts.resolve({ labels = labels }) end
      end
      if not ctx.dry_run and not res then error(aerr, 0) end
    end
    return out
  end,
}
