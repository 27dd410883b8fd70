-- billing.usage: records each acknowledged usage event (`billing.usage`, appended by POST
-- /v1/billing/usage) into billing_usage, once per (subscription, transaction_id). A re-send
-- with a known id is not applied and is announced as billing.usage.duplicate; an event whose
-- billing period closed more than billing.grace_period before it was received is announced as
-- billing.usage.late and not recorded. A recorded event of a charge paid in advance gets its fee
-- at once (invoices.bill_in_advance). Handled one subscription at a time, in log order; the
-- queued events of a subscription in batches (handle_batch: one transaction for their rows,
-- one decision-log row). docs/billing/usage.md.
local usage = require "steward.billing.usage"
local invoices = require "steward.billing.invoices"
local subscriptions = require "steward.billing.subscriptions"
local plans = require "steward.billing.plans"

local type, tostring, error, ipairs = type, tostring, error, ipairs

-- in_advance(sub_id) -> false when the subscription's plan has no charge paid in advance (read
-- as invoices.bill_in_advance reads it); true otherwise, also when it cannot be read: then
-- bill_in_advance is called and reports why.
local function in_advance(sub_id)
  local sub = subscriptions.get(sub_id)
  if not sub then return true end
  local plan = plans.get(sub.plan, sub.plan_version)
  if not plan then return true end
  for _, c in ipairs(plan.charges or {}) do if c.pay_in_advance then return true end end
  return false
end

return {
  capabilities = { billing = true },
  on = { "billing.usage" },
  key = function(ev) return type(ev.data) == "table" and tostring(ev.data.subscription) or "-" end,
  batch_max = 500,
  -- the events of one subscription, in log order: their rows in one transaction. A store error
  -- raises before anything is recorded or announced; the dispatcher then runs each event alone
  -- through handle. The in-advance fees come after, keyed per event (a rerun finds them made).
  handle_batch = function(list, ctx)
    if ctx.dry_run then
      local would = {}
      for i, ev in ipairs(list) do would[i] = { would = "record", transaction_id = ev.data.transaction_id } end
      return would
    end
    local outcomes, err = usage.record_many(list)
    if not outcomes then error(err, 0) end
    local out, advance = {}, {}
    for i, o in ipairs(outcomes) do
      local ev = list[i]
      if o.err then
        out[i] = { refused = o.err }
      else
        out[i] = { [o.outcome] = ev.data.transaction_id }
        if o.outcome == "recorded" then
          local sub_id = o.subscription
          if advance[sub_id] == nil then advance[sub_id] = in_advance(sub_id) end
          if advance[sub_id] then
            local inv, ierr = invoices.bill_in_advance(sub_id, ev.data.transaction_id, ev.time)
            if inv == nil then error("in-advance fee: " .. tostring(ierr), 0) end
            if inv then out[i].invoice = inv.number or inv.id end
          end
        end
      end
    end
    return out
  end,
  handle = function(ev, ctx)
    if ctx.dry_run then return { would = "record", transaction_id = ev.data.transaction_id } end
    -- record answers the outcome and, when recorded, the subscription's id (an external_id resolved)
    local outcome, err = usage.record(ev)
    if not outcome then
      -- refused for good (the subscription or metric is gone): recorded as the outcome, not retried
      if tostring(err):match("^invalid: ") then return { refused = err } end
      error(err, 0) -- the store: retried with backoff
    end
    local out = { [outcome] = ev.data.transaction_id }
    if outcome == "recorded" then
      -- charges paid in advance: the event's fee on an invoice of its own, keyed by (subscription,
      -- transaction_id): a replay after a crash finds it made (h11; docs/billing/invoices.md)
      local sub_id = err
      local inv, ierr = invoices.bill_in_advance(sub_id, ev.data.transaction_id, ev.time)
      if inv == nil then error("in-advance fee: " .. tostring(ierr), 0) end -- retried: the record is once
      if inv then out.invoice = inv.number or inv.id end
    end
    return out
  end,
}
