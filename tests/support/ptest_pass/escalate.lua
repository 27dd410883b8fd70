-- Fixture policy for tests/e2e/steward_test.t: posts a new incident to a chat webhook, arms a
-- durable timer that escalates it after `escalate_after` unless acknowledged (the ack
-- cancels the timer), and on escalation mails the on-call and emits incident.escalated.
local http = require "steward.http"
local time = require "steward.time"
local json = require "steward.json"
local events = require "steward.events"

return {
  name = "ptest.escalate",
  capabilities = { "http", ["events.emit"] = { "incident.*" } },
  on = { "incident.opened", "incident.acked", "incident.escalate" },
  config = { webhook = "https://hooks.slack.com/services/T0/B0/x", escalate_after = "15m",
             oncall = "oncall@example.org" },
  handle = function(ev, ctx)
    local id = ev.data.incident
    if ev.type == "incident.opened" then
      local res, err = http.request{ method = "POST", url = ctx.config.webhook,
        headers = { ["Content-Type"] = "application/json" },
        body = json.encode({ text = "incident " .. id .. " opened" }) }
      if not res then error("webhook: " .. err) end
      if res.status ~= 200 then error("webhook answered " .. res.status) end
      time.after(ctx.config.escalate_after, { type = "incident.escalate", tenant = ev.tenant,
                                              data = { incident = id } }, { key = "esc:" .. id })
    elseif ev.type == "incident.acked" then
      time.cancel_durable("k:esc:" .. id)
    elseif ev.type == "incident.escalate" then
      assert(http.send_mail{ url = "smtp://mail.example.org", from = "steward@example.org",
                             to = ctx.config.oncall, subject = "incident " .. id, body = "escalated" })
      assert(events.emit{ type = "incident.escalated", tenant = ev.tenant, data = { incident = id } })
      return "escalated"
    end
  end,
  decide = function(input, ctx)
    if input.severity == "critical" then return { route = "page", to = ctx.config.oncall } end
    return { route = "ticket" }
  end,
}
