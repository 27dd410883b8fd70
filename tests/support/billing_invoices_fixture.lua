-- A stand-in for steward.billing.invoices in the payment specs (tests/lua/billing_*_spec.lua,
-- policies/billing/dunning_spec.lua): the part of its interface steward.billing.payments calls
-- (get, pay with {id, provider, amount, at}) over the invoice record, kept in a kv namespace,
-- and put() to make a finalized invoice of any total and currency in one line. Specs hand it to
-- payments.use_invoices; the e2e tests use the real invoices. Not shipped.
local kv = require "steward.runtime.store.kv"
local store = require "steward.runtime.store"
local decimal = require "steward.decimal"

local M = {}

local function ns() return kv.ns(assert(store.default(), "no store"), "billing-fixture-invoices") end

-- put{id, tenant, currency, total, number, state} -> the invoice
function M.put(inv)
  local v = {}
  for k, x in pairs(inv) do v[k] = x end
  v.total = decimal.string(decimal.new(inv.total))
  v.state = v.state or "finalized"
  v.paid_count = v.paid_count or 0
  assert(ns():put(inv.id, v))
  return M.get(inv.id)
end

function M.get(id)
  local v, err = ns():get(id)
  if v == nil then return nil, err or ("not found: invoice " .. id) end
  v.total = decimal.new(v.total)
  return v
end

-- pay(id, payment) -> invoice: a paid invoice stays as it is (paid once)
function M.pay(id, payment)
  local v, err = M.get(id)
  if not v then return nil, err end
  if v.state == "paid" then return v end
  if v.state ~= "finalized" then return nil, "invalid state: " .. v.state end
  v.state, v.paid = "paid", payment.at
  v.paid_count = v.paid_count + 1
  v.payment = { id = payment.id, provider = payment.provider, amount = decimal.string(payment.amount) }
  v.total = decimal.string(v.total)
  assert(ns():put(id, v))
  return M.get(id)
end

return M
