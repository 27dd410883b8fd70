-- steward.billing.invoice_build: an invoice's lines and totals from a subscription, its plan, a
-- period and the usage in it. Pure: everything it reads comes in through `inputs` (the store
-- side is steward.billing.invoices), so specs drive it with fixtures. The formulas are h2's
-- (steward.billing.charges), the aggregation h3's (steward.billing.aggregate), proration and
-- periods h3's (steward.billing.periods). Rounding happens where docs/billing/invoices.md says:
-- each line's amount, each discount, each tax line — at the currency's scale, half-up.
local decimal = require "steward.decimal"

local type, pairs, ipairs, tostring, error, require, sort, format =
  type, pairs, ipairs, tostring, error, require, table.sort, string.format

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
  if partial then exact = lib("periods").prorate(whole, from, to, period) end
  local amount = money(exact, currency)
  return { id = "subscription", kind = "subscription", description = plan.name or plan.code,
           units = decimal.new(1), unit_amount = amount, amount = amount, from = from, to = to,
           details = { plan = plan.code, plan_version = plan.version, interval = plan.interval,
                       prorated = partial, full_amount = whole } }
end

-- Does an event match a filter's values ({prop = {v...}}): every property listed has one of
-- its values.
local function matches(ev, values)
  local props = ev.properties or {}
  for prop, list in pairs(values or {}) do
    local v, hit = props[prop], false
    for _, want in ipairs(list) do if tostring(v) == tostring(want) then hit = true; break end end
    if not hit then return false end
  end
  return true
end

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

-- One charge line from an aggregation.
local function charge_line(id, charge, metric, agg, ctx, from, to, extra)
  local res = lib("charges").amount(charge, agg, ctx)
  local details = copy(res.details)
  for k, v in pairs(extra or {}) do details[k] = v end
  return { id = id, kind = "charge", charge = charge.id, metric = metric.code,
           description = charge.invoice_display_name or metric.name or metric.code,
           units = decimal.new(res.units or agg.units), unit_amount = decimal.new(res.unit_amount or 0),
           amount = money(res.amount, ctx.currency), from = from, to = to, details = details,
           usage = { events = res.events or agg.count or 0 } }
end

-- charge_lines(charge, inputs, period, ctx) -> lines: one for the charge (and one per group of
-- its group_by), one per filter of its filters (each filter's own properties); the events no
-- filter matches go to the charge's own properties, as in Lago.
function M.charge_lines(charge, inputs, period, ctx)
  local aggregate = lib("aggregate")
  local metric = inputs.metric(charge.metric)
  if not metric then error(format("charge %s: metric %s: not found", tostring(charge.id), tostring(charge.metric)), 0) end
  local events = inputs.usage(charge.metric, period.from, period.to) or {}
  local opts = { group_by = charge.group_by, prorated = charge.prorated or nil,
                 previous = inputs.previous and inputs.previous(charge) or nil }
  local lines = {}
  local rest = events
  if charge.filters and #charge.filters > 0 then
    rest = {}
    for _, ev in ipairs(events) do
      local any = false
      for _, f in ipairs(charge.filters) do if matches(ev, f.values) then any = true; break end end
      if not any then rest[#rest + 1] = ev end
    end
    for i, f in ipairs(charge.filters) do
      local mine = {}
      for _, ev in ipairs(events) do if matches(ev, f.values) then mine[#mine + 1] = ev end end
      local fc = copy(charge)
      fc.properties, fc.filters = f.properties or charge.properties, nil
      local agg = aggregate.run(metric, mine, period, opts)
      lines[#lines + 1] = charge_line(format("charge:%s:filter:%d", charge.id, i), fc, metric, agg, ctx,
        period.from, period.to, { filter = f.values })
    end
  end
  local agg = aggregate.run(metric, rest, period, opts)
  if charge.group_by and agg.groups then
    for _, key in ipairs(sorted_keys(agg.groups)) do
      lines[#lines + 1] = charge_line(format("charge:%s:group:%s", charge.id, tostring(key)), charge, metric,
        agg.groups[key], ctx, period.from, period.to, { group = key })
    end
  else
    lines[#lines + 1] = charge_line("charge:" .. tostring(charge.id), charge, metric, agg, ctx, period.from, period.to)
  end
  return lines
end

-- compute(inputs) -> the invoice's money fields: {lines, subtotal, discounts, discount_total,
-- taxes, tax_total, credits, credit_total, total}. inputs = {subscription, plan, period
-- (fee period), charge_period (usage period; default period), currency, metric(code),
-- usage(code, from, to), previous(charge) (recurring state, optional), coupons(subtotal) ->
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
    local ctx = { currency = currency, period = cp }
    local len = cp.to - cp.from
    if cfrom ~= cp.from or cto ~= cp.to then
      ctx.prorate = decimal.new(math.floor(cto - cfrom)) / decimal.new(math.floor(len))
    end
    for _, charge in ipairs(plan.charges) do
      if not charge.pay_in_advance then
        for _, l in ipairs(M.charge_lines(charge, inputs, { from = cfrom, to = cto }, ctx)) do lines[#lines + 1] = l end
      end
    end
  end
  local subtotal = decimal.zero
  for _, l in ipairs(lines) do subtotal = subtotal + l.amount end
  if plan.minimum_commitment ~= nil and cfrom then
    local fraction = (decimal.new(math.floor(cto - cfrom)) / decimal.new(math.floor(cp.to - cp.from)))
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
      discounts[#discounts + 1] = { coupon = d.coupon or d.applied_coupon_id, amount = amount }
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
  return { lines = lines, subtotal = subtotal, discounts = discounts, discount_total = discount_total,
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
