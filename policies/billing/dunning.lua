-- billing.dunning: what follows a failed payment (docs/billing/payments.md, "Dunning"). The
-- formula is this file: after the n-th failed attempt of an invoice, retry after the n-th of
-- `billing.dunning.retries` (a durable timer: billing.dunning.retry), telling the tenant each
-- time; once they are used up, give up: billing.dunning.exhausted and, with `suspend`, the
-- tenant suspended until the invoice is paid (steward.billing.payments resumes it then).
local dunning = require "steward.billing.dunning"

local type, tostring, error = type, tostring, error

local function must(v, err)
  if v == nil then error(tostring(err), 0) end
  return v
end

-- next_step(attempt, delays) -> {retry_in = seconds} | {exhausted = true}: edit this to change
-- the schedule's shape (say, retry sooner for a first-time failure).
local function next_step(attempt, delays)
  return dunning.plan(attempt, delays)
end

return {
  capabilities = { billing = true },
  on = { "billing.payment.failed", "billing.dunning.retry" },
  -- one invoice's attempts in order; invoices of a tenant may go in parallel
  key = function(ev) return type(ev.data) == "table" and ev.data.invoice or ev.tenant end,
  handle = function(ev, ctx)
    local d = ev.data
    if type(d) ~= "table" or type(d.invoice) ~= "string" or type(d.attempt) ~= "number" then
      error("data: {invoice, attempt} expected", 0)
    end
    if ev.type == "billing.dunning.retry" then
      local r = must(dunning.retry({ invoice = d.invoice, attempt = d.attempt }))
      return { retried = d.invoice, attempt = d.attempt, status = r.status }
    end
    local s = dunning.settings()
    local step = next_step(d.attempt, s.delays)
    if ctx.dry_run then return { invoice = d.invoice, step = step } end
    local out = { invoice = d.invoice, attempt = d.attempt }
    if step.retry_in then
      local r = must(dunning.schedule({ invoice = d.invoice, tenant = ev.tenant, attempt = d.attempt, delay = step.retry_in }))
      out.next_retry, out.paid = r.next_retry, r.paid
    else
      local r = must(dunning.exhaust({ invoice = d.invoice, tenant = ev.tenant, attempt = d.attempt }))
      out.exhausted, out.suspended, out.paid = true, r.suspended, r.paid
    end
    if not out.paid then
      out.notified = must(dunning.notify({ invoice = d.invoice, tenant = ev.tenant, attempt = d.attempt, amount = d.amount,
        currency = d.currency, message = d.message, next_retry = out.next_retry, exhausted = out.exhausted,
        suspended = out.suspended })).status
    end
    return out
  end,
}
