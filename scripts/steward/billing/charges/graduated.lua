-- steward.billing.charges.graduated: Lago's "graduated" model — each tier prices the units that
-- fall in it at its per_unit_amount and adds its flat_amount once the usage reaches the tier; the
-- first tier's flat amount is billed even at zero units (Lago does). Tier widths follow Lago's
-- ranges: when every range starts where the previous one ends (0–0.1, 0.1–1, 1–∞) a tier holds
-- to_value − from_value units; when ranges start one above (0–10, 11–20, 21–∞) the bounds are
-- inclusive and a tier from 11 to 20 holds 10 units.
local decimal = require "steward.decimal"
local common = require "steward.billing.charges.common"

local ipairs = ipairs

local M = {}

M.check = common.ranges_check("graduated", "graduated_ranges", { "per_unit_amount", "flat_amount" })

local function adjacent(ranges)
  if #ranges < 2 then return false end
  for i = 2, #ranges do
    if ranges[i].from_value ~= (ranges[i - 1].to_value or decimal.zero) then return false end
  end
  return true
end

-- tiers(ranges, total) -> list of {from_value, to_value, units, per_unit_amount, flat_amount}:
-- the units of `total` that each tier holds, up to the tier that contains total.
function M.tiers(ranges, total)
  local adj, out = adjacent(ranges), {}
  for _, r in ipairs(ranges) do
    local effective = (r.to_value and total >= r.to_value) and r.to_value or total
    local units
    if r.from_value:is_zero() then
      units = effective
    else
      units = effective - r.from_value
      if not adj then units = units + 1 end
    end
    out[#out + 1] = { from_value = r.from_value, to_value = r.to_value, units = units,
                      per_unit_amount = r.per_unit_amount, flat_amount = r.flat_amount }
    if r.to_value == nil or r.to_value >= total then break end
  end
  return out
end

-- price(n, units, full, agg, opts): tiers are chosen by the full units; a prorated charge
-- (units < full) prices each tier's units at the same fraction units/full, flat amounts whole
-- (Lago's prorated graduated model with one proration for every unit).
-- opts.exclude_event: the "before" side of a pay-in-advance difference — no first-tier flat
-- amount at zero units, so that the first event pays it.
function M.price(n, units, full, _, opts)
  if full:is_zero() and opts.exclude_event then
    return { amount = decimal.zero, unit_amount = decimal.zero, details = { tiers = {} } }
  end
  local fraction
  if not full:is_zero() and units ~= full then fraction = units / full end
  local amount, tiers = decimal.zero, M.tiers(n.graduated_ranges, full)
  for _, t in ipairs(tiers) do
    local priced = fraction and t.units * fraction or t.units
    t.units = priced
    t.per_unit_total_amount = priced * t.per_unit_amount
    t.total_with_flat_amount = t.per_unit_total_amount + t.flat_amount
    amount = amount + t.total_with_flat_amount
  end
  return { amount = amount, unit_amount = common.per_unit(amount, full), details = { tiers = tiers } }
end

return M
