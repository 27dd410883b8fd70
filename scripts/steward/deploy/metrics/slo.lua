-- steward.deploy.metrics.slo: an analysis metric from an SLO of steward.slo: its burn rate over
-- one of its windows, its SLI, or what remains of its error budget, evaluated now.
local time = require "steward.time"

local type, pairs, ipairs, error, tostring = type, pairs, ipairs, error, tostring

local M = {}

local FIELDS = { slo = true, value = true, window = true }
local VALUES = { burn_rate = true, sli = true, budget_remaining = true, budget_remaining_ratio = true }

-- provider{slo = slo.define{...}, value = "burn_rate" | "sli" | "budget_remaining" |
--          "budget_remaining_ratio" [, window = "5m"]} -> fn() -> number | nil, err
-- window: one of the SLO's alert windows, or absent for the whole period (the budget window).
function M.provider(o)
  if type(o) ~= "table" then error("metrics.slo: table expected, got " .. type(o), 2) end
  for k in pairs(o) do
    if not FIELDS[k] then error("metrics.slo: unknown field '" .. tostring(k) .. "'", 2) end
  end
  local s = o.slo
  if type(s) ~= "table" or type(s.evaluate) ~= "function" then error("metrics.slo: slo: an SLO from slo.define expected", 2) end
  local value = o.value or "burn_rate"
  if not VALUES[value] then
    error("metrics.slo: value: \"burn_rate\", \"sli\", \"budget_remaining\" or \"budget_remaining_ratio\" expected", 2)
  end
  local win = o.window
  if win ~= nil then
    if value ~= "burn_rate" and value ~= "sli" then error("metrics.slo: window: only for burn_rate and sli", 2) end
    local known = false
    for _, a in ipairs(s.alerts or {}) do
      if a.long == win or a.short == win then known = true end
    end
    if not known then
      error("metrics.slo: window: " .. tostring(win) .. " is not one of the SLO's alert windows (absent = the whole period)", 2)
    end
  end
  local key = win or "budget"
  return function()
    local ev, err = s:evaluate(time.now())
    if not ev then return nil, err end
    local v
    if value == "burn_rate" then v = ev.burn[key]
    elseif value == "sli" then v = ev.sli[key]
    elseif value == "budget_remaining" then v = ev.budget.valid > 0 and ev.budget.remaining or nil
    else v = ev.budget.remaining_ratio end
    if v == nil then return nil, "metrics.slo: " .. s.name .. ": no data for " .. value .. (win and (" over " .. win) or "") end
    return v
  end
end

M.new = M.provider

return M
