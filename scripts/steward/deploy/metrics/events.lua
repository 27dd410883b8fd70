-- steward.deploy.metrics.events: an analysis metric from steward's own event log: how many
-- events of a type (and a match) arrived over a window before now, as a count, a rate per
-- second, or the ratio of those for which a predicate holds (e.g. 5xx among requests).
local events = require "steward.events"
local time = require "steward.time"

local type, pairs, error, tostring, pcall, format = type, pairs, error, tostring, pcall, string.format

local M = {}

local FIELDS = { type = true, match = true, window = true, select = true, ratio = true, tenant = true }
local SELECT = { count = true, rate = true, ratio = true }

-- A match table compares data fields for equality: { code = 503, route = "/pay" }.
local function matcher(m)
  if m == nil then return nil end
  if type(m) == "function" then return m end
  return function(ev)
    local d = type(ev.data) == "table" and ev.data or {}
    for k, v in pairs(m) do
      if d[k] ~= v then return false end
    end
    return true
  end
end

-- provider{type, window [, match] [, select = "count" | "rate" | "ratio"] [, ratio = fn(ev)]
--          [, tenant]} -> fn() -> number | nil, err
function M.provider(o)
  if type(o) ~= "table" then error("metrics.events: table expected, got " .. type(o), 2) end
  for k in pairs(o) do
    if not FIELDS[k] then error("metrics.events: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if type(o.type) ~= "string" or not (events.is_type(o.type) or o.type:match("^[%w_.-]+%.%*$")) then
    error("metrics.events: type: event type (or prefix.*) expected", 2)
  end
  if o.match ~= nil and type(o.match) ~= "function" and type(o.match) ~= "table" then
    error("metrics.events: match: function(ev) -> boolean or table of data fields expected", 2)
  end
  local secs = time.parse_duration(o.window)
  if not secs or secs <= 0 then error("metrics.events: window: positive duration like \"5m\" expected", 2) end
  local sel = o.select or (o.ratio and "ratio" or "count")
  if not SELECT[sel] then error("metrics.events: select: \"count\", \"rate\" or \"ratio\" expected", 2) end
  if sel == "ratio" and type(o.ratio) ~= "function" then
    error("metrics.events: ratio: function(ev) -> boolean expected (the events counted above the line)", 2)
  end
  if o.tenant ~= nil and type(o.tenant) ~= "string" then error("metrics.events: tenant: string expected", 2) end
  local match, ratio, etype, tenant = matcher(o.match), o.ratio, o.type, o.tenant
  return function()
    local now = time.now()
    local n, hits = 0, 0
    local ok, err = pcall(function()
      for ev in events.replay { type = etype, tenant = tenant, since = now - secs, ["until"] = now } do
        if match == nil or match(ev) then
          n = n + 1
          if ratio and ratio(ev) then hits = hits + 1 end
        end
      end
    end)
    if not ok then return nil, "metrics.events: " .. tostring(err) end
    if sel == "count" then return n end
    if sel == "rate" then return n / secs end
    if n == 0 then return nil, format("metrics.events: no %s events in the last %s: no ratio", etype, tostring(o.window)) end
    return hits / n
  end
end

M.new = M.provider

return M
