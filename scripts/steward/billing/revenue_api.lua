-- steward.billing.revenue_api: GET /v1/billing/revenue?from=&to=&tenant=&basis= — the monthly
-- revenue report (docs/billing/revenue.md), amounts as exact decimal strings. A tenant's token
-- sees its own tenant's report only.
local json = require "steward.json"
local decimal = require "steward.decimal"
local revenue = require "steward.billing.revenue"

local type, ipairs, tostring = type, ipairs, tostring

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function month(v)
  return revenue.parse_month(v) and v, "a month YYYY-MM expected"
end

local function basis(v)
  return revenue.BASES[v] and v, "invoiced or paid expected"
end

local FIELDS = { "invoiced", "recognized", "deferred_opening", "deferred_closing" }

local function get_revenue(ctx, req, principal)
  local f, s, h, b = api.query(req, { from = month, to = month, tenant = api.params.text, basis = basis })
  if not f then return s, h, b end
  if f.from and f.to and f.from > f.to then return api.invalid("from", "after to") end
  if principal.tenant then
    if f.tenant and f.tenant ~= principal.tenant then
      return api.fail(404, "not_found", "no tenant " .. f.tenant)
    end
    f.tenant = principal.tenant
  end
  local billing = ctx.cfg and type(ctx.cfg.billing) == "table" and ctx.cfg.billing or {}
  local cfg = type(billing.revenue) == "table" and billing.revenue or {}
  f.basis = f.basis or cfg.basis or revenue.basis()
  f.timezone = type(billing.timezone) == "string" and billing.timezone or revenue.timezone()
  f.store = ctx.store
  local rows, err = revenue.report(f)
  if not rows then return api.unavailable(tostring(err)) end
  f.store = nil
  for _, r in ipairs(rows) do
    for _, k in ipairs(FIELDS) do r[k] = decimal.string(r[k]) end
  end
  return api.reply(200, { basis = f.basis, timezone = f.timezone, tenant = f.tenant or json.null,
    from = f.from or json.null, to = f.to or json.null, months = json.array(rows) })
end

-- install(add, ctx): the route, with the daemon API's add.
function M.install(add)
  api = require "steward.runtime.daemon.api"
  add("GET", "/v1/billing/revenue", "read", get_revenue, { scope = "tenant" })
end

return M
