-- steward.billing.payments_repl: the REPL's payment helpers, added to its `billing` table by
-- steward.billing.repl (docs/repl.md, docs/billing/payments.md): the attempts of an invoice
-- or a tenant, an invoice's dunning, and collecting now (admin sessions only).
local payments = require "steward.billing.payments"
local dunning = require "steward.billing.dunning"
local V = require "steward.billing.values"

local type, ipairs, error = type, ipairs, error

local M = {}

M.HELP = {
  { "billing.payments{invoice=, tenant=, status=}", "payment attempts: invoice, attempt, status, amount, decline, intent" },
  { "billing.dunning(invoice)", "where an unpaid invoice's dunning stands (retrying, exhausted, paid)" },
  { "billing.collect(invoice)", "charge a finalized invoice now (admin)" },
}

-- install(b, {rows, admin, st}): b is the REPL's billing table (steward.billing.repl)
function M.install(b, opts)
  local st, rows = opts.st, opts.rows
  function b.payments(f)
    if f ~= nil and type(f) ~= "table" then error("billing.payments: filter: table expected", 2) end
    local list, err = payments.list(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, a in ipairs(list) do
      out[i] = { invoice = a.invoice, attempt = a.attempt, status = a.status, amount = V.text(a.amount) .. " " .. a.currency,
                 decline = a.decline_code or a.code, intent = a.payment_intent, at = V.rfc3339(a.updated) }
    end
    return rows(out, { "invoice", "attempt", "status", "amount", "decline", "intent", "at" })
  end
  function b.dunning(invoice)
    if type(invoice) ~= "string" then error("billing.dunning: invoice: string expected", 2) end
    local d, err = dunning.state(st(), invoice)
    if d == nil then return nil, err end
    if not d then return nil, "no dunning for invoice " .. invoice end
    d.next_retry, d.updated = d.next_retry and V.rfc3339(d.next_retry) or nil, V.rfc3339(d.updated)
    return d
  end
  function b.collect(invoice)
    opts.admin("billing.collect")
    if type(invoice) ~= "string" then error("billing.collect: invoice: string expected", 2) end
    return payments.collect(st(), invoice)
  end
end

return M
