-- billing.churn_risk: the churn-risk signals customer success reads (event billing.churn_risk
-- {tenant, reason, reasons, score, week, detail}). A downgrade asked, a subscription ended
-- (churn when it was the tenant's last, contraction when others go on), a failed payment, and
-- each Monday the tenants whose usage fell `usage_drop` % or more in the week just ended. Each
-- reason counts once per tenant per week (steward.billing.churn keeps that durable); the score
-- is the sum of the week's reasons' `weights`, capped at 100. docs/billing/mrr.md.
local churn = require "steward.billing.churn"

local type, ipairs, error, tostring = type, ipairs, error, tostring

local function data_of(ev) return type(ev.data) == "table" and ev.data or {} end

local function tenant_of(ev)
  local t = ev.tenant or data_of(ev).tenant
  return type(t) == "string" and t ~= "" and t or nil
end

local function must(v, err)
  if v == nil then error(tostring(err), 0) end
  return v
end

-- The reason an event gives, with its detail; nil when it gives none.
local function reason_of(ev)
  local d = data_of(ev)
  if ev.type == "billing.subscription.downgraded" then
    return "downgrade", { subscription = d.subscription, plan = d.plan, previous_plan = d.previous_plan,
      previous = d.previous, starts = d.starts }
  elseif ev.type == "billing.subscription.terminated" then
    -- without the history (steward.billing.subscriptions absent), an end is taken as churn
    local kind = churn.termination(tenant_of(ev), ev.time) or "churn"
    return kind, { subscription = d.subscription, plan = d.plan }
  elseif ev.type == "billing.payment.failed" then
    return "payment_failed", { invoice = d.invoice, payment = d.payment or d.payment_intent, attempt = d.attempt,
      reason = d.reason or d.code }
  end
end

return {
  capabilities = { billing = true },
  schedule = "0 6 * * 1", -- Mondays 06:00 UTC: the week just ended against the one before
  on = { "billing.subscription.downgraded", "billing.subscription.terminated", "billing.payment.failed" },
  key = function(ev) return ev.type == "policy.schedule" and "usage" or tenant_of(ev) or "-" end,
  config = {
    -- (a plain copy: churn.WEIGHTS reaches a policy as a read-only view, which GET /v1/policies
    -- and the REPL would show as {})
    weights = { type = "table", check = churn.check_weights, default = churn.default_weights(),
      description = "points of each reason (churn, contraction, downgrade, payment_failed, usage_drop); the score is their sum, capped at 100" },
    usage_drop = { type = "number", default = 30, min = 1, max = 100,
      description = "a fall of usage, in percent week over week, that is a signal" },
    min_events = { type = "integer", default = 20, min = 1,
      description = "usage events a tenant needs in the week before to be judged (smaller ones are noise)" },
  },
  handle = function(ev, ctx)
    local cfg = ctx.config
    if ev.type == "policy.schedule" then
      local drops = must(churn.usage_drops({ now = ev.time, drop = cfg.usage_drop, min_events = cfg.min_events }))
      local out = {}
      for i, d in ipairs(drops) do
        if ctx.dry_run then
          out[i] = { tenant = d.tenant, reason = "usage_drop", fall = d.fall }
        else
          local s = must(churn.signal(d.tenant, "usage_drop", { now = ev.time, weights = cfg.weights, detail = d }))
          out[i] = { tenant = d.tenant, reason = "usage_drop", score = s.score, fresh = s.fresh }
        end
      end
      return { signals = out }
    end
    local tenant = tenant_of(ev)
    if not tenant then return { skipped = "no tenant on the event" } end
    local reason, detail = reason_of(ev)
    if not reason then return { skipped = "no churn reason in " .. tostring(ev.type) } end
    if ctx.dry_run then return { would = "signal", tenant = tenant, reason = reason } end
    local s = must(churn.signal(tenant, reason, { now = ev.time, weights = cfg.weights, detail = detail }))
    return { tenant = tenant, reason = reason, reasons = s.reasons, score = s.score, fresh = s.fresh }
  end,
}
