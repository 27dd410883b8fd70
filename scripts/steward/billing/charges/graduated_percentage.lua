-- steward.billing.charges.graduated_percentage: Lago's "graduated_percentage" model — each tier
-- takes its rate (a percentage) of the units that fall in it, plus its flat_amount once the usage
-- reaches it; the first tier's flat amount is billed even at zero units. Tier bounds are
-- inclusive (0–10 holds 10 units, 11–20 holds 10 units), as Lago counts them.
local decimal = require "steward.decimal"
local common = require "steward.billing.charges.common"

local ipairs = ipairs

local M = {}

M.check = common.ranges_check("graduated_percentage", "graduated_percentage_ranges", { "rate", "flat_amount" })

function M.price(n, units, full, _, opts)
  local amount, tiers = decimal.zero, {}
  local one = decimal.new(1)
  for _, r in ipairs(n.graduated_percentage_ranges) do
    local u
    if r.to_value and units >= r.to_value then
      u = r.to_value - (r.from_value:is_zero() and one or r.from_value) + one
    elseif r.from_value:is_zero() then
      u = units
    else
      u = units - r.from_value + one
    end
    local flat = r.flat_amount
    if units:is_zero() and opts.exclude_event then flat = decimal.zero end
    local t = { from_value = r.from_value, to_value = r.to_value, units = u, rate = r.rate, flat_amount = flat,
                per_unit_total_amount = u * r.rate / 100 }
    t.total_with_flat_amount = t.per_unit_total_amount + flat
    amount = amount + t.total_with_flat_amount
    tiers[#tiers + 1] = t
    if r.to_value == nil or r.to_value >= units then break end
  end
  return { amount = amount, unit_amount = common.per_unit(amount, full), details = { tiers = tiers } }
end

return M
