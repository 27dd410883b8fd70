-- steward.billing.charges.percentage: Lago's "percentage" model — a rate (a percentage) of the
-- aggregated amount, plus a fixed_amount per paying event. Free units come first: the first
-- free_units_per_events events and/or the first free_units_per_total_aggregation of the amount
-- (whichever ends first). With a per-transaction minimum or maximum the price is computed event
-- by event (agg.per_event, h3's per-event values in the order they happened): each paying
-- event's rate + fixed fee is raised to the minimum or capped at the maximum.
local decimal = require "steward.decimal"
local common = require "steward.billing.charges.common"

local ipairs, type, min = ipairs, type, math.min

local M = {}

local ALLOWED = { rate = true, fixed_amount = true, free_units_per_events = true, free_units_per_total_aggregation = true,
                  per_transaction_min_amount = true, per_transaction_max_amount = true }

function M.check(props, path)
  common.known(props, ALLOWED, path, "percentage")
  local n = {
    rate = common.nonneg(props.rate, path .. ".rate"),
    fixed_amount = common.optional(props.fixed_amount, path .. ".fixed_amount"),
    free_units_per_events = props.free_units_per_events ~= nil
      and common.integer(props.free_units_per_events, path .. ".free_units_per_events", 1):tonumber() or 0,
    free_units_per_total_aggregation = common.optional(props.free_units_per_total_aggregation,
      path .. ".free_units_per_total_aggregation") or decimal.zero,
    per_transaction_min_amount = common.optional(props.per_transaction_min_amount, path .. ".per_transaction_min_amount"),
    per_transaction_max_amount = common.optional(props.per_transaction_max_amount, path .. ".per_transaction_max_amount"),
  }
  if n.per_transaction_min_amount and n.per_transaction_max_amount
     and n.per_transaction_max_amount < n.per_transaction_min_amount then
    common.fail(path .. ".per_transaction_max_amount", "must not be below per_transaction_min_amount "
      .. tostring(n.per_transaction_min_amount))
  end
  return n
end

-- The per-event values, read as decimals only as far as a loop goes: free units look at the
-- first few events, and a period may hold millions.
local function per_event(agg)
  local list = agg.per_event
  if type(list) ~= "table" then return nil end
  return { n = #list, at = function(i) return common.dec(list[i], "agg.per_event[" .. i .. "]") end }
end

-- The cumulative amounts over the first events that free units can cover (Lago's running total):
-- up to free_units_per_events events, else until the total passes the free amount.
local function running_total(n, values)
  local out, total = {}, decimal.zero
  if n.free_units_per_events == 0 and n.free_units_per_total_aggregation:is_zero() then return out end
  if not values then return out end
  if n.free_units_per_events > 0 then
    for i = 1, min(n.free_units_per_events, values.n) do
      total = total + values.at(i)
      out[i] = total
    end
    return out
  end
  for i = 1, values.n do
    if n.free_units_per_total_aggregation < total then break end
    total = total + values.at(i)
    out[#out + 1] = total
  end
  return out
end

local function free_units_value(n, rt)
  local last = rt[#rt] or decimal.zero
  if last:is_zero() then return decimal.zero end
  local fe, ft = n.free_units_per_events, n.free_units_per_total_aggregation
  if fe > 0 and fe < #rt then return rt[fe] end
  if ft:is_zero() or last <= ft then return last end
  return ft
end

local function free_units_count(n, rt)
  local under = 0
  for _, v in ipairs(rt) do if v < n.free_units_per_total_aggregation then under = under + 1 end end
  local fe = n.free_units_per_events
  if fe > 0 and under > 0 then return min(fe, under) end
  return fe > 0 and fe or under
end

local function clamp(n, amount)
  if n.per_transaction_min_amount and amount < n.per_transaction_min_amount then return n.per_transaction_min_amount end
  if n.per_transaction_max_amount and amount > n.per_transaction_max_amount then return n.per_transaction_max_amount end
  return amount
end

-- Event by event, for the per-transaction minimum and maximum.
local function per_transaction(n, values)
  local free_events, free_amount = n.free_units_per_events, n.free_units_per_total_aggregation
  local fixed = n.fixed_amount or decimal.zero
  local total = decimal.zero
  for i = 1, values.n do
    local value, paying = values.at(i), true
    if free_events > 0 or free_amount:sign() > 0 then
      free_events = free_events - 1
      if free_amount:sign() <= 0 then
        paying = false
      elseif free_amount > value then
        free_amount = free_amount - value
        paying = false
      else
        value = value - free_amount
        free_amount, free_events = decimal.zero, 0
      end
    end
    if paying then total = total + clamp(n, value * n.rate / 100 + fixed) end
  end
  return total
end

function M.price(n, units, full, agg)
  local count = common.count(agg)
  local values = per_event(agg)
  local rt = running_total(n, values)
  local free_value, free_count = free_units_value(n, rt), free_units_count(n, rt)
  local percentage = decimal.zero
  if free_value <= units then percentage = (units - free_value) * n.rate / 100 end
  local fixed = decimal.zero
  if not units:is_zero() and n.fixed_amount and free_count < count then
    fixed = (count - free_count) * n.fixed_amount
  end
  local amount, adjustment = percentage + fixed, decimal.zero
  if n.per_transaction_min_amount or n.per_transaction_max_amount then
    if not values then
      common.fail("agg.per_event", "the per-event values are needed for a per-transaction minimum or maximum")
    end
    local exact = per_transaction(n, values)
    adjustment = exact - amount
    amount = exact
  end
  local paid_units = units - free_value
  if paid_units:sign() < 0 then paid_units = decimal.zero end
  local free_events = count >= free_count and free_count or count
  local paid_events = count - free_events
  return { amount = amount, unit_amount = common.per_unit(amount, full), details = {
    units = units, free_units = free_value, paid_units = paid_units, free_events = free_events,
    paid_events = paid_events, rate = n.rate, per_unit_total_amount = percentage,
    fixed_fee_unit_amount = paid_events > 0 and (n.fixed_amount or decimal.zero) or decimal.zero,
    fixed_fee_total_amount = fixed, min_max_adjustment_total_amount = adjustment } }
end

return M
