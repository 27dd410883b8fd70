-- SMS through Twilio's Programmable Messaging API (or a compatible one): a form-encoded
-- POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json with To, From (or
-- MessagingServiceSid) and Body, authenticated with HTTP basic auth.
local crypto = require "steward.crypto"
local util = require "steward.notify.util"

local K = { options = { account_sid = "string", auth_token = "string", api_key = "string",
                        api_secret = "string", from = "string", messaging_service_sid = "string",
                        to = "string", base_url = "string" } }

function K.configure(opts, bad)
  if type(opts.account_sid) ~= "string" or opts.account_sid == "" then bad("account_sid", "string expected") end
  local user, pass = opts.account_sid, opts.auth_token
  if opts.api_key then user, pass = opts.api_key, opts.api_secret end
  if type(pass) ~= "string" then bad(opts.api_key and "api_secret" or "auth_token", "string expected") end
  if not opts.from and not opts.messaging_service_sid then bad("from", "sender number (or messaging_service_sid) expected") end
  return {
    url = (opts.base_url or "https://api.twilio.com"):gsub("/+$", "") .. "/2010-04-01/Accounts/" ..
          opts.account_sid .. "/Messages.json",
    auth = "Basic " .. crypto.base64(user .. ":" .. pass),
    from = opts.from, service = opts.messaging_service_sid, to = opts.to,
  }
end

-- One SMS is at most 1600 characters in Twilio's API; keep well inside one or two segments.
function K.template(msg)
  local text = util.text(msg)
  local body = util.headline(msg) .. (text and ("\n" .. text) or "")
  -- The link once: a text that already carries it (an incident's ack link) does not get it again.
  if msg.url and not body:find(tostring(msg.url), 1, true) then body = body .. "\n" .. tostring(msg.url) end
  return { Body = util.truncate(body, 1600) }
end

function K.request(cfg, fields, ctx, msg)
  fields.To = fields.To or msg.to or cfg.to
  if not fields.To then error("notify sms: no recipient: set 'to' on the channel or in the message", 3) end
  if not fields.From and not fields.MessagingServiceSid then
    fields.From, fields.MessagingServiceSid = cfg.from, cfg.from == nil and cfg.service or nil
  end
  return { http = { url = cfg.url, method = "POST",
                    headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                                Authorization = cfg.auth, Accept = "application/json" },
                    body = util.form_encode(fields) } }
end

return K
