-- The alerting configuration: routing, grouping, noise reduction, receivers, and the people
-- and escalation policies behind incidents (docs/alerting.md, "Configuration"). The policies in
-- policies/alerting/ read it; saving this file reloads them. Durations are seconds or
-- Prometheus-style strings ("30s", "5m", "4h"); wherever a matcher is, a Lua
-- function(labels) -> boolean may stand instead.
--
-- Every notification goes to the daemon's own log (kind = "log", a line msg=notification) until
-- you put real receivers and channels in: the commented lines show webhook, Slack, SMS and
-- email ones (docs/notify.md lists every kind and its options).

local config = {
  -- The routing tree (Alertmanager's `route`): the first matching child wins unless it has
  -- continue = true; children inherit group_by and the timers.
  route = {
    receiver = "default",
    group_by = { "alertname", "cluster" },
    group_wait = "30s",        -- wait this long to batch the first notification of a new group
    group_interval = "5m",     -- then at most one notification per group per interval
    repeat_interval = "4h",    -- re-notify an unchanged firing group this often
    repeat_backoff = { factor = 2, max = "24h" }, -- ...each repeat waiting twice as long, up to a day
    routes = {
      -- The web team: their services, paged through a webhook; off-hours warnings are muted.
      { matchers = { 'team="web"' }, receiver = "team-web",
        routes = {
          { matchers = { 'severity="warning"' }, receiver = "team-web", mute_time_intervals = { "offhours" } },
        } },
      -- The database team: critical alerts open an incident that escalates to the on-call DBA;
      -- continue = true so the same alerts also reach the team's webhook below.
      { matchers = { 'team="database"', 'severity="critical"' }, receiver = "db-pager", continue = true,
        group_by = { "alertname", "cluster", "instance" }, group_wait = "10s" },
      { matchers = { 'team="database"' }, receiver = "team-db" },
      -- A Lua function as a matcher: anything from a staging cluster goes to the default receiver.
      { matchers = { function(labels) return (labels.cluster or ""):match("^staging") ~= nil end },
        receiver = "default" },
    },
  },

  -- A critical alert mutes the warnings of the same alert name on the same cluster.
  inhibit_rules = {
    { source_matchers = { 'severity="critical"' }, target_matchers = { 'severity="warning"' },
      equal = { "alertname", "cluster" } },
  },

  -- Named time intervals (Alertmanager's time_intervals), used by routes and maintenance.
  time_intervals = {
    offhours = {
      { times = { { start_time = "00:00", end_time = "08:00" }, { start_time = "19:00", end_time = "24:00" } } },
      { weekdays = { "saturday", "sunday" } },
    },
    ["sunday-night"] = { { weekdays = { "sunday" }, times = { { start_time = "01:00", end_time = "05:00" } } } },
  },

  -- Receivers: lists of integrations. send_resolved defaults as in Alertmanager (webhook and
  -- pagerduty true, the others false; log true).
  receivers = {
    default = {
      { kind = "log" },
      -- { kind = "webhook", url = "https://alerts.example.com/hook" },
    },
    ["team-web"] = {
      { kind = "log" },
      -- { kind = "slack", webhook_url = "https://hooks.slack.com/services/T/B/X" },
    },
    ["team-db"] = {
      { kind = "log" },
    },
    ["db-pager"] = {
      { kind = "incident", service = "database", escalation = "db-oncall", severity = "critical" },
    },
  },

  -- Maintenance windows: matching alerts are not notified while a window is open, either
  -- between two instants or during named time intervals.
  maintenance = {
    { name = "db-upgrade", matchers = { 'team="database"', 'cluster="eu-1"' },
      starts_at = "2026-12-01T02:00:00Z", ends_at = "2026-12-01T04:00:00Z" },
    { name = "sunday-patching", matchers = { 'cluster=~"staging.*"' }, time_intervals = { "sunday-night" } },
  },

  -- Flap detection: an alert that changes state 4 times within 10 minutes is held out of
  -- notifications until it has been quiet for 10 minutes.
  flap = { transitions = 4, window = "10m", quiet = "10m" },

  -- Correlation: 5 database alerts within 10 minutes open one incident; later ones attach to it.
  correlation = {
    { name = "db-storm", matchers = { 'team="database"' }, count = 5, window = "10m",
      incident = { service = "database", escalation = "db-oncall", severity = "critical" } },
  },

  -- SLOs (docs/slo.md): evaluated every minute by policies/alerting/slo.lua; a burn-rate alert
  -- is an ordinary alert (alertname="SLOErrorBudgetBurn", slo, severity page|ticket, window and
  -- these labels), routed by the tree above. This one counts http.request events (data.code).
  slos = {
    { name = "checkout-availability", objective = 0.999, period = "30d",
      labels = { team = "web", service = "checkout" },
      source = { events = { type = "http.request", good = function(ev) return (ev.data.code or 0) < 500 end } } },
  },

  -- People, channels, schedules and escalation policies (docs/incidents.md).
  users = {
    ana = { name = "Ana Lima", email = "ana@example.com", phone = "+15550100001", notify = { "log" } },
    ben = { name = "Ben Okafor", email = "ben@example.com", phone = "+15550100002", notify = { "log" } },
  },
  -- Contact methods, named in users' notify lists and escalation targets.
  channels = {
    log = { kind = "log" },
    -- sms = { kind = "sms", account_sid = "AC...", auth_token = "...", from = "+15550100000" },
    -- email = { kind = "email", url = "smtps://smtp.example.com", from = "steward@example.com" },
    -- ["slack-ops"] = { kind = "slack", webhook_url = "https://hooks.slack.com/services/T/B/X" },
  },
  schedules = {
    ["db-primary"] = {
      time_zone = "Europe/Berlin",
      layers = {
        { name = "weekly", users = { "ana", "ben" }, rotation = "weekly",
          start = "2026-01-05T09:00:00" },
      },
    },
  },
  escalation_policies = {
    ["db-oncall"] = {
      rules = {
        { delay = "0s", targets = { { schedule = "db-primary" }, { channel = "log" } } },
        { delay = "15m", targets = { { user = "ana" } } },
      },
      ["repeat"] = 2,
      ack_timeout = "30m",
      auto_resolve = "4h",
    },
  },
}

-- Your changes can also go here, as assignments (docs/alerting.md, "From Prometheus to a
-- phone"), e.g.  config.users.ana.phone = "+15551234567"

return config
