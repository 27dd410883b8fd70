-- steward.billing.charges: charge models as formulas over exact decimals, with Lago's semantics
-- (standard, graduated, package, percentage, volume, graduated_percentage; charge filters,
-- grouped charges, prorated charges, pay-in-advance fees, the per-charge minimum and the plan's
-- minimum commitment). Pure: no store, no clock, no I/O. A model computes the exact amount; the
-- fee is rounded once, to the currency's minor unit half-up, where Lago rounds a fee
-- (docs/billing/charges.md says where each rounding happens).
local decimal = require "steward.decimal"
local common = require "steward.billing.charges.common"

local type, pairs, ipairs, next, pcall, tostring, error, format = type, pairs, ipairs, next, pcall, tostring, error, string.format
local sort = table.sort

local M = {}

M.MODELS = {
  standard = require "steward.billing.charges.standard",
  graduated = require "steward.billing.charges.graduated",
  graduated_percentage = require "steward.billing.charges.graduated_percentage",
  package = require "steward.billing.charges.package",
  percentage = require "steward.billing.charges.percentage",
  volume = require "steward.billing.charges.volume",
}

-- Fees are rounded as Lago rounds them: to the currency's scale, half away from zero.
M.ROUNDING = "half_up"

local fail = common.fail

local function model_names()
  local names = {}
  for k in pairs(M.MODELS) do names[#names + 1] = k end
  sort(names)
  return table.concat(names, ", ")
end

local function check_filters(filters, model)
  if filters == nil then return {} end
  if type(filters) ~= "table" then fail("filters", "a list of filters expected, got " .. type(filters)) end
  local out = {}
  for i, f in ipairs(filters) do
    local p = format("filters[%d]", i)
    if type(f) ~= "table" then fail(p, "a filter table expected, got " .. type(f)) end
    if type(f.values) ~= "table" or next(f.values) == nil then
      fail(p .. ".values", "a table of event property → list of values expected")
    end
    local values, keys = {}, 0
    for k, list in pairs(f.values) do
      local vp = p .. ".values." .. tostring(k)
      if type(k) ~= "string" or k == "" then fail(p .. ".values", "property names are non-empty strings") end
      if type(list) ~= "table" or list[1] == nil then fail(vp, "a non-empty list of values expected") end
      local set = {}
      for j, v in ipairs(list) do
        if type(v) ~= "string" then fail(format("%s[%d]", vp, j), "a string expected, got " .. type(v)) end
        set[v] = true
      end
      values[k], keys = set, keys + 1
    end
    if type(f.properties) ~= "table" then fail(p .. ".properties", "the filter's own model properties expected") end
    if f.invoice_display_name ~= nil and type(f.invoice_display_name) ~= "string" then
      fail(p .. ".invoice_display_name", "a string expected")
    end
    out[i] = { values = values, keys = keys, invoice_display_name = f.invoice_display_name,
               properties = model.check(f.properties, p .. ".properties") }
  end
  for k in pairs(filters) do
    if type(k) ~= "number" or not out[k] then fail("filters", "a list expected (key " .. tostring(k) .. ")") end
  end
  return out
end

local function check_group_by(g)
  if g == nil then return nil end
  if type(g) ~= "table" then fail("group_by", "a list of event property names expected") end
  for i, k in ipairs(g) do
    if type(k) ~= "string" or k == "" then fail(format("group_by[%d]", i), "a non-empty property name expected") end
  end
  return g[1] and g or nil
end

local function check_bool(v, name)
  if v ~= nil and type(v) ~= "boolean" then fail(name, "true or false expected, got " .. type(v)) end
  return v == true
end

-- normalize(charge) -> the charge with every amount read as a decimal; raises "field: reason".
function M.normalize(charge)
  if type(charge) ~= "table" then fail("charge", "a charge table expected, got " .. type(charge)) end
  if type(charge.metric) ~= "string" or charge.metric == "" then fail("metric", "the billable metric's code expected") end
  local model = M.MODELS[charge.model]
  if not model then
    fail("model", format("unknown charge model %s (one of %s)", tostring(charge.model), model_names()))
  end
  if type(charge.properties) ~= "table" then fail("properties", "a table of the model's properties expected") end
  local n = {
    id = charge.id, metric = charge.metric, model = charge.model, impl = model,
    properties = model.check(charge.properties, "properties"),
    filters = check_filters(charge.filters, model),
    group_by = check_group_by(charge.group_by),
    pay_in_advance = check_bool(charge.pay_in_advance, "pay_in_advance"),
    prorated = check_bool(charge.prorated, "prorated"),
    min_amount = common.optional(charge.min_amount, "min_amount"),
    invoice_display_name = charge.invoice_display_name,
  }
  if charge.invoice_display_name ~= nil and type(charge.invoice_display_name) ~= "string" then
    fail("invoice_display_name", "a string expected")
  end
  -- Lago's combinations: a volume price depends on the period's total, so no fee can be known
  -- when one event arrives; proration applies to standard, and in arrears to volume and graduated.
  if n.pay_in_advance and n.model == "volume" then
    fail("pay_in_advance", "a volume charge cannot be paid in advance (its price depends on the period's total)")
  end
  if n.prorated then
    local ok = n.model == "standard" or (not n.pay_in_advance and (n.model == "volume" or n.model == "graduated"))
    if not ok then
      fail("prorated", format("a %s charge%s cannot be prorated (standard can; volume and graduated in arrears)",
        n.model, n.pay_in_advance and " paid in advance" or ""))
    end
  end
  if n.min_amount and n.pay_in_advance and not n.min_amount:is_zero() then
    fail("min_amount", "a charge paid in advance has no minimum amount (its fees are billed event by event)")
  end
  return n
end

-- check(charge) -> true, or nil and "properties.graduated_ranges[2].from_value: reason".
function M.check(charge)
  local ok, err = pcall(M.normalize, charge)
  if ok then return true end
  return nil, tostring(err)
end

-- Lago's rules between a charge and its billable metric (a metric of steward.billing.aggregate):
-- which aggregations can be paid in advance (a fee per event needs the event's own value), which
-- can be prorated (a value carried over the period: recurring, and weighted_sum prorates itself),
-- and that a percentage is never taken of a "latest" value.
local IN_ADVANCE = { count = true, sum = true, unique_count = true, custom = true }

-- check_metric(charge, metric) -> true, or nil and "field: reason".
function M.check_metric(charge, metric)
  local ok, err = M.check(charge)
  if not ok then return nil, err end
  if type(metric) ~= "table" then return nil, "metric: a billable metric table expected, got " .. type(metric) end
  if metric.code ~= charge.metric then
    return nil, format("metric: the charge prices metric %s, not %s", tostring(charge.metric), tostring(metric.code))
  end
  local agg = tostring(metric.aggregation)
  if charge.pay_in_advance and not IN_ADVANCE[agg] then
    return nil, format("pay_in_advance: a %s metric cannot be paid in advance (count, sum, unique_count and custom can)", agg)
  end
  if charge.prorated and (not metric.recurring or agg == "weighted_sum") then
    return nil, format("prorated: metric %s is %s; only a recurring metric other than weighted_sum is prorated",
      tostring(metric.code), metric.recurring and "weighted_sum" or "not recurring")
  end
  if (charge.model == "percentage" or charge.model == "graduated_percentage") and agg == "latest" then
    return nil, format("model: a %s charge cannot price a latest metric", charge.model)
  end
  return true
end

local function raise(fn, err) error("charges." .. fn .. ": " .. tostring(err), 0) end

local function checked(fn, charge)
  local ok, n = pcall(M.normalize, charge)
  if not ok then raise(fn, n) end
  return n
end

local function check_ctx(fn, ctx, n)
  if type(ctx) ~= "table" then raise(fn, "ctx: a table with the currency expected, got " .. type(ctx)) end
  if type(ctx.currency) ~= "string" or not decimal.scale(ctx.currency) then
    raise(fn, "ctx.currency: unknown currency " .. tostring(ctx.currency))
  end
  local props = n.properties
  if ctx.filter ~= nil then
    local f = n.filters[ctx.filter]
    if not f then raise(fn, "ctx.filter: no filter " .. tostring(ctx.filter) .. " on the charge") end
    props = f.properties
  end
  local prorate
  if ctx.prorate ~= nil then
    local ok, d = pcall(common.dec, ctx.prorate, "ctx.prorate")
    if not ok then raise(fn, d) end
    if d:sign() < 0 or d > decimal.new(1) then raise(fn, "ctx.prorate: a fraction from 0 to 1 expected, got " .. tostring(d)) end
    prorate = d
  end
  return props, prorate
end

-- One priced aggregation (the whole bucket, or one group of it).
local function price(fn, n, props, agg, ctx, prorate, opts)
  local ok, res = pcall(function()
    local units = common.units(agg)
    local full = agg.full_units ~= nil and common.dec(agg.full_units, "agg.full_units") or units
    if n.prorated and agg.full_units == nil and prorate then units = units * prorate end
    local r = n.impl.price(props, units, full, agg, opts)
    return { precise_amount = r.amount, amount = r.amount:money(ctx.currency, M.ROUNDING),
             units = common.shown(units), full_units = common.shown(full), events = common.count(agg),
             unit_amount = common.shown(r.unit_amount), details = common.shown(r.details) }
  end)
  if not ok then raise(fn, res) end
  return res
end

-- amount(charge, agg, ctx) -> {amount (rounded to the currency's scale), precise_amount (exact),
-- units, unit_amount (exact), details, events, groups}. agg is steward.billing.aggregate's
-- result for the charge's events (for a charge with filters: one bucket's events, ctx.filter
-- naming the bucket's filter; nil for the events no filter matches). A charge with group_by
-- prices every group of agg.groups as its own fee (each rounded, as Lago rounds each fee) and
-- the amount is their sum.
function M.amount(charge, agg, ctx)
  local n = checked("amount", charge)
  local props, prorate = check_ctx("amount", ctx, n)
  if type(agg) ~= "table" then raise("amount", "agg: an aggregation result table expected, got " .. type(agg)) end
  if not n.group_by then return price("amount", n, props, agg, ctx, prorate, {}) end
  if type(agg.groups) ~= "table" then
    raise("amount", "agg.groups: the charge groups by " .. table.concat(n.group_by, ", ")
      .. ": aggregate with opts.group_by")
  end
  local keys = {}
  for k in pairs(agg.groups) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local total = { amount = decimal.zero, precise_amount = decimal.zero, units = decimal.zero, events = 0, groups = {} }
  for _, k in ipairs(keys) do
    if type(agg.groups[k]) ~= "table" then
      raise("amount", "agg.groups[" .. tostring(k) .. "]: an aggregation result table expected, got " .. type(agg.groups[k]))
    end
    local g = price("amount", n, props, agg.groups[k], ctx, prorate, {})
    g.key = k
    total.groups[#total.groups + 1] = g
    total.amount = total.amount + g.amount
    total.precise_amount = total.precise_amount + g.precise_amount
    total.units = total.units + g.units
    total.events = total.events + g.events
  end
  total.unit_amount = common.shown(common.per_unit(total.amount, total.units))
  total.details = {}
  return total
end

-- in_advance(charge, before, after, ctx) -> the fee of one event of a pay-in-advance charge:
-- the price of the period's usage with the event (after) minus the price without it (before),
-- Lago's difference. The "before" side bills no first-tier flat amount at zero units, so the
-- first event pays it. For a charge with group_by, before and after are the event's group's
-- aggregations. Rounded like any fee.
function M.in_advance(charge, before, after, ctx)
  local n = checked("in_advance", charge)
  if not n.pay_in_advance then raise("in_advance", "charge.pay_in_advance: the charge is not paid in advance") end
  local props, prorate = check_ctx("in_advance", ctx, n)
  if type(before) ~= "table" then raise("in_advance", "before: an aggregation result table expected") end
  if type(after) ~= "table" then raise("in_advance", "after: an aggregation result table expected") end
  local a = price("in_advance", n, props, after, ctx, prorate, {})
  local b = price("in_advance", n, props, before, ctx, prorate, { exclude_event = true })
  local exact = a.precise_amount - b.precise_amount
  local amount = exact:money(ctx.currency, M.ROUNDING)
  local units = a.units - b.units
  return { amount = amount, precise_amount = exact, units = units, unit_amount = common.shown(common.per_unit(amount, units)),
           events = 1, details = { after = a.details, before = b.details } }
end

local function fraction_arg(fn, v, name)
  if v == nil then return decimal.new(1) end
  local ok, d = pcall(common.dec, v, name)
  if not ok then raise(fn, d) end
  if d:sign() < 0 or d > decimal.new(1) then raise(fn, name .. ": a fraction from 0 to 1 expected, got " .. tostring(d)) end
  return d
end

-- commitment(plan, fees_total, period_fraction) -> the minimum commitment's true-up (decimal,
-- zero when the fees reach it or the plan has none): the commitment prorated by the part of the
-- period the subscription was active, rounded to the currency, less the period's charge fees.
function M.commitment(plan, fees_total, period_fraction)
  if type(plan) ~= "table" then raise("commitment", "plan: a plan table expected, got " .. type(plan)) end
  if plan.minimum_commitment == nil then return decimal.zero end
  if type(plan.currency) ~= "string" or not decimal.scale(plan.currency) then
    raise("commitment", "plan.currency: unknown currency " .. tostring(plan.currency))
  end
  local ok, mc = pcall(common.nonneg, plan.minimum_commitment, "plan.minimum_commitment")
  if not ok then raise("commitment", mc) end
  local ok2, fees = pcall(common.dec, fees_total, "fees_total")
  if not ok2 then raise("commitment", fees) end
  local f = fraction_arg("commitment", period_fraction, "period_fraction")
  local due = (mc * f):money(plan.currency, M.ROUNDING) - fees
  if due:sign() <= 0 then return decimal.zero end
  return due:money(plan.currency, M.ROUNDING)
end

-- true_up(charge, used, ctx) -> {amount, precise_amount, units = 1} or nil: the charge's
-- min_amount, prorated by ctx.period_fraction (the billed days over the period's days, default
-- 1), less what its fees came to (used: the sum of all its filters' and groups' fees).
function M.true_up(charge, used, ctx)
  local n = checked("true_up", charge)
  check_ctx("true_up", ctx, n)
  if not n.min_amount or n.min_amount:is_zero() then return nil end
  local ok, u = pcall(common.dec, used, "used")
  if not ok then raise("true_up", u) end
  local f = fraction_arg("true_up", ctx.period_fraction, "ctx.period_fraction")
  local min = n.min_amount * f
  if u >= min then return nil end
  local exact = min - u
  return { amount = exact:money(ctx.currency, M.ROUNDING), precise_amount = exact, units = decimal.new(1) }
end

local function matches(f, props)
  for k, set in pairs(f.values) do
    local v = props[k]
    if v == nil or not set[tostring(v)] then return false end
  end
  return true
end

-- match(charge, properties) -> the index of the filter an event with these properties is billed
-- under, or nil (the charge's own properties). An event matching several filters goes to the one
-- naming the most properties; among equals, the first listed (Lago keeps the oldest).
function M.match(charge, props)
  local n = checked("match", charge)
  if type(props) ~= "table" then raise("match", "properties: a table expected, got " .. type(props)) end
  local best, keys
  for i, f in ipairs(n.filters) do
    if (not keys or f.keys > keys) and matches(f, props) then best, keys = i, f.keys end
  end
  return best
end

-- buckets(charge, events) -> { {filter = index|nil, name, events = {...}} }: the events split by
-- filter, one bucket per filter in order, then the events no filter matches (filter = nil). Each
-- bucket is aggregated on its own and priced with amount(charge, agg, {filter = bucket.filter}).
function M.buckets(charge, events)
  local n = checked("buckets", charge)
  if type(events) ~= "table" then raise("buckets", "events: a list expected, got " .. type(events)) end
  local out = {}
  for i, f in ipairs(n.filters) do
    out[i] = { filter = i, name = f.invoice_display_name, events = {} }
  end
  local default = { filter = nil, name = n.invoice_display_name, events = {} }
  out[#out + 1] = default
  for i, e in ipairs(events) do
    if type(e) ~= "table" then raise("buckets", format("events[%d]: an event table expected", i)) end
    local props = e.properties or {}
    local best, keys
    for j, f in ipairs(n.filters) do
      if (not keys or f.keys > keys) and matches(f, props) then best, keys = j, f.keys end
    end
    local b = best and out[best] or default
    b.events[#b.events + 1] = e
  end
  return out
end

return M
