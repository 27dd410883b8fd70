-- steward.billing: usage billing (docs/billing.md) — plans, subscriptions, usage, coupons and
-- wallets (h4's parts), and the formulas, invoices, payments, revenue and MRR built on them.
-- Each part is loaded on first use, and a part that is not installed is simply absent
-- (billing.invoices == nil), so one missing part never breaks the others.
local pcall, require, rawset, setmetatable, type, tostring, error = pcall, require, rawset, setmetatable, type, tostring, error

local PARTS = {
  config = "steward.billing.config", metrics = "steward.billing.metrics", plans = "steward.billing.plans",
  subscriptions = "steward.billing.subscriptions", usage = "steward.billing.usage",
  coupons = "steward.billing.coupons", wallets = "steward.billing.wallets",
  aggregate = "steward.billing.aggregate", periods = "steward.billing.periods", charges = "steward.billing.charges",
  invoices = "steward.billing.invoices", taxes = "steward.billing.taxes", credit_notes = "steward.billing.credit_notes",
  render = "steward.billing.render", revenue = "steward.billing.revenue",
  payments = "steward.billing.payments", dunning = "steward.billing.dunning",
  mrr = "steward.billing.mrr", cohorts = "steward.billing.cohorts", churn = "steward.billing.churn",
}

local M = { PARTS = PARTS }

return setmetatable(M, { __index = function(t, k)
  local name = PARTS[k]
  if not name then return nil end
  local ok, mod = pcall(require, name)
  if not ok or type(mod) ~= "table" then
    -- an error other than "not installed" is the part's own bug: say so
    if not ok and not tostring(mod):find("module '" .. name .. "' not found", 1, true) then error(mod, 2) end
    return nil
  end
  rawset(t, k, mod)
  return mod
end })
