-- steward.billing.charges.standard: one price per unit (Lago's "standard" model):
-- amount = units × amount.
local common = require "steward.billing.charges.common"

local M = {}

local ALLOWED = { amount = true }

function M.check(props, path)
  common.known(props, ALLOWED, path, "standard")
  return { amount = common.nonneg(props.amount, path .. ".amount") }
end

-- price(n, units, full): units are what is billed (prorated when the charge is), full the units
-- before proration, which the unit price is shown against.
function M.price(n, units, full)
  local amount = units * n.amount
  return { amount = amount, unit_amount = common.per_unit(amount, full), details = { per_unit_amount = n.amount } }
end

return M
