-- steward.billing.charges.package: Lago's "package" model — units are sold in packages of
-- package_size; the free_units come first, and a started package is a whole one:
-- amount = ceil((units − free_units) / package_size) × amount.
local decimal = require "steward.decimal"
local common = require "steward.billing.charges.common"

local M = {}

local ALLOWED = { amount = true, package_size = true, free_units = true }

function M.check(props, path)
  common.known(props, ALLOWED, path, "package")
  return {
    amount = common.nonneg(props.amount, path .. ".amount"),
    package_size = common.integer(props.package_size, path .. ".package_size", 1),
    free_units = common.integer(props.free_units == nil and 0 or props.free_units, path .. ".free_units", 0),
  }
end

function M.price(n, units)
  local paid = units - n.free_units
  if paid:sign() < 0 then paid = decimal.zero end
  local packages = (paid / n.package_size):ceil()
  local amount = packages * n.amount
  return { amount = amount, unit_amount = common.per_unit(amount, paid), details = {
    free_units = n.free_units, paid_units = paid, package_size = n.package_size, packages = packages,
    per_package_unit_amount = n.amount } }
end

return M
