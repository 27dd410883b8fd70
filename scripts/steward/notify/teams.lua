-- Microsoft Teams incoming webhooks: an Adaptive Card in a "message" envelope (what both the
-- Workflows webhooks and the older Office 365 connector webhooks accept), or with
-- format = "messagecard" the legacy MessageCard that connector webhooks also take.
local json = require "steward.json"
local util = require "steward.notify.util"

local K = { options = { webhook_url = "string", format = "string", headers = "table" } }

function K.configure(opts, bad)
  if type(opts.webhook_url) ~= "string" then bad("webhook_url", "string expected, got " .. type(opts.webhook_url)) end
  local format = opts.format or "adaptive"
  if format ~= "adaptive" and format ~= "messagecard" then bad("format", "'adaptive' or 'messagecard' expected") end
  return { url = opts.webhook_url, format = format, headers = opts.headers }
end

local COLOR = { critical = "attention", error = "attention", warning = "warning", info = "accent" }
local THEME = { critical = "D70000", error = "E81123", warning = "FFB900", info = "0078D7" }

local function adaptive(msg)
  local sev = util.severity(msg.severity)
  local body = json.array()
  body[#body + 1] = { type = "TextBlock", text = util.headline(msg), size = "Large", weight = "Bolder",
                      wrap = true, color = msg.status == "resolved" and "good" or COLOR[sev] }
  local text = util.text(msg)
  if text then body[#body + 1] = { type = "TextBlock", text = text, wrap = true } end
  local labels = util.sorted_pairs(msg.labels)
  if #labels > 0 then
    local facts = json.array()
    for i, kv in ipairs(labels) do facts[i] = { title = kv[1], value = kv[2] } end
    body[#body + 1] = { type = "FactSet", facts = facts }
  end
  if msg.source then
    body[#body + 1] = { type = "TextBlock", text = "source: " .. tostring(msg.source), isSubtle = true,
                        size = "Small", wrap = true }
  end
  local card = { ["$schema"] = "http://adaptivecards.io/schemas/adaptive-card.json",
                 type = "AdaptiveCard", version = "1.4", body = body, msteams = { width = "Full" } }
  if msg.url then card.actions = { { type = "Action.OpenUrl", title = "Open", url = tostring(msg.url) } } end
  return { type = "message",
           attachments = { { contentType = "application/vnd.microsoft.card.adaptive",
                             contentUrl = json.null, content = card } } }
end

local function messagecard(msg)
  local sev = util.severity(msg.severity)
  local head = util.headline(msg)
  local card = { ["@type"] = "MessageCard", ["@context"] = "https://schema.org/extensions",
                 summary = util.truncate(head, 200), title = head,
                 themeColor = msg.status == "resolved" and "2DC72D" or THEME[sev],
                 text = util.text(msg) or head }
  local labels = util.sorted_pairs(msg.labels)
  if #labels > 0 then
    local facts = json.array()
    for i, kv in ipairs(labels) do facts[i] = { name = kv[1], value = kv[2] } end
    card.sections = { { facts = facts, activitySubtitle = msg.source and tostring(msg.source) or nil } }
  end
  if msg.url then
    card.potentialAction = { { ["@type"] = "OpenUri", name = "Open",
                               targets = { { os = "default", uri = tostring(msg.url) } } } }
  end
  return card
end

function K.template(msg, ctx)
  if ctx and ctx.cfg and ctx.cfg.format == "messagecard" then return messagecard(msg) end
  return adaptive(msg)
end
K.adaptive, K.messagecard = adaptive, messagecard

function K.request(cfg, payload)
  local headers = { ["Content-Type"] = "application/json; charset=utf-8" }
  for k, v in pairs(cfg.headers or {}) do headers[k] = v end
  return { http = { url = cfg.url, method = "POST", headers = headers, body = assert(json.encode(payload)) } }
end

return K
