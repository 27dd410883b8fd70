-- billing.usage: records each acknowledged usage event (`billing.usage`, appended by POST
-- /v1/billing/usage) into billing_usage, once per (subscription, transaction_id). A re-send
-- with a known id is not applied and is announced as billing.usage.duplicate; an event whose
-- billing period closed more than billing.grace_period before it was received is announced as
-- billing.usage.late and not recorded. A recorded event of a charge paid in advance gets its fee
-- at once (invoices.bill_in_advance). Handled one subscription at a time, in log order.
-- docs/billing/usage.md.
local usage = require "steward.billing.usage"
local invoices = require "steward.billing.invoices"

local type, tostring, error = type, tostring, error

return {
  capabilities = { billing = true },
  on = { "billing.usage" },
  key = function(ev) return type(ev.data) == "table" and tostring(ev.data.subscription) or "-" end,
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
