-- success.tickets: routes each new support ticket to a queue by its tenant, plan and severity
-- (the first rule that matches; edit `rules` in policy_config), arms its SLA on a durable
-- timer, raises TicketSLABreached in the alerting pipeline when the SLA passes with the ticket
-- still open or pending (resolved when it is solved or closed), and mails the CSAT survey
-- with its signed link when the ticket is closed. docs/customer-success.md.
local tickets = require "steward.success.tickets"
local alerts = require "steward.deploy.supervisor_alerts"
local notify = require "steward.notify"
local time = require "steward.time"

local type, ipairs, pairs, tostring, error = type, ipairs, pairs, tostring, error

local MATCH = { tenant = true, plan = true, severity = true }

-- A rule: {match = {tenant =, plan =, severity = (a value or a list of values)}, queue =, sla =}.
local function check_rules(rules)
  for i, r in ipairs(rules) do
    local at = "rules[" .. i .. "]"
    if type(r) ~= "table" then return nil, at .. ": a table {match, queue, sla} expected" end
    for k in pairs(r) do
      if k ~= "match" and k ~= "queue" and k ~= "sla" then return nil, at .. "." .. tostring(k) .. ": unknown field (match, queue, sla)" end
    end
    if type(r.queue) ~= "string" or not r.queue:match("^[%w._-]+$") then return nil, at .. ".queue: a queue name expected" end
    if r.sla ~= nil and not time.parse_duration(r.sla) then return nil, at .. ".sla: a duration such as \"4h\" expected" end
    if r.match ~= nil and type(r.match) ~= "table" then return nil, at .. ".match: a table expected" end
    for k, v in pairs(r.match or {}) do
      if not MATCH[k] then return nil, at .. ".match." .. tostring(k) .. ": unknown field (tenant, plan, severity)" end
      if type(v) ~= "string" and type(v) ~= "table" then return nil, at .. ".match." .. k .. ": a value or a list expected" end
    end
  end
  return true
end

local function matches(want, got)
  if want == nil then return true end
  if type(want) == "string" then return want == got end
  for _, w in ipairs(want) do if w == got then return true end end
  return false
end

-- route(ticket fields, config) -> {queue, sla (seconds)}
local function route(t, cfg)
  for _, r in ipairs(cfg.rules) do
    local m = r.match or {}
    if matches(m.tenant, t.tenant) and matches(m.plan, t.plan) and matches(m.severity, t.severity) then
      return { queue = r.queue, sla = time.parse_duration(r.sla or cfg.default_sla) }
    end
  end
  return { queue = cfg.default_queue, sla = cfg.default_sla }
end

local function alert_labels(t, cfg)
  return { alertname = "TicketSLABreached", ticket = t.id, tenant = t.tenant, queue = t.queue or "",
    severity = cfg.alert_severity }
end

local function must(v, err)
  if v == nil then error(tostring(err), 0) end
  return v
end

return {
  capabilities = { success = true, alerting = true, notify = { "email", "log" } },
  on = { "ticket.opened", "ticket.solved", "ticket.closed", "success.tickets.sla" },
  key = function(ev) return type(ev.data) == "table" and tostring(ev.data.ticket) or "?" end,
  config = {
    rules = { type = "array", check = check_rules, default = {
      { match = { severity = "urgent" }, queue = "urgent", sla = "4h" },
      { match = { plan = "enterprise" }, queue = "enterprise", sla = "8h" },
    } },
    default_queue = "general",
    default_sla = { type = "duration", default = "24h" },
    alert_severity = { type = "string", default = "warning", one_of = { "info", "warning", "error", "critical" } },
    -- the CSAT mail: channel "log" (the daemon's log) or "email" with url and from
    csat = { type = "table", default = { channel = "log" }, check = function(c)
      if c.channel ~= "log" and c.channel ~= "email" then return nil, "channel: log or email expected" end
      if c.channel == "email" and (type(c.url) ~= "string" or type(c.from) ~= "string") then
        return nil, "url and from: strings expected for the email channel"
      end
      return true
    end },
  },
  decide = function(input, ctx) return route(input, ctx.config) end,
  handle = function(ev, ctx)
    local cfg, d = ctx.config, ev.data
    if type(d) ~= "table" or type(d.ticket) ~= "string" then
      error(("%s event %s has no data.ticket"):format(ev.type, tostring(ev.id)), 0)
    end
    local t = must(tickets.get(d.ticket))
    if not t then return { skipped = "no ticket " .. d.ticket } end
    if ev.type == "ticket.opened" then
      if t.queue then return { queue = t.queue } end -- routed before this run
      local r = route(t, cfg)
      if ctx.dry_run then return { would = "route", queue = r.queue, sla = r.sla } end
      must(tickets.route(t.id, r.queue, ev.time + r.sla))
      must(time.after(r.sla, { type = "success.tickets.sla", tenant = t.tenant, data = { ticket = t.id } },
        { key = "sla:" .. t.id }))
      return { queue = r.queue, sla = r.sla }
    elseif ev.type == "success.tickets.sla" then
      if t.state == "solved" or t.state == "closed" then return { met = t.id } end
      if ctx.dry_run then return { would = "breach", ticket = t.id } end
      must(tickets.breach(t.id))
      must(alerts.fire({ labels = alert_labels(t, cfg), annotations = {
        summary = ("ticket %s of %s breached its SLA in queue %s"):format(t.id, t.tenant, tostring(t.queue)),
        description = t.subject } }))
      return { breached = t.id }
    end
    -- solved or closed: a breach alert is over; a closed ticket gets its survey
    if t.breached and not ctx.dry_run then must(alerts.resolve({ labels = alert_labels(t, cfg) })) end
    if ev.type ~= "ticket.closed" then return { state = t.state } end
    if ctx.dry_run then return { would = "survey", to = t.requester } end
    local url = must(tickets.csat_url(t))
    local c = cfg.csat
    local ch = c.channel == "email"
      and notify.channel("email", { name = "csat", url = c.url, from = c.from, to = {}, starttls = c.starttls or "no" })
      or notify.channel("log", { name = "csat" })
    must(ch:send({ title = "How did we do? " .. t.subject, severity = "info", to = { t.requester }, url = url,
      text = ("Your ticket %s is closed. Rate our help from 1 to 5: %s"):format(t.id, url) }, { key = "csat:" .. t.id }))
    return { survey = t.id }
  end,
}
