-- steward.slo.events: an SLO source counting good and valid events of the event log. One pass
-- over the longest window, each event added to the smallest window holding it, then summed
-- outwards, so the cost is one paged read of the longest window whatever the number of windows.
local events = require "steward.runtime.events"

local type, pairs, error, pcall, tostring = type, pairs, error, pcall, tostring

local M = {}

local FIELDS = { type = true, tenant = true, good = true, valid = true, store = true, page = true }

local Source = {}
Source.__index = Source

function M.new(o)
  if type(o) ~= "table" then error("slo.events: table expected, got " .. type(o), 2) end
  for k in pairs(o) do
    if not FIELDS[k] then error("slo.events: unknown field '" .. tostring(k) .. "'", 2) end
  end
  if type(o.type) ~= "string" then error("slo.events: type: event type (or prefix.*) expected", 2) end
  if type(o.good) ~= "function" then error("slo.events: good: function(ev) -> boolean expected", 2) end
  if o.valid ~= nil and type(o.valid) ~= "function" then error("slo.events: valid: function(ev) -> boolean expected", 2) end
  if o.tenant ~= nil and type(o.tenant) ~= "string" then error("slo.events: tenant: string expected", 2) end
  return setmetatable({ kind = "events", type = o.type, tenant = o.tenant, good = o.good,
    valid = o.valid, store = o.store, page = o.page }, Source)
end

-- measure(windows, now) -> { [window.name] = {good = n, valid = n} } | nil, err. windows are
-- sorted by length, shortest first; each is [from, now).
function Source:measure(wins, now)
  local st = self.store or require("steward.runtime.store").default()
  if not st then return nil, "slo.events: no store (pass store = ..., or open the daemon's store)" end
  local n = #wins
  local good, valid = {}, {}
  for i = 1, n do good[i], valid[i] = 0, 0 end
  local oldest = wins[n].from
  for i = 1, n do if wins[i].from < oldest then oldest = wins[i].from end end
  local is_good, is_valid = self.good, self.valid
  local ok, err = pcall(function()
    for ev in events.replay(st, { type = self.type, tenant = self.tenant, since = oldest, ["until"] = now, page = self.page }) do
      if is_valid == nil or is_valid(ev) then
        local t = ev.time
        for i = 1, n do
          if t >= wins[i].from then
            valid[i] = valid[i] + 1
            if is_good(ev) then good[i] = good[i] + 1 end
            break
          end
        end
      end
    end
  end)
  if not ok then return nil, "slo.events: " .. tostring(err) end
  local out, g, v = {}, 0, 0
  for i = 1, n do
    g, v = g + good[i], v + valid[i]
    out[wins[i].name] = { good = g, valid = v }
  end
  return out
end

return M
