-- steward.billing.mrr_repl: the REPL's billing.mrr{}, billing.cohorts{} and billing.churn{}
-- (docs/billing/mrr.md, docs/repl.md): the same figures as GET /v1/billing/mrr and
-- /v1/billing/cohorts, as tables, amounts rounded to the currency's scale for the eye.
local mrr = require "steward.billing.mrr"
local cohorts = require "steward.billing.cohorts"
local churn = require "steward.billing.churn"
local util = require "steward.runtime.store.util"
local task = require "steward.task"

local type, pairs, ipairs, error, concat = type, pairs, ipairs, error, table.concat

local M = {}

M.HELP = {
  { "billing.mrr{from=, to=, currency=, tenant=}", "MRR per month: start, new, expansion, contraction, churn, reactivation, end" },
  { "billing.cohorts{from=, to=, currency=}", "retention cohorts by start month: logos and net revenue, month by month (%)" },
  { "billing.churn{tenant=, since=, limit=}", "churn-risk signals, newest first: tenant, week, reason, score" },
}

local MRR_COLS = { "currency", "month", "mrr_start", "new", "expansion", "contraction", "churn", "reactivation", "mrr_end",
  "customers_end" }

-- install(h, {rows = helpers.rows, help = the help list}): adds billing.mrr, .cohorts, .churn to h.billing.
function M.install(h, opts)
  local b = h.billing or {}
  h.billing = b
  for _, row in ipairs(M.HELP) do opts.help[#opts.help + 1] = row end
  local function filter(f, what)
    if f ~= nil and type(f) ~= "table" then error(what .. ": filter: table expected", 3) end
    local o = {}
    for k, v in pairs(f or {}) do o[k] = v end
    o.yield = task.yield -- a long history does not hold the daemon's loop
    return o
  end
  function b.mrr(f)
    local list, err = mrr.report(filter(f, "billing.mrr"))
    if not list then return nil, err end
    local rows = {}
    for i, r in ipairs(list) do rows[i] = mrr.display(r) end
    return opts.rows(rows, MRR_COLS)
  end
  function b.cohorts(f)
    local list, err = cohorts.report(filter(f, "billing.cohorts"))
    if not list then return nil, err end
    local rows = {}
    for i, c in ipairs(list) do
      local shown, logos, revenue = cohorts.display(c), {}, {}
      for j, m in ipairs(shown.months) do logos[j], revenue[j] = m.logo_retention, m.revenue_retention end
      rows[i] = { currency = c.currency, cohort = c.cohort, size = c.size, mrr = shown.mrr,
        logos = concat(logos, " "), revenue = concat(revenue, " ") }
    end
    return opts.rows(rows, { "currency", "cohort", "size", "mrr", "logos", "revenue" })
  end
  function b.churn(f)
    if f ~= nil and type(f) ~= "table" then error("billing.churn: filter: table expected", 2) end
    local list, err = churn.signals(f or {})
    if not list then return nil, err end
    local rows = {}
    for i, s in ipairs(list) do
      rows[i] = { tenant = s.tenant, week = s.week, reason = s.reason, score = s.score, at = util.format_rfc3339(s.at) }
    end
    return opts.rows(rows, { "tenant", "week", "reason", "score", "at" })
  end
end

return M
