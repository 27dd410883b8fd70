-- What the steward.billing.charges specs share: the module, decimal's constructor, the context
-- of a USD price and a charge built from its model and properties.
--   local ch = assert(loadfile("tests/support/billing_charges.lua"))()
--   local decimal, charges, D, USD, charge = ch.decimal, ch.charges, ch.D, ch.USD, ch.charge
local decimal = require "steward.decimal"

local M = { decimal = decimal, charges = require "steward.billing.charges", D = decimal.new, USD = { currency = "USD" } }

-- A charge on metric "m"; extra's fields (id, filters, pay_in_advance, ...) are set over it.
function M.charge(model, properties, extra)
  local c = { metric = "m", model = model, properties = properties }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

return M
