-- steward.billing.revenue_repl: the REPL's billing.revenue{from=, to=, tenant=, basis=} — the
-- monthly revenue report as a table of rows, amounts as exact strings (docs/billing/revenue.md).
local revenue = require "steward.billing.revenue"
local decimal = require "steward.decimal"

local type, pairs, ipairs, error = type, pairs, ipairs, error

local M = {}

M.HELP = { "billing.revenue{from=, to=, tenant=, basis=}", "revenue by month: invoiced, recognized, deferred (ASC 606)" }

local COLS = { "month", "currency", "invoiced", "recognized", "deferred_opening", "deferred_closing" }

-- helper(st, rows) -> the function the REPL calls: st() gives the store, rows lays out a table.
function M.helper(st, rows)
  return function(f)
    if f ~= nil and type(f) ~= "table" then error("billing.revenue: filter: table expected", 2) end
    local opts = {}
    for k, v in pairs(f or {}) do opts[k] = v end
    opts.store = st()
    local list, err = revenue.report(opts)
    if not list then return nil, err end
    for _, r in ipairs(list) do
      for i = 3, #COLS do r[COLS[i]] = decimal.string(r[COLS[i]]) end
    end
    return rows(list, COLS)
  end
end

return M
