-- steward.billing.invoice_advance: the fee lines of one usage event for the plan's charges paid
-- in advance (Lago's Fees::CreatePayInAdvanceService): for each such charge of the event's
-- metric, the price of the period's usage with the event minus the price without it
-- (steward.billing.charges.in_advance), within the event's filter bucket and group. Pure: the
-- usage of the period comes in as a list, so specs drive it with fixtures; the store side is
-- steward.billing.invoices.bill_in_advance.
local decimal = require "steward.decimal"

local type, ipairs, tostring, error, require, format = type, ipairs, tostring, error, require, string.format

local M = {}

local function lib(name) return require("steward.billing." .. name) end

-- charges_for(plan, code) -> the plan's charges paid in advance that price metric `code`
function M.charges_for(plan, code)
  local out = {}
  for _, c in ipairs(type(plan) == "table" and plan.charges or {}) do
    if c.pay_in_advance and c.metric == code then out[#out + 1] = c end
  end
  return out
end

-- the events of `list` in the same group as `ev` (the charge's group_by properties equal)
local function same_group(list, ev, group_by)
  if type(group_by) ~= "table" or #group_by == 0 then return list end
  local out = {}
  for _, e in ipairs(list) do
    local same = true
    for _, k in ipairs(group_by) do
      if tostring((e.properties or {})[k]) ~= tostring((ev.properties or {})[k]) then same = false; break end
    end
    if same then out[#out + 1] = e end
  end
  return out
end

-- lines(plan, metric, ev, events, period, currency [, timezone]) -> fee lines (possibly empty):
-- ev = {transaction_id, timestamp, properties} the event billed; events = the period's usage of
-- the metric as recorded (with or without ev): "before" is those before ev in time, "after" adds
-- ev. A fee of zero gives no line.
function M.lines(plan, metric, ev, events, period, currency, timezone)
  if type(ev) ~= "table" or type(ev.transaction_id) ~= "string" then
    error("invoice_advance.lines: ev: a usage event {transaction_id, timestamp, properties} expected", 2)
  end
  local charges, aggregate = lib("charges"), lib("aggregate")
  -- "before" is the events before this one in time (then transaction id): an event's fee depends
  -- on the usage that precedes it, not on the order events arrived in, so a stream replayed in
  -- any order gives the same fees (Lago takes the usage received so far)
  local others = {}
  for _, e in ipairs(events or {}) do
    if e.timestamp < ev.timestamp or (e.timestamp == ev.timestamp and e.transaction_id < ev.transaction_id) then
      others[#others + 1] = e
    end
  end
  local with = {}
  for i, e in ipairs(others) do with[i] = e end
  with[#with + 1] = ev
  local out = {}
  for _, charge in ipairs(M.charges_for(plan, metric.code)) do
    local bucket_of_ev
    for _, b in ipairs(charges.buckets(charge, with)) do
      for _, e in ipairs(b.events) do
        if e == ev then bucket_of_ev = b; break end
      end
      if bucket_of_ev then break end
    end
    local after = same_group(bucket_of_ev.events, ev, charge.group_by)
    local before = {}
    for _, e in ipairs(after) do if e ~= ev then before[#before + 1] = e end end
    local p = { from = period.from, to = period.to, days = period.days, seconds = period.seconds, timezone = timezone }
    local opts = { timezone = timezone }
    local ab, err = aggregate.run(metric, before, p, opts)
    if not ab then error(format("charge %s: %s", tostring(charge.id), tostring(err)), 0) end
    local aa
    aa, err = aggregate.run(metric, after, p, opts)
    if not aa then error(format("charge %s: %s", tostring(charge.id), tostring(err)), 0) end
    local fee = charges.in_advance(charge, ab, aa, { currency = currency, period = p, filter = bucket_of_ev.filter })
    if not fee.amount:is_zero() then
      local details = { pay_in_advance = true, transaction_id = ev.transaction_id, timestamp = ev.timestamp,
                        filter = bucket_of_ev.filter and charge.filters[bucket_of_ev.filter].values or nil }
      if charge.group_by then
        local g = {}
        for _, k in ipairs(charge.group_by) do g[k] = (ev.properties or {})[k] end
        details.group = g
      end
      out[#out + 1] = { id = "charge:" .. tostring(charge.id) .. ":advance", kind = "charge", charge = charge.id,
        metric = metric.code, description = bucket_of_ev.name or charge.invoice_display_name or metric.name or metric.code,
        units = decimal.new(fee.units), unit_amount = decimal.new(fee.unit_amount or 0), amount = fee.amount,
        from = period.from, to = period.to, details = details, usage = { events = 1 } }
    end
  end
  return out
end

return M
