-- billing.usage: records each acknowledged usage event (`billing.usage`, appended by POST
-- /v1/billing/usage) into billing_usage, once per (subscription, transaction_id). A re-send
-- with a known id is not applied and is announced as billing.usage.duplicate; an event whose
-- billing period closed more than billing.grace_period before it was received is announced as
-- billing.usage.late and not recorded. Handled one subscription at a time, in log order.
-- docs/billing/usage.md.
local usage = require "steward.billing.usage"

local type, tostring, error = type, tostring, error

return {
  capabilities = { billing = true },
  on = { "billing.usage" },
  key = function(ev) return type(ev.data) == "table" and tostring(ev.data.subscription) or "-" end,
  handle = function(ev, ctx)
    if ctx.dry_run then return { would = "record", transaction_id = ev.data.transaction_id } end
    local outcome, err = usage.record(ev)
    if not outcome then
      -- refused for good (the subscription or metric is gone): recorded as the outcome, not retried
      if tostring(err):match("^invalid: ") then return { refused = err } end
      error(err, 0) -- the store: retried with backoff
    end
    return { [outcome] = ev.data.transaction_id }
  end,
}
