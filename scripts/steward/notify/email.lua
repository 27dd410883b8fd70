-- Email over SMTP through steward.http.send_mail (libcurl): the template makes the subject
-- and plain-text body, the channel adds the envelope (server, sender, recipients, login).
local util = require "steward.notify.util"

local K = { options = { url = "string", from = "string", to = "string|table", cc = "string|table",
                        bcc = "string|table", username = "string", password = "string",
                        starttls = "string", headers = "table" } }

function K.configure(opts, bad)
  if type(opts.url) ~= "string" then bad("url", "smtp:// or smtps:// URL expected") end
  if type(opts.from) ~= "string" then bad("from", "string expected, got " .. type(opts.from)) end
  if not (opts.to or opts.cc or opts.bcc) then bad("to", "at least one recipient expected") end
  return { url = opts.url, from = opts.from, to = opts.to, cc = opts.cc, bcc = opts.bcc,
           username = opts.username, password = opts.password, starttls = opts.starttls,
           headers = opts.headers }
end

function K.template(msg)
  local lines = {}
  local text = util.text(msg)
  if text then lines[#lines + 1] = text end
  local labels = util.sorted_pairs(msg.labels)
  if #labels > 0 then
    lines[#lines + 1] = ""
    for _, kv in ipairs(labels) do lines[#lines + 1] = kv[1] .. ": " .. kv[2] end
  end
  if msg.url then lines[#lines + 1] = "" lines[#lines + 1] = tostring(msg.url) end
  if msg.source then lines[#lines + 1] = "" lines[#lines + 1] = "-- sent by " .. tostring(msg.source) end
  local subject = util.headline(msg):gsub("[\r\n]+", " ")
  return { subject = subject, body = table.concat(lines, "\n") .. "\n" }
end

function K.request(cfg, mail, ctx, msg)
  local headers = {}
  for k, v in pairs(cfg.headers or {}) do headers[k] = v end
  for k, v in pairs(mail.headers or {}) do headers[k] = v end
  -- lets a mail filter (or a human) see that two messages are one notification resent
  if ctx.key then headers["X-Steward-Notification"] = (ctx.channel .. "/" .. ctx.key):gsub("%c", "?") end
  -- msg.to (a person's address, as escalation sends to users) comes before the channel's
  -- `to`; a channel made with `to = {}` only sends to addresses its messages name.
  local to = mail.to or msg.to or cfg.to
  local function none(v) return v == nil or (type(v) == "table" and #v == 0) end
  if none(to) and none(mail.cc or cfg.cc) and none(mail.bcc or cfg.bcc) then
    error("notify email: no recipient: set 'to' on the channel or in the message", 3)
  end
  return { mail = { url = cfg.url, from = mail.from or cfg.from, to = to, cc = mail.cc or cfg.cc,
                    bcc = mail.bcc or cfg.bcc, subject = mail.subject, body = mail.body, html = mail.html,
                    headers = next(headers) and headers or nil, username = cfg.username,
                    password = cfg.password, starttls = cfg.starttls } }
end

return K
