-- steward.billing.charges.volume: Lago's "volume" model — the whole usage is priced at the one
-- range it falls in: amount = units × per_unit_amount + flat_amount of that range. A usage
-- between two integral ranges (100.5 between 0–100 and 101–200) falls in the upper one; at zero
-- units the first range's flat amount is billed. A prorated charge picks the range by its full
-- units and prices its prorated units.
local common = require "steward.billing.charges.common"

local ipairs = ipairs

local M = {}

M.check = common.ranges_check("volume", "volume_ranges", { "per_unit_amount", "flat_amount" })

function M.range(ranges, full)
  local up = full:ceil()
  for _, r in ipairs(ranges) do
    if r.from_value <= up and (r.to_value == nil or full <= r.to_value) then return r end
  end
  return ranges[1] -- below zero (a unique count after removals): the first range
end

function M.price(n, units, full)
  local r = M.range(n.volume_ranges, full)
  local per_unit_total = units * r.per_unit_amount
  local amount = per_unit_total + r.flat_amount
  return { amount = amount, unit_amount = common.per_unit(amount, full), details = {
    from_value = r.from_value, to_value = r.to_value, flat_unit_amount = r.flat_amount,
    per_unit_amount = common.per_unit(per_unit_total, full), per_unit_total_amount = per_unit_total } }
end

return M
