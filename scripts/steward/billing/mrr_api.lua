-- steward.billing.mrr_api: GET /v1/billing/mrr and GET /v1/billing/cohorts (docs/billing/mrr.md,
-- docs/http-api.md). Both are company-wide figures over every tenant's subscriptions, so they
-- are global routes: a tenant's token is refused (403) rather than shown a line of its own,
-- which would tell it nothing its invoices do not.
local json = require "steward.json"
local decimal = require "steward.decimal"
local mrr = require "steward.billing.mrr"
local cohorts = require "steward.billing.cohorts"
local task = require "steward.task"

local type, ipairs, pcall, tostring, tonumber = type, ipairs, pcall, tostring, tonumber

local M = {}

local api -- steward.runtime.daemon.api; set by install

local function month(v)
  local ok, t = pcall(mrr.month_arg, v, "month")
  if ok then return t end
  local parsed = require("steward.runtime.store.util").parse_rfc3339(v)
  if parsed then return parsed end
  return nil, "a month (2026-03), an RFC 3339 time or Unix seconds expected"
end

local function month_or_unix(v)
  local n = tonumber(v)
  if n then return n end
  return month(v)
end

local function currency(v)
  if decimal.scale(v) then return v end
  return nil, "unknown currency (an ISO 4217 code expected)"
end

local function flag(v)
  if v == "true" or v == "1" then return "true" end
  if v == "false" or v == "0" then return "false" end
  return nil, "true or false expected"
end

local function text(v)
  if v:match("^[%w._-]+$") then return v end
  return nil, "a tenant id expected"
end

local function default_currency(ctx)
  local b = ctx.cfg and ctx.cfg.billing
  return type(b) == "table" and type(b.currency) == "string" and b.currency or "USD"
end

-- run(compute, f, ctx) -> the list | nil, status, headers, body
local function run(report, f, ctx)
  f.default_currency = default_currency(ctx)
  f.yield = task.yield -- a long history lets other requests and events through as it goes
  local ok, list, err = pcall(report, f)
  if not ok then
    local e = tostring(list)
    if e:match("to: before from") or e:match("months asked") then return nil, api.invalid("from", e) end
    return nil, api.fail(500, "invalid_history", e)
  end
  if not list then return nil, api.unavailable(err) end
  return list
end

local function params()
  return { from = month_or_unix, to = month_or_unix, currency = currency, tenant = text, detail = flag, exact = flag }
end

local function options(f)
  local exact = f.exact == "true"
  f.detail = f.detail == "true" or nil
  f.exact = nil
  return { exact = exact }
end

-- GET /v1/billing/mrr?from=&to=&currency=&tenant=&detail=&exact=
local function get_mrr(ctx, req)
  local f, s, h, b = api.query(req, params())
  if not f then return s, h, b end
  local shown = options(f)
  local list
  list, s, h, b = run(mrr.report, f, ctx)
  if not list then return s, h, b end
  for i, r in ipairs(list) do
    list[i] = mrr.display(r, shown)
    if list[i].movements then list[i].movements = json.array(list[i].movements) end
  end
  return api.reply(200, { mrr = json.array(list) })
end

-- GET /v1/billing/cohorts?from=&to=&currency=&exact=
local function get_cohorts(ctx, req)
  local p = params()
  p.tenant, p.detail = nil, nil
  local f, s, h, b = api.query(req, p)
  if not f then return s, h, b end
  local shown = options(f)
  local list
  list, s, h, b = run(cohorts.report, f, ctx)
  if not list then return s, h, b end
  for i, c in ipairs(list) do
    list[i] = cohorts.display(c, shown)
    list[i].months = json.array(list[i].months)
  end
  return api.reply(200, { cohorts = json.array(list) })
end

-- install(add, ctx): the routes, global (read permission; a tenant's token gets 403).
function M.install(add)
  api = require "steward.runtime.daemon.api"
  add("GET", "/v1/billing/mrr", "read", get_mrr)
  add("GET", "/v1/billing/cohorts", "read", get_cohorts)
end

return M
