-- SLO burn-rate alerts: every minute, the SLOs under `slos` in policies/lib/alerting/config.lua
-- are evaluated and their multi-window multi-burn-rate alerts sent into the alert store the way
-- Prometheus sends rule alerts, so a breach is routed, grouped, silenced and escalated like any
-- other alert (docs/slo.md, "SLO breaches through the alerting pipeline").
local time = require "steward.time"
local slo_alerts = require "steward.alerting.slo_alerts"
local config = require "alerting.config"

local set, err = slo_alerts.compile(config.slos, "config.slos")
if not set then error(err, 0) end

return {
  -- the alerting state (alerts, groups, silences, incidents, notifications): granted in steward.lua
  capabilities = { "alerting" },
  schedule = "* * * * *",
  key = function() return "slo" end,
  timeout = "50s", -- Prometheus sources make HTTP queries; the next slot comes in a minute
  handle = function(_, ctx)
    -- Evaluated at the current time, not the slot's: a slot fired late after downtime must not
    -- send alerts that end in the past.
    local s, terr = set:tick(nil, time.now(), { dry_run = ctx.dry_run })
    if not s then error(terr, 0) end
    for _, e in ipairs(s.errors) do ctx.log.warn("slo evaluation failed", { error = e }) end
    return { evaluated = s.evaluated, firing = s.firing, resolved = s.resolved }
  end,
}
