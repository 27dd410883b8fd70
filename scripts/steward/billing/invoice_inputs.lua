-- steward.billing.invoice_inputs: what an invoice is built from, gathered from the store for
-- steward.billing.invoice_build.compute: the plan and subscription, the usage of each charge's
-- metric (steward.billing.usage), the recurring state a metric carried out of the periods before,
-- the tenant's coupons, and its tax rates from its country and region (config.billing).
local taxes = require "steward.billing.taxes"
local build = require "steward.billing.invoice_build"

local type, ipairs, tostring, error, pcall, require = type, ipairs, tostring, error, pcall, require

local M = {}

local function billing(name) return require("steward.billing." .. name) end

-- customer(tenant record) -> the snapshot an invoice keeps of its customer (config.billing)
function M.customer(t)
  local b = type(t) == "table" and type(t.config) == "table" and type(t.config.billing) == "table" and t.config.billing or {}
  return { name = b.legal_name or (type(t) == "table" and t.name) or nil, email = b.email, country = b.country,
           region = b.region, address = b.address, tax_id = b.tax_id }
end

-- tenant_record(st, id) -> the tenant's record, or nil (no tenants table: a script's store)
function M.tenant_record(st, id)
  local ok, rec = pcall(require("steward.tenants.record").get, st, id)
  if ok and type(rec) == "table" then return rec end
  return nil
end

-- of(st, sub, plan, period, cfg, final) -> the inputs of invoice_build.compute, the customer
function M.of(st, sub, plan, period, cfg, final)
  local usage, metrics = billing("usage"), billing("metrics")
  local periods = billing("periods")
  local t = M.tenant_record(st, sub.tenant)
  local cust = M.customer(t)
  local currency = plan.currency or cfg.currency
  local inp = {
    subscription = sub, plan = plan, period = period, currency = currency,
    metric = function(code)
      local m, err = metrics.get(st, code)
      if m == nil then error("metric " .. code .. ": " .. tostring(err), 0) end
      return m or nil
    end,
    usage = function(code, from, to)
      local list, err = usage.query(st, { subscription = sub.id, code = code, from = from, to = to })
      if not list then error("usage of " .. code .. ": " .. tostring(err), 0) end
      return list
    end,
    tax_rates = taxes.rates_for(cfg.taxes, cust.country, cust.region),
    timezone = cfg.timezone,
    skipped = function(charge)
      require("steward.log").warn("invoice: a charge paid in advance is not billed by period invoices",
        { subscription = sub.id, plan = plan.code, charge = tostring(charge.id) })
    end,
  }
  -- previous(charge, metric, filter, period): the recurring state at the period's start,
  -- replayed period by period from the subscription's start (each period's active part, the
  -- charge's bucket of that filter), as the aggregation of each period carried it
  inp.previous = function(charge, metric, filter, upto)
    local charges, aggregate = billing("charges"), billing("aggregate")
    local opts = { billing_time = sub.billing_time, timezone = cfg.timezone }
    local state
    for _, p in ipairs(periods.list(plan.interval, sub.anchor or sub.started, sub.started, upto.from, opts)) do
      local from, to = build.active(sub, p)
      if from and to > upto.from then to = upto.from end
      if from and to > from then
        local evs = inp.usage(metric.code, from, to)
        local mine = {}
        for _, b in ipairs(charges.buckets(charge, evs)) do if b.filter == filter then mine = b.events end end
        local agg, err = aggregate.run(metric, mine, { from = from, to = to, timezone = cfg.timezone },
          { previous = state, group_by = charge.group_by, timezone = cfg.timezone })
        if not agg then error("charge " .. tostring(charge.id) .. ": " .. tostring(err), 0) end
        state = agg.state
      end
    end
    return state
  end
  local okc, coupons = pcall(billing, "coupons")
  if okc and type(coupons) == "table" and coupons.for_invoice then
    inp.coupons = function(subtotal)
      local list, err = coupons.for_invoice(st, sub.tenant, subtotal, currency)
      if not list then error("coupons: " .. tostring(err), 0) end
      return list
    end
  end
  if plan.pay_in_advance then
    -- the fee of the period starting, the usage of the one that ended (Lago's in-advance invoice);
    -- a final invoice bills the usage up to the termination, its fee having been billed before
    if final then
      inp.fee, inp.charge_period = false, period
    else
      local opts = { billing_time = sub.billing_time, timezone = cfg.timezone }
      local prev = periods.bounds(plan.interval, sub.anchor or sub.started, period.from - 1, opts)
      if sub.started < period.from then inp.charge_period = prev else inp.charge_period = { from = period.from, to = period.from } end
    end
  end
  return inp, cust
end

return M
