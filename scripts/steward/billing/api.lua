-- steward.billing.api: the HTTP side of plans, subscriptions, usage, coupons and wallets
-- (docs/http-api.md, "Billing"; docs/billing/subscriptions.md, docs/billing/usage.md).
-- Catalogue and lifecycle changes are an administrator's (tokens without a tenant); a tenant's
-- token reads its own subscriptions, usage and wallets, and posts usage for its own
-- subscriptions only — another tenant's subscription is a 404, as if it did not exist.
-- Amounts travel as strings, times as RFC 3339.
local json = require "steward.json"
local metrics = require "steward.billing.metrics"
local plans = require "steward.billing.plans"
local subscriptions = require "steward.billing.subscriptions"
local usage = require "steward.billing.usage"
local coupons = require "steward.billing.coupons"
local wallets = require "steward.billing.wallets"
local V = require "steward.billing.values"

local type, pairs, ipairs, next, tostring, tonumber = type, pairs, ipairs, next, tostring, tonumber
local format = string.format

local M = {}

local api -- steward.runtime.daemon.api; set by install
local P

-- The first segment of a refusal's field, when it is the client's (a 400 naming the field);
-- any other message is the store's (503), so a driver's "SQLITE_BUSY: ..." is never taken
-- for a bad field.
local CLIENT_FIELDS = {}
for f in ([[code name description aggregation field recurring filters weighted_interval custom interval amount currency
  pay_in_advance trial_days minimum_commitment charges plan tenant external_id billing_time started transaction_id
  subscription timestamp properties events kind percentage frequency duration rate_amount paid_credits granted_credits
  key metric model version]]):gmatch("%S+") do CLIENT_FIELDS[f] = true end

local function failed(err)
  local e = tostring(err)
  if e:match("^not found") then return api.fail(404, "not_found", e) end
  if e:match("^exists") or e:match("^invalid") or e:match("^conflict") then return api.fail(409, "conflict", e) end
  local field, reason = e:match("^([%w_%.%[%]]+): (.*)$")
  if field and (CLIENT_FIELDS[field:match("^[%w_]+")] or e:match(": unknown field")) then return api.invalid(field, reason) end
  return api.unavailable(e)
end

local function body_of(ctx, req)
  local body, st, code, err, details = api.decode_json(ctx, req.body ~= "" and req.body or "null")
  if body == nil then return nil, api.fail(st or 400, code or "invalid_json", err or "a JSON object expected", details) end
  if not V.is_object(body) then
    return nil, api.fail(400, "invalid_json", "expected an object")
  end
  return body
end

local function time_param(v)
  local t = tonumber(v) or require("steward.runtime.store.util").parse_rfc3339(v)
  return t, "Unix seconds or an RFC 3339 time expected"
end

local function own(principal, tenant) return not principal.tenant or principal.tenant == tenant end

-- The JSON array of a list's rows, each through view (the list is reused).
local function viewed(list, view)
  for i, x in ipairs(list) do list[i] = view(x) end
  return json.array(list)
end

-- The handler of POST /v1/billing/<key>s: mod.create on the body, 201 with mod.view of the row.
local function creator(mod, key)
  return function(ctx, req)
    local body, s, h, b = body_of(ctx, req)
    if not body then return s, h, b end
    local x, err = mod.create(ctx.store, body)
    if not x then return failed(err) end
    return api.reply(201, { [key] = mod.view(x) })
  end
end

-- The handler of GET /v1/billing/<key>: mod.list filtered by the query (fields: P's checks,
-- set at install), a tenant's token held to its own rows (asking for another tenant's is an
-- empty list, not a refusal).
local function tenant_lister(mod, key, fields)
  return function(ctx, req, principal)
    local f, s, h, b = api.query(req, fields())
    if not f then return s, h, b end
    if principal.tenant then
      if f.tenant and f.tenant ~= principal.tenant then return api.reply(200, { [key] = json.array({}) }) end
      f.tenant = principal.tenant
    end
    local list, err = mod.list(ctx.store, f)
    if not list then return failed(err) end
    return api.reply(200, { [key] = viewed(list, mod.view) })
  end
end

-- The row mod.get finds by id when the principal may see it; else nil and the reply: 404 for
-- a missing row and for another tenant's alike (a tenant cannot learn it exists).
local function owned(ctx, principal, mod, id, what)
  local x, err = mod.get(ctx.store, id)
  if x == nil then return nil, failed(err) end
  if not x or not own(principal, x.tenant) then return nil, api.fail(404, "not_found", "no " .. what .. " " .. id) end
  return x
end

-- ---- metrics ----

local function post_metric(ctx, req)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  local m, created = metrics.create(ctx.store, body)
  if not m then return failed(created) end
  return api.reply(created and 201 or 200, { metric = V.jsonable(m, { created = true, updated = true }) })
end

