-- steward.billing.invoice_build: an invoice's lines and totals from a subscription, its plan, a
-- period and the usage in it. Pure: everything it reads comes in through `inputs` (the store
-- side is steward.billing.invoices), so specs drive it with fixtures. The formulas are h2's
-- (steward.billing.charges), the aggregation h3's (steward.billing.aggregate), proration and
-- periods h3's (steward.billing.periods). Rounding happens where docs/billing/invoices.md says:
-- each line's amount, each discount, each tax line — at the currency's scale, half-up.
local decimal = require "steward.decimal"

local type, pairs, ipairs, tostring, error, require, format =
  type, pairs, ipairs, tostring, error, require, string.format

local M = {}

local function lib(name) return require("steward.billing." .. name) end

local function money(d, currency) return decimal.new(d):money(currency, "half_up") end

-- active(sub, period) -> from, to: the part of the period the subscription is billed for (after
-- its start and its trial, before its termination), or nil when it has none.
function M.active(sub, period)
  local from, to = period.from, period.to
  if type(sub.started) == "number" and sub.started > from then from = sub.started end
  if type(sub.trial_ends) == "number" and sub.trial_ends > from then from = sub.trial_ends end
  local stop = sub.terminated or sub.ending
  if type(stop) == "number" and stop < to then to = stop end
  if to <= from then return nil end
  return from, to
end

-- fee_line(sub, plan, period, currency) -> the subscription fee's line, prorated by days for a
-- partial period (periods.prorate), or nil when the subscription has no billable part in it.
function M.fee_line(sub, plan, period, currency)
  local from, to = M.active(sub, period)
  if not from then return nil end
  local whole = decimal.new(plan.amount)
  local exact = whole
  local partial = from ~= period.from or to ~= period.to
  if partial then exact = lib("periods").prorate(whole, from, to, period, period.timezone) end
  local amount = money(exact, currency)
  return { id = "subscription", kind = "subscription", description = plan.name or plan.code,
           units = decimal.new(1), unit_amount = amount, amount = amount, from = from, to = to,
           details = { plan = plan.code, plan_version = plan.version, interval = plan.interval,
                       prorated = partial, full_amount = whole } }
end

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

local function line_of(id, charge, metric, res, currency, from, to, extra)
  local details = copy(res.details)
  for k, v in pairs(extra or {}) do details[k] = v end
  return { id = id, kind = "charge", charge = charge.id, metric = metric.code,
           description = (extra and extra.name) or charge.invoice_display_name or metric.name or metric.code,
           units = decimal.new(res.units), unit_amount = decimal.new(res.unit_amount or 0),
           amount = money(res.amount, currency), from = from, to = to, details = details,
           usage = { events = res.events or 0 } }
end

