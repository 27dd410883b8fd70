-- steward.billing.invoice_runs: what the shipped policy billing.invoicing runs
-- (invoices.invoice_due, invoices.finalize_due): the invoices of the periods
-- steward.billing.subscriptions.due lists, the unused in-advance fee of a subscription that ended
-- early given back, the drafts past the grace window finalized.
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"
local build = require "steward.billing.invoice_build"
local invoices = require "steward.billing.invoices"

local ipairs, tostring, require = ipairs, tostring, require

local M = {}

local function billing(name) return require("steward.billing." .. name) end

local UNUSED = "unused subscription fee"

-- credit_unused(st, sub, period [, now]) -> true | nil, err: a subscription paid in advance
-- that terminates (or is upgraded) before its period ends paid a fee for days it will not use.
-- A draft of that period is simply rebuilt (its fee line is prorated to the termination); a
-- finalized or paid one gets a credit note (method credit) for the unused part, once.
function M.credit_unused(st, sub, period, now)
  local id = invoices.id_of(sub.id, period)
  local inv, err = invoices.get(st, id)
  if inv == nil then return nil, err end
  if not inv or inv.state == "voided" then return true end
  if inv.state == "draft" then
    local r, rerr = invoices.build(st, sub.id, period, { now = now })
    if not r then return nil, rerr end
    return true
  end
  local fee
  for _, l in ipairs(inv.lines) do if l.kind == "subscription" then fee = l end end
  if not fee then return true end
  local cn = require "steward.billing.credit_notes"
  local notes
  notes, err = cn.list(st, { invoice = id, limit = 1000 })
  if not notes then return nil, err end
  for _, n in ipairs(notes) do if n.reason == UNUSED then return true end end
  local used = build.fee_line(sub, { amount = fee.details.full_amount, code = inv.plan }, period, inv.currency)
  local unused = fee.amount - (used and used.amount or decimal.zero)
  if unused <= decimal.zero then return true end
  local left
  left, err = cn.creditable(st, inv)
  if not left then return nil, err end
  if left <= decimal.zero then return true end
  local r
  r, err = cn.create(st, id, { lines = { { line = fee.id, amount = decimal.string(unused) } }, reason = UNUSED }, now)
  if not r and tostring(err):match("more than the") then
    -- credits given by hand already: what is left, with its taxes
    r, err = cn.create(st, id, { amount = decimal.string(left), reason = UNUSED }, now)
  end
  if not r then return nil, err end
  return true
end

-- invoice_due(st [, now]) -> {built = {invoice ids}, errors = {"subscription: reason"}} | nil, err.
-- Builds the invoice of every period steward.billing.subscriptions.due lists (whole periods: the
-- subscription's start, trial and termination prorate the fee) and marks the period invoiced.
-- The usage of an in-advance plan's period that ended is billed by the next period's invoice
-- (Lago's in-advance invoice), so such an "arrears" period is only marked; a terminated
-- in-advance subscription gets a final invoice of its last usage.
function M.invoice_due(st, now)
  now = util.now(now)
  local subscriptions, plans, periods = billing("subscriptions"), billing("plans"), billing("periods")
  local due, err = subscriptions.due(st, now)
  if not due then return nil, err end
  local cfg = invoices.config()
  local out = { built = {}, errors = {} }
  local plan_of = {}
  for _, d in ipairs(due) do
    local key = d.plan .. "@" .. tostring(d.plan_version)
    local plan = plan_of[key]
    if plan == nil then plan = plans.get(st, d.plan, d.plan_version) or false; plan_of[key] = plan end
    local sub = subscriptions.get(st, d.subscription)
    local ok, why = true, nil
    if not plan or not sub then
      ok, why = false, "no plan " .. key .. " or subscription"
    elseif not (plan.pay_in_advance and d.kind == "arrears") then
      local full = periods.bounds(plan.interval, sub.anchor or sub.started, d.period.from,
        { billing_time = sub.billing_time, timezone = cfg.timezone })
      local inv, berr = invoices.build(st, d.subscription, { from = full.from, to = full.to },
        { final = (d.kind == "final" and plan.pay_in_advance) or nil, now = now })
      if inv then out.built[#out.built + 1] = inv.id else ok, why = false, berr end
      if ok and d.kind == "final" and plan.pay_in_advance then
        ok, why = M.credit_unused(st, sub, full, now)
      end
    end
    if ok then
      local marked, merr = subscriptions.mark_invoiced(st, d.subscription, d.period, d.kind)
      if not marked then ok, why = false, merr end
    end
    if not ok then out.errors[#out.errors + 1] = d.subscription .. ": " .. tostring(why) end
  end
  return out
end

-- finalize_due(st [, now]) -> {finalized = {numbers}, errors = {...}} | nil, err: the drafts
-- built more than billing.grace_period ago, finalized (unless billing.invoices.auto_finalize is
-- false: then an operator finalizes them through the API).
function M.finalize_due(st, now)
  now = util.now(now)
  local cfg = invoices.config()
  local out = { finalized = {}, errors = {} }
  if not cfg.invoices.auto_finalize then return out end
  local drafts, err = invoices.drafts_due(st, now, cfg.grace_seconds)
  if not drafts then return nil, err end
  for _, d in ipairs(drafts) do
    local inv, ferr = invoices.finalize(st, d.id, now)
    if inv then out.finalized[#out.finalized + 1] = inv.number
    else out.errors[#out.errors + 1] = d.id .. ": " .. tostring(ferr) end
  end
  return out
end

return M
