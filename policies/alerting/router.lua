-- Alert routing and notifications: the alert.firing / alert.resolved events of the
-- Alertmanager API (POST /api/v2/alerts) go through the routing tree, aggregation groups,
-- mute stages and noise reduction of steward.alerting.engine, configured by
-- policies/lib/alerting/config.lua (docs/alerting.md, "Grouping and notifications").
-- Edit the configuration, not this file: a change to either reloads the policy.
local engine = require "steward.alerting.engine"
local config = require "alerting.config"

-- Compiled once per load: a broken configuration fails the load and the previous version
-- keeps running.
local eng, err = engine.compile(config)
if not eng then error(err, 0) end

return {
  -- the alerting state (alerts, groups, silences, incidents, notifications): granted in steward.lua
  capabilities = { "alerting" },
  on = { "alert.firing", "alert.resolved", "alerting.flush", "alerting.notify" },
  -- ONE key for every alert and flush event: group state and the notification log then have
  -- a single writer (in a cluster too), and a group's events are handled in order. The sends
  -- (alerting.notify, committed by the flushes) go by group and integration: in order for
  -- one receiver of one group, independent of every other.
  key = function(ev)
    if ev.type == "alerting.notify" and type(ev.data) == "table" then
      return "alerting.notify:" .. tostring(ev.data.group) .. ":" .. tostring(ev.data.receiver) .. ":" .. tostring(ev.data.integration)
    end
    return "alerting"
  end,
  -- a flush may send to several receivers, each with retries
  timeout = "2m",
  limits = { cpu = "10s", memory = 256 * 1024 * 1024 },
  -- (a dry run returns where the alert would go, and changes nothing)
  handle = function(ev, ctx) return eng:handle(ev, ctx) end,
  -- The queued events of a key in one run: the engine's state is in memory and one store
  -- unit journals the whole batch (docs/alerting.md, "How the engine keeps its state");
  -- dispatch records the events handled after that commit.
  handle_batch = function(list, ctx) return eng:handle_batch(list, ctx) end,
  batch_max = 500,
}
