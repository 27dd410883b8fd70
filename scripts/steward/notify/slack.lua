-- Slack incoming webhooks (https://api.slack.com/messaging/webhooks): a JSON POST of
-- {text, blocks}; "text" is the fallback shown in notifications, "blocks" the Block Kit body.
local json = require "steward.json"
local util = require "steward.notify.util"

local K = { options = { webhook_url = "string", headers = "table" } }

-- Slack's mrkdwn treats &, < and > as control characters (links, mentions).
local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

function K.configure(opts, bad)
  if type(opts.webhook_url) ~= "string" then bad("webhook_url", "string expected, got " .. type(opts.webhook_url)) end
  return { url = opts.webhook_url, headers = opts.headers }
end

function K.template(msg)
  local head = util.headline(msg)
  local text = util.text(msg)
  local blocks = json.array()
  -- limits from Block Kit's reference: header 150 chars, section text 3000, 10 fields
  blocks[#blocks + 1] = { type = "header", text = { type = "plain_text", text = util.truncate(head, 150) } }
  if text then
    blocks[#blocks + 1] = { type = "section", text = { type = "mrkdwn", text = util.truncate(esc(text), 3000) } }
  end
  local labels = util.sorted_pairs(msg.labels)
  if #labels > 0 then
    local fields = json.array()
    for i = 1, math.min(#labels, 10) do
      fields[i] = { type = "mrkdwn", text = util.truncate("*" .. esc(labels[i][1]) .. "*\n" .. esc(labels[i][2]), 2000) }
    end
    blocks[#blocks + 1] = { type = "section", fields = fields }
  end
  local ctx = {}
  if msg.source then ctx[#ctx + 1] = "source: " .. esc(msg.source) end
  if msg.url then ctx[#ctx + 1] = "<" .. tostring(msg.url) .. "|open>" end
  if #ctx > 0 then
    blocks[#blocks + 1] = { type = "context", elements = { { type = "mrkdwn", text = table.concat(ctx, " · ") } } }
  end
  return { text = util.truncate(esc(head) .. (text and ("\n" .. esc(text)) or ""), 3000), blocks = blocks }
end

function K.request(cfg, payload)
  local headers = { ["Content-Type"] = "application/json; charset=utf-8" }
  for k, v in pairs(cfg.headers or {}) do headers[k] = v end
  return { http = { url = cfg.url, method = "POST", headers = headers, body = assert(json.encode(payload)) } }
end

return K
