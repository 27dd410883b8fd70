-- Incidents and escalation: every incident.* event (state changes from
-- steward.alerting.incidents, and the escalation's own durable timer events) goes to the
-- escalation compiled from policies/lib/alerting/config.lua (users, channels, schedules,
-- escalation_policies). The logic lives in steward.alerting.escalation; docs/incidents.md.
local escalation = require "steward.alerting.escalation"
local config = require "alerting.config"

local esc, err = escalation.compile(config)
if not esc then error(err, 0) end

return {
  -- the alerting state (alerts, groups, silences, incidents, notifications): granted in steward.lua
  capabilities = { "alerting" },
  on = { "incident.*" },
  -- one incident's events run one at a time, in order
  key = function(ev) return type(ev.data) == "table" and ev.data.incident or ev.id end,
  -- a step notifies every target; each send retries with backoff
  timeout = "5m",
  handle = function(ev, ctx) esc:handle(ev, ctx) end,
}
