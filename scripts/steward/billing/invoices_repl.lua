-- steward.billing.invoices_repl: the REPL's invoice helpers, added to h4's `billing` table
-- (steward.billing.repl): invoices and credit notes as rows, one invoice as its JSON view, and
-- finalize / void in admin sessions only.
local invoices = require "steward.billing.invoices"
local credit_notes = require "steward.billing.credit_notes"
local util = require "steward.runtime.store.util"
local decimal = require "steward.decimal"

local type, ipairs, tostring, error = type, ipairs, tostring, error

local M = {}

M.HELP = {
  { "billing.invoices{tenant=, state=, subscription=}", "invoices: id, number, tenant, state, period, total" },
  { "billing.invoice(id)", "one invoice, as GET /v1/billing/invoices/{id} shows it" },
  { "billing.credit_notes{tenant=, invoice=}", "credit notes: number, invoice, method, total, remaining" },
  { "billing.finalize(id) / billing.void(id, reason)", "finalize (numbered) / void an invoice (admin)" },
}

local function iso(t) return t and util.format_rfc3339(t) or nil end

-- install(b, {st = fn() -> store, rows = helpers.rows, admin = fn(what)}): adds the helpers to b
-- (the REPL's billing table). steward.billing.repl lists M.HELP in its own help.
function M.install(b, opts)
  local st, rows = opts.st, opts.rows

  function b.invoices(f)
    if f ~= nil and type(f) ~= "table" then error("billing.invoices: filter: table expected", 2) end
    local list, err = invoices.list(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, inv in ipairs(list) do
      out[i] = { id = inv.id, number = inv.number, tenant = inv.tenant, state = inv.state,
                 from = iso(inv.period.from), to = iso(inv.period.to),
                 total = inv.total:format(decimal.scale(inv.currency) or 2), currency = inv.currency }
    end
    return rows(out, { "id", "number", "tenant", "state", "from", "to", "total", "currency" })
  end

  function b.invoice(id)
    if type(id) ~= "string" then error("billing.invoice: id: string expected", 2) end
    local inv, err = invoices.get(st(), id)
    if not inv then return nil, err or ("no invoice " .. id) end
    return invoices.view(inv)
  end

  function b.credit_notes(f)
    if f ~= nil and type(f) ~= "table" then error("billing.credit_notes: filter: table expected", 2) end
    local list, err = credit_notes.list(st(), f or {})
    if not list then return nil, err end
    local out = {}
    for i, c in ipairs(list) do
      out[i] = { number = c.number, invoice = c.invoice, tenant = c.tenant, method = c.method, state = c.state,
                 total = tostring(c.total), remaining = tostring(c.remaining), reason = c.reason }
    end
    return rows(out, { "number", "invoice", "tenant", "method", "state", "total", "remaining", "reason" })
  end

  b.finalize = function(id)
    opts.admin("billing.finalize")
    local inv, err = invoices.finalize(st(), id)
    if not inv then return nil, err end
    return invoices.view(inv)
  end
  b.void = function(id, reason)
    opts.admin("billing.void")
    local inv, err = invoices.void(st(), id, reason)
    if not inv then return nil, err end
    return invoices.view(inv)
  end
end

return M
