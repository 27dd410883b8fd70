-- PagerDuty Events API v2 (POST {base_url}/v2/enqueue): trigger, acknowledge and resolve
-- events for an integration's routing key. The dedup_key defaults to the notification's
-- idempotency key, so a resend after a crash lands on the same PagerDuty alert.
local json = require "steward.json"
local util = require "steward.notify.util"

local K = { options = { routing_key = "string", base_url = "string", url = "string", source = "string",
                        component = "string", group = "string", class = "string" } }

local ACTIONS = { trigger = true, acknowledge = true, resolve = true }

function K.configure(opts, bad)
  local rk = opts.routing_key
  if type(rk) ~= "string" or #rk ~= 32 then bad("routing_key", "32-character integration key expected") end
  local url = opts.url or ((opts.base_url or "https://events.pagerduty.com"):gsub("/+$", "") .. "/v2/enqueue")
  return { routing_key = rk, url = url, source = opts.source or "steward", component = opts.component,
           group = opts.group, class = opts.class }
end

function K.template(msg, ctx)
  local action = msg.action or (msg.status == "resolved" and "resolve" or "trigger")
  if not ACTIONS[action] then
    error("notify pagerduty: msg.action: trigger, acknowledge or resolve expected, got " .. tostring(action), 3)
  end
  local dedup = msg.dedup_key or (ctx and ctx.key)
  if action ~= "trigger" and not dedup then
    error("notify pagerduty: " .. action .. " needs msg.dedup_key (or a key)", 3)
  end
  local ev = { event_action = action, dedup_key = dedup and util.truncate(tostring(dedup), 255) }
  if action == "trigger" then
    local cfg = ctx and ctx.cfg or {}
    local summary = util.title(msg)
    local text = util.text(msg)
    if text and text ~= summary then summary = summary .. ": " .. text:gsub("%s+", " ") end
    local details = { text = text, labels = msg.labels, annotations = msg.annotations }
    if msg.details then for k, v in pairs(msg.details) do details[k] = v end end
    ev.payload = {
      summary = util.truncate(summary, 1024),
      source = tostring(msg.source or cfg.source or "steward"),
      severity = util.severity(msg.severity),
      timestamp = util.time_string(msg.time, ctx and ctx.now),
      component = msg.component or cfg.component, group = msg.group or cfg.group,
      class = msg.class or cfg.class,
      custom_details = next(details) and details or nil,
    }
    ev.client = "steward"
    if msg.url then ev.links = { { href = tostring(msg.url), text = util.truncate(util.title(msg), 200) } } end
  end
  return ev
end

function K.request(cfg, payload)
  payload.routing_key = payload.routing_key or cfg.routing_key
  return { http = { url = cfg.url, method = "POST",
                    headers = { ["Content-Type"] = "application/json" },
                    body = assert(json.encode(payload)) } }
end

return K