-- charge_lines(charge, inputs, period, ctx) -> lines: the events split by the charge's filters
-- (steward.billing.charges.buckets: one bucket per filter, then the events no filter matches,
-- priced at the charge's own properties, as in Lago), each bucket aggregated
-- (steward.billing.aggregate.run) and priced (charges.amount); a charge with group_by gives a
-- line per group. A charge's min_amount adds its true-up line.
function M.charge_lines(charge, inputs, period, ctx)
  local aggregate, charges = lib("aggregate"), lib("charges")
  local metric = inputs.metric(charge.metric)
  if not metric then error(format("charge %s: metric %s: not found", tostring(charge.id), tostring(charge.metric)), 0) end
  local events = inputs.usage(charge.metric, period.from, period.to) or {}
  local lines, used = {}, decimal.zero
  local buckets = charges.buckets(charge, events)
  local filtered = #buckets > 1
  for _, b in ipairs(buckets) do
    -- a recurring metric starts from the state its bucket ended the previous period with
    local previous = metric.recurring and inputs.previous and inputs.previous(charge, metric, b.filter, period) or nil
    local opts = { group_by = charge.group_by, prorated = (charge.prorated and metric.aggregation == "unique_count") or nil,
                   previous = previous, timezone = ctx.timezone }
    local agg, err = aggregate.run(metric, b.events, period, opts)
    if not agg then error(format("charge %s: %s", tostring(charge.id), tostring(err)), 0) end
    local bctx = copy(ctx)
    bctx.filter = b.filter
    local res = charges.amount(charge, agg, bctx)
    local base = "charge:" .. tostring(charge.id) .. (b.filter and (":filter:" .. b.filter) or (filtered and ":default" or ""))
    local extra = { filter = b.filter and charge.filters[b.filter].values or nil, name = b.name }
    if charge.group_by and res.groups then
      for _, g in ipairs(res.groups) do
        local ge = copy(extra)
        ge.group = g.key
        lines[#lines + 1] = line_of(base .. ":group:" .. tostring(g.key), charge, metric, g, ctx.currency,
          period.from, period.to, ge)
      end
    else
      lines[#lines + 1] = line_of(base, charge, metric, res, ctx.currency, period.from, period.to, extra)
    end
    used = used + res.amount
  end
  local tu = charges.true_up(charge, used, { currency = ctx.currency, period_fraction = ctx.prorate })
  if tu then
    lines[#lines + 1] = line_of("charge:" .. tostring(charge.id) .. ":min", charge, metric,
      { amount = tu.amount, units = tu.units, unit_amount = tu.amount, events = 0, details = { min_amount = true } },
      ctx.currency, period.from, period.to, { name = (charge.invoice_display_name or metric.name or metric.code) .. " (minimum)" })
  end
  return lines
end

-- compute(inputs) -> the invoice's money fields: {lines, subtotal, discounts, discount_total,
-- taxes, tax_total, credits, credit_total, total}. inputs = {subscription, plan, period
-- (fee period), charge_period (usage period; default period), currency, metric(code),
-- usage(code, from, to), previous(charge, metric, filter, period) (a recurring metric's state at
-- the period's start, for the charge's bucket of that filter; optional), coupons(subtotal) ->
-- {{coupon, amount}} (optional), tax_rates = {...} (steward.billing.taxes), credits =
-- {{kind, ref, amount}} (optional), fee = false (no fee line: a final invoice of an in-advance
-- plan whose fee was billed)}.
function M.compute(inputs)
  local sub, plan, currency = inputs.subscription, inputs.plan, inputs.currency
  if type(currency) ~= "string" or not decimal.scale(currency) then
    error("invoice_build.compute: currency: an ISO 4217 code expected, got " .. tostring(currency), 2)
  end
  local lines = {}
  if inputs.fee ~= false and plan.amount ~= nil then
    local fee = M.fee_line(sub, plan, inputs.period, currency)
    if fee then lines[1] = fee end
  end
  local cp = inputs.charge_period or inputs.period
  local cfrom, cto = M.active(sub, cp)
  if cfrom and plan.charges and #plan.charges > 0 then
    local ctx = { currency = currency, period = cp, timezone = inputs.timezone }
    if cfrom ~= cp.from or cto ~= cp.to then ctx.prorate = lib("periods").fraction(cfrom, cto, cp, inputs.timezone) end
    for _, charge in ipairs(plan.charges) do
      if charge.pay_in_advance then
        -- billed per event when it happens (Lago), not by the period's invoice: say so, never drop it quietly
        if inputs.skipped then inputs.skipped(charge) end
      else
        for _, l in ipairs(M.charge_lines(charge, inputs, { from = cfrom, to = cto, timezone = inputs.timezone }, ctx)) do
          lines[#lines + 1] = l
        end
      end
    end
  end
  local subtotal = decimal.zero
  for _, l in ipairs(lines) do subtotal = subtotal + l.amount end
  if plan.minimum_commitment ~= nil and cfrom then
    local fraction = lib("periods").fraction(cfrom, cto, cp, inputs.timezone)
    local true_up = lib("charges").commitment(plan, subtotal, fraction)
    if true_up and decimal.new(true_up) > decimal.zero then
      local amount = money(true_up, currency)
      lines[#lines + 1] = { id = "commitment", kind = "commitment", description = "Minimum commitment true-up",
        units = decimal.new(1), unit_amount = amount, amount = amount, from = cfrom, to = cto,
        details = { minimum_commitment = decimal.new(plan.minimum_commitment), fees = subtotal } }
      subtotal = subtotal + amount
    end
  end
  return M.totals(lines, subtotal, inputs)
end

-- totals(lines, subtotal, inputs) -> the money fields: coupons on the subtotal (never more than
-- it), taxes on what is left, then credits (never more than the total with taxes).
function M.totals(lines, subtotal, inputs)
  local currency = inputs.currency
  local discounts, discount_total = {}, decimal.zero
  for _, d in ipairs(inputs.coupons and inputs.coupons(subtotal) or {}) do
    local left = subtotal - discount_total
    local amount = decimal.min(money(d.amount, currency), left)
    if amount > decimal.zero then
      discounts[#discounts + 1] = { coupon = d.coupon or d.applied_coupon_id, applied_coupon = d.applied_coupon_id,
                                    amount = amount }
      discount_total = discount_total + amount
    end
  end
  local taxes, tax_total = lib("taxes").lines(subtotal - discount_total, inputs.tax_rates or {}, currency)
  local due = subtotal - discount_total + tax_total
  local credits, credit_total = {}, decimal.zero
  for _, c in ipairs(inputs.credits or {}) do
    local amount = decimal.min(money(c.amount, currency), due - credit_total)
    if amount > decimal.zero then
      credits[#credits + 1] = { kind = c.kind, ref = c.ref, amount = amount }
      credit_total = credit_total + amount
    end
  end
  return { currency = currency, lines = lines, subtotal = subtotal, discounts = discounts, discount_total = discount_total,
           taxes = taxes, tax_total = tax_total, credits = credits, credit_total = credit_total,
           total = due - credit_total }
end

-- check(inv) -> true | nil, reason: the invariants every invoice keeps (specs call it).
function M.check(inv)
  local scale = decimal.scale(inv.currency)
  local function at_scale(d, what)
    if not decimal.is(d) then return nil, what .. ": not a decimal" end
    if d:round(scale, "down") ~= d then return nil, what .. ": " .. tostring(d) .. " has more than " .. scale .. " decimals" end
    return true
  end
  local sum = decimal.zero
  for i, l in ipairs(inv.lines) do
    local ok, err = at_scale(l.amount, "lines[" .. i .. "].amount")
    if not ok then return nil, err end
    sum = sum + l.amount
  end
  if sum ~= inv.subtotal then return nil, "subtotal " .. tostring(inv.subtotal) .. " is not the lines' sum " .. tostring(sum) end
  for _, k in ipairs({ "subtotal", "discount_total", "tax_total", "credit_total", "total" }) do
    local ok, err = at_scale(inv[k], k)
    if not ok then return nil, err end
  end
  local parts = { discounts = "discount_total", taxes = "tax_total", credits = "credit_total" }
  for list, total in pairs(parts) do
    local s = decimal.zero
    for _, x in ipairs(inv[list]) do s = s + x.amount end
    if s ~= inv[total] then return nil, total .. " is not the sum of " .. list end
  end
  if inv.total ~= inv.subtotal - inv.discount_total + inv.tax_total - inv.credit_total then
    return nil, "total is not subtotal - discount_total + tax_total - credit_total"
  end
  return true
end

return M
