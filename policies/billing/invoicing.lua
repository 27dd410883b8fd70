-- billing.invoicing: builds the invoices of the periods that are due (steward.billing.invoices
-- .invoice_due: periods that ended, in-advance periods that began, the last period of a
-- terminated subscription) every 5 minutes and at once when a subscription terminates or is
-- upgraded; then finalizes, with their gap-free numbers, the drafts whose grace window
-- (billing.grace_period) has passed. Building and finalizing are idempotent, so a run again
-- after a crash changes nothing it did. docs/billing/invoices.md.
local invoices = require "steward.billing.invoices"

local error, tostring, ipairs, concat = error, tostring, ipairs, table.concat

return {
  capabilities = { billing = true },
  on = { "billing.subscription.terminated", "billing.subscription.upgraded" },
  schedule = "*/5 * * * *",
  -- one run at a time: two runs would race to build the same drafts (harmlessly, but twice the work)
  key = function() return "invoicing" end,
  handle = function(ev, ctx)
    if ctx.dry_run then return { would = "invoice the due periods and finalize the drafts past grace" } end
    local built, err = invoices.invoice_due(ev.time)
    if not built then error("invoicing: " .. tostring(err), 0) end
    local fin
    fin, err = invoices.finalize_due(ev.time)
    if not fin then error("invoicing: " .. tostring(err), 0) end
    local errors = {}
    for _, e in ipairs(built.errors) do errors[#errors + 1] = e end
    for _, e in ipairs(fin.errors) do errors[#errors + 1] = e end
    -- a period that failed stays due and is tried again at the next run; raising makes the
    -- failure visible (decision log, retries, dead letter) instead of a silent gap
    if #errors > 0 then error("invoicing: " .. concat(errors, "; "), 0) end
    return { built = #built.built, finalized = fin.finalized }
  end,
}