local function get_metrics(ctx)
  local list, err = metrics.list(ctx.store)
  if not list then return failed(err) end
  return api.reply(200, { metrics = viewed(list, function(m) return V.jsonable(m, { created = true, updated = true }) end) })
end

local function get_metric(ctx, req)
  local m, err = metrics.get(ctx.store, req.params.code)
  if m == nil then return failed(err) end
  if not m then return api.fail(404, "not_found", "no metric " .. req.params.code) end
  return api.reply(200, { metric = V.jsonable(m, { created = true, updated = true }) })
end

-- ---- plans ----

local post_plan = creator(plans, "plan")

local function put_plan(ctx, req)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  local p, err = plans.update(ctx.store, req.params.code, body)
  if not p then return failed(err) end
  return api.reply(200, { plan = plans.view(p) })
end

local function get_plans(ctx)
  local list, err = plans.list(ctx.store)
  if not list then return failed(err) end
  return api.reply(200, { plans = viewed(list, plans.view) })
end

local function get_plan(ctx, req)
  local f, s, h, b = api.query(req, { version = function(v)
    local n = tonumber(v)
    return n and n >= 1 and n == math.floor(n) and n, "a version number expected"
  end })
  if not f then return s, h, b end
  local p, err = plans.get(ctx.store, req.params.code, f.version)
  if p == nil then return failed(err) end
  if not p then return api.fail(404, "not_found", "no plan " .. req.params.code .. (f.version and (" version " .. f.version) or "")) end
  return api.reply(200, { plan = plans.view(p) })
end

-- ---- subscriptions ----

local post_subscription = creator(subscriptions, "subscription")

local function states(v) return subscriptions.STATES[v] and v, "pending, active, terminated or canceled expected" end
local get_subscriptions = tenant_lister(subscriptions, "subscriptions", function()
  return { tenant = P.text, state = states, plan = P.text, external_id = P.text, limit = P.limit }
end)

local function get_subscription(ctx, req, principal)
  local sub, s, h, b = owned(ctx, principal, subscriptions, req.params.id, "subscription")
  if not sub then return s, h, b end
  return api.reply(200, { subscription = subscriptions.view(sub) })
end

local ACTIONS = { upgrade = true, downgrade = true, terminate = true, cancel = true }

local function post_subscription_action(ctx, req)
  local action = req.params.action
  if not ACTIONS[action] then return api.fail(404, "not_found", "no action " .. action .. " (upgrade, downgrade, terminate, cancel)") end
  local body = {}
  if req.body ~= "" then
    local s, h, b
    body, s, h, b = body_of(ctx, req)
    if not body then return s, h, b end
  end
  local want = (action == "upgrade" or action == "downgrade") and { plan = true } or {}
  for k in pairs(body) do
    if not want[k] then return api.invalid(tostring(k), "unknown field (" .. (want.plan and "plan" or "none expected") .. ")") end
  end
  local sub, err
  if want.plan then
    if type(body.plan) ~= "string" then return api.invalid("plan", "a plan code expected") end
    sub, err = subscriptions[action](ctx.store, req.params.id, body.plan)
  else
    sub, err = subscriptions[action](ctx.store, req.params.id)
  end
  if not sub then return failed(err) end
  return api.reply(200, { subscription = subscriptions.view(sub) })
end

-- ---- usage ----

