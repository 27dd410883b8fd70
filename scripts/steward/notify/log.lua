-- The `log` kind: a notification becomes one line of the daemon's own log (msg=notification),
-- through steward.log. It needs no peer, so it works on a fresh machine: the shipped alerting
-- configuration sends there until real channels are filled in, and a tour's alert is seen.
local util = require "steward.notify.util"

local K = { options = { level = "string" } }

local LEVELS = { debug = true, info = true, warn = true, error = true }

function K.configure(opts, bad)
  local level = opts.level or "info"
  if not LEVELS[level] then bad("level", "one of debug, info, warn, error expected, got '" .. tostring(level) .. "'") end
  return { level = level }
end

-- The fields of the log line: a headline, the body and, for alerts, their names and labels.
function K.template(msg)
  local out = { title = util.headline(msg), text = util.text(msg) }
  if type(msg.alerts) == "table" then
    local names = {}
    for i, a in ipairs(msg.alerts) do
      names[i] = type(a) == "table" and type(a.labels) == "table" and tostring(a.labels.alertname or "alert") or "alert"
    end
    out.alerts = table.concat(names, ",")
  end
  local labels = {}
  for _, kv in ipairs(util.sorted_pairs(msg.labels)) do labels[#labels + 1] = kv[1] .. "=" .. kv[2] end
  if #labels > 0 then out.labels = table.concat(labels, ",") end
  if msg.to then out.to = tostring(msg.to) end
  if msg.url then out.url = tostring(msg.url) end
  return out
end

function K.request(cfg, fields, ctx)
  fields.channel, fields.key = ctx.channel, ctx.key
  return { log = { level = cfg.level, fields = fields } }
end

return K