local function post_usage(ctx, req, principal)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  local list, prefix = { body }, ""
  if body.events ~= nil then
    for k in pairs(body) do
      if k ~= "events" then return api.invalid(tostring(k), "unknown field (an object {events = [...]} or one usage event)") end
    end
    if not V.is_list(body.events) then
      return api.invalid("events", "a list of usage events expected")
    end
    if #body.events == 0 then return api.invalid("events", "at least one usage event expected") end
    list, prefix = body.events, "events"
  end
  if #list > usage.MAX_BATCH then
    return api.fail(413, "too_many_events", format("at most %d usage events per request, got %d", usage.MAX_BATCH, #list))
  end
  local res, err = usage.ingest(ctx.store, list, { tenant = principal.tenant })
  if not res then
    if type(err) ~= "table" then return failed(err) end
    local field = prefix ~= "" and format("events[%d].%s", err.index or 0, err.field) or err.field
    if err.status == 404 then return api.fail(404, "not_found", field .. ": " .. err.reason, { index = err.index }) end
    return api.fail(400, "invalid_request", field .. ": " .. err.reason,
      { errors = { { index = err.index, field = field, reason = err.reason } } })
  end
  local status = res.accepted > 0 and 202 or 200
  return api.reply(status, { accepted = res.accepted, duplicates = res.duplicates, late = res.late,
    events = json.array(res.events) })
end

local function get_usage(ctx, req, principal)
  local f, s, h, b = api.query(req, { subscription = P.text, code = P.text, from = time_param, to = time_param })
  if not f then return s, h, b end
  if not f.subscription then return api.invalid("subscription", "required", "invalid_query") end
  local sub
  sub, s, h, b = owned(ctx, principal, subscriptions, f.subscription, "subscription")
  if not sub then return s, h, b end
  local list, err = usage.query(ctx.store, f)
  if not list then return failed(err) end
  for i, u in ipairs(list) do u.timestamp = V.rfc3339(u.timestamp); list[i] = u end
  return api.reply(200, { subscription = sub.id, usage = json.array(list) })
end

-- ---- coupons ----

local post_coupon = creator(coupons, "coupon")

local function get_coupons(ctx, req, principal)
  local f, s, h, b = api.query(req, { tenant = P.text })
  if not f then return s, h, b end
  if principal.tenant then f.tenant = principal.tenant end
  local out = {}
  if not principal.tenant then
    local list, err = coupons.list(ctx.store)
    if not list then return failed(err) end
    out.coupons = viewed(list, coupons.view)
  end
  if f.tenant then
    local list, err = coupons.applied(ctx.store, { tenant = f.tenant })
    if not list then return failed(err) end
    out.applied = viewed(list, coupons.view)
  end
  return api.reply(200, out)
end

local function post_coupon_apply(ctx, req)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  for k in pairs(body) do if k ~= "tenant" then return api.invalid(tostring(k), "unknown field (tenant)") end end
  if type(body.tenant) ~= "string" then return api.invalid("tenant", "a tenant id expected") end
  local a, err = coupons.apply(ctx.store, body.tenant, req.params.code)
  if not a then
    if tostring(err):match("^coupon: no coupon") then return api.fail(404, "not_found", err) end
    return failed(err)
  end
  return api.reply(201, { applied_coupon = coupons.view(a) })
end

-- ---- wallets ----

local post_wallet = creator(wallets, "wallet")

local get_wallets = tenant_lister(wallets, "wallets", function() return { tenant = P.text, currency = P.text } end)

local function get_wallet(ctx, req, principal)
  local w, s, h, b = owned(ctx, principal, wallets, req.params.id, "wallet")
  if not w then return s, h, b end
  local txs, err = wallets.transactions(ctx.store, w.id)
  if not txs then return failed(err) end
  local out = wallets.view(w)
  out.transactions = viewed(txs, wallets.view)
  return api.reply(200, { wallet = out })
end

local function post_top_up(ctx, req)
  local body, s, h, b = body_of(ctx, req)
  if not body then return s, h, b end
  local w, err = wallets.top_up(ctx.store, req.params.id, body)
  if not w then return failed(err) end
  return api.reply(200, { wallet = wallets.view(w) })
end

-- install(add, ctx): the routes, with the daemon API's add (permission, scope, audit action).
function M.install(add, ctx)
  api = require "steward.runtime.daemon.api"
  P = api.params
  if ctx.store then
    local ok, err = subscriptions.ready(ctx.store)
    if not ok then error(err, 0) end
  end
  local T = "tenant"
  add("POST", "/v1/billing/metrics", "admin", post_metric, "billing.metric.create")
  add("GET", "/v1/billing/metrics", "read", get_metrics, { scope = T })
  add("GET", "/v1/billing/metrics/{code}", "read", get_metric, { scope = T })
  add("POST", "/v1/billing/plans", "admin", post_plan, "billing.plan.create")
  add("GET", "/v1/billing/plans", "read", get_plans, { scope = T })
  add("GET", "/v1/billing/plans/{code}", "read", get_plan, { scope = T })
  add("PUT", "/v1/billing/plans/{code}", "admin", put_plan, "billing.plan.update")
  add("POST", "/v1/billing/subscriptions", "admin", post_subscription, "billing.subscription.create")
  add("GET", "/v1/billing/subscriptions", "read", get_subscriptions, { scope = T })
  add("GET", "/v1/billing/subscriptions/{id}", "read", get_subscription, { scope = T })
  add("POST", "/v1/billing/subscriptions/{id}/{action}", "admin", post_subscription_action, "billing.subscription.change")
  add("POST", "/v1/billing/usage", "ingest", post_usage, { scope = T })
  add("GET", "/v1/billing/usage", "read", get_usage, { scope = T })
  add("POST", "/v1/billing/coupons", "admin", post_coupon, "billing.coupon.create")
  add("GET", "/v1/billing/coupons", "read", get_coupons, { scope = T })
  add("POST", "/v1/billing/coupons/{code}/apply", "admin", post_coupon_apply, "billing.coupon.apply")
  add("POST", "/v1/billing/wallets", "admin", post_wallet, "billing.wallet.create")
  add("GET", "/v1/billing/wallets", "read", get_wallets, { scope = T })
  add("GET", "/v1/billing/wallets/{id}", "read", get_wallet, { scope = T })
  add("POST", "/v1/billing/wallets/{id}/top_up", "admin", post_top_up, "billing.wallet.top_up")
end

return M
