-- steward.billing.mrr: monthly recurring revenue and its movements, computed from the
-- subscription history (steward.billing.subscriptions.history) and nothing else, so the figures
-- can be recomputed and checked at any time. Plan fees are normalized to a month exactly
-- (weekly x 52/12, quarterly / 3, yearly / 12: rationals, never rounded here); each tenant's MRR
-- is taken at each month boundary and its change over the month is one movement: new,
-- expansion, contraction, churn or reactivation. Per currency; no exchange rate is invented.
-- docs/billing/mrr.md.
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require, rawequal, floor =
  type, pairs, ipairs, tostring, tonumber, error, pcall, require, rawequal, math.floor
local format, sort = string.format, table.sort

local M = {}

-- A month's fee for one period of each interval, as an exact fraction.
M.PER_MONTH = {
  weekly = decimal.new(52) / 12,
  monthly = decimal.new(1),
  quarterly = decimal.new(1) / 3,
  yearly = decimal.new(1) / 12,
}

-- The changes of a subscription history, and whether each sets the subscription's price.
M.CHANGES = { created = true, activated = true, upgraded = true, downgraded = true, terminated = true,
  canceled = true, reactivated = true }

M.MOVEMENTS = { "new", "expansion", "contraction", "churn", "reactivation" }

-- The changes that start a subscription (or its new price): a trial_ends after them defers the fee.
local STARTS = { activated = true, reactivated = true, upgraded = true, downgraded = true }

local ZERO = decimal.new(0)

-- breather(yield) -> a function to call in a long loop: every 1,024th call it calls yield
-- (task.yield, from the HTTP API and the REPL), so a history of a hundred thousand changes
-- does not hold the loop; without yield it does nothing (compute stays pure).
function M.breather(yield)
  if yield == nil then return function() end end
  if type(yield) ~= "function" then error("mrr: yield: a function expected", 3) end
  local n = 0
  return function()
    n = n + 1
    if n % 1024 == 0 then yield() end
  end
end

-- normalize(amount, interval) -> the monthly equivalent of a plan fee (exact).
function M.normalize(amount, interval)
  local f = M.PER_MONTH[interval]
  if not f then
    error(format("mrr.normalize: interval: %s: weekly, monthly, quarterly or yearly expected", tostring(interval)), 2)
  end
  if not decimal.is(amount) then error("mrr.normalize: amount: a decimal expected", 2) end
  return amount * f
end

-- ---- months ----

-- month_start(t) -> the Unix time of the first second of the UTC month containing t
local function month_start(t)
  local y, m = util.civil_from_days(floor(t / 86400))
  return util.days_from_civil(y, m, 1) * 86400
end

local function next_month(t)
  local y, m = util.civil_from_days(floor(t / 86400))
  m = m + 1
  if m > 12 then y, m = y + 1, 1 end
  return util.days_from_civil(y, m, 1) * 86400
end

local function month_key(t)
  local y, m = util.civil_from_days(floor(t / 86400))
  return format("%04d-%02d", y, m)
end
M.month_key = month_key

-- month_arg(v, what) -> the start of the month v names: "2026-03" or a Unix time in it.
function M.month_arg(v, what)
  if type(v) == "number" and v == v and v > -1e12 and v < 1e12 then return month_start(v) end
  if type(v) == "string" then
    local y, m = v:match("^(%d%d%d%d)%-(%d%d)$")
    y, m = tonumber(y), tonumber(m)
    if y and m >= 1 and m <= 12 then return util.days_from_civil(y, m, 1) * 86400 end
  end
  error(format("%s: %s: a month (\"2026-03\") or a Unix time expected", what, tostring(v)), 3)
end

-- months(from, to) -> the month starts from the month of `from` to the month of `to`, inclusive
function M.months(from, to)
  local list, t = {}, month_start(from)
  while t <= to do
    list[#list + 1] = t
    t = next_month(t)
  end
  return list
end

-- ---- the history replayed ----

local function field_error(i, field, reason)
  error(format("mrr: history[%d].%s: %s", i, field, reason), 0)
end

-- check(history) -> the entries validated and sorted by time (stable), each with its price
-- as a decimal monthly amount when the change sets one.
local function checked(history, default_currency)
  if type(history) ~= "table" then error("mrr: history: a list of changes expected", 0) end
  local list = {}
  for i, e in ipairs(history) do
    if type(e) ~= "table" then field_error(i, "", "a table expected") end
    if type(e.subscription) ~= "string" or e.subscription == "" then field_error(i, "subscription", "a string expected") end
    if type(e.tenant) ~= "string" or e.tenant == "" then field_error(i, "tenant", "a string expected") end
    if type(e.at) ~= "number" or e.at ~= e.at then field_error(i, "at", "a Unix time expected") end
    if not M.CHANGES[e.change] then
      field_error(i, "change", tostring(e.change) .. ": created, activated, upgraded, downgraded, terminated, " ..
        "canceled or reactivated expected")
    end
    local x = { i = i, subscription = e.subscription, tenant = e.tenant, at = e.at, change = e.change, plan = e.plan,
      previous_plan = e.previous_plan, previous = e.previous }
    if e.amount ~= nil and e.change ~= "terminated" and e.change ~= "canceled" then
      local ok, amount = pcall(decimal.new, e.amount)
      if not ok then field_error(i, "amount", tostring(amount)) end
      if amount < ZERO then field_error(i, "amount", tostring(amount) .. " is negative") end
      if not M.PER_MONTH[e.interval] then
        field_error(i, "interval", tostring(e.interval) .. ": weekly, monthly, quarterly or yearly expected")
      end
      x.mrr = amount * M.PER_MONTH[e.interval]
    elseif e.change == "upgraded" or e.change == "downgraded" then
      field_error(i, "amount", "the new plan's fee expected")
    end
    local cur = e.currency or default_currency
    if type(cur) ~= "string" or not decimal.scale(cur) then field_error(i, "currency", tostring(cur) .. ": unknown currency") end
    x.currency = cur
    if e.trial_ends ~= nil then
      if type(e.trial_ends) ~= "number" or e.trial_ends ~= e.trial_ends then field_error(i, "trial_ends", "a Unix time expected") end
      if e.trial_ends > e.at and STARTS[e.change] then x.trial_ends = e.trial_ends end
    end
    list[#list + 1] = x
  end
  -- A start inside a trial pays from the trial's end: a change of its own, then.
  local n = #list
  for k = 1, n do
    local x = list[k]
    if x.trial_ends then
      list[#list + 1] = { i = #history + k, subscription = x.subscription, tenant = x.tenant, at = x.trial_ends,
        change = "trial_ended", currency = x.currency }
    end
  end
  sort(list, function(a, b)
    if a.at ~= b.at then return a.at < b.at end
    return a.i < b.i
  end)
  return list
end

-- steps(history) -> {[currency] = {[tenant] = { {at, mrr}... }}}: each tenant's MRR after each
-- change, in time order. A subscription counts from its activation to its termination; an
-- upgrade or downgrade on the same subscription changes its price, and one that names another
-- subscription replaces the one it ends (`previous`, else the tenant's active subscription on
-- `previous_plan`). A start with a `trial_ends` after it counts 0 until then (a trial pays
-- nothing), its fee from then on.
function M.steps(history, opts)
  opts = opts or {}
  local list = checked(history, opts.currency or "USD")
  local breathe = M.breather(opts.yield)
  local subs, out, active_order = {}, {}, 0
  local by_tenant = {} -- currency .. "\0" .. tenant -> {subscription record...}
  local function tenant_mrr(currency, tenant)
    local sum = ZERO
    for _, s in ipairs(by_tenant[currency .. "\0" .. tenant] or {}) do
      if s.active and s.currency == currency then sum = sum + s.mrr end
    end
    return sum
  end
  for _, e in ipairs(list) do
    breathe()
    local s = subs[e.subscription]
    if not s then
      s = { tenant = e.tenant, currency = e.currency, price = e.mrr or ZERO, mrr = ZERO, plan = e.plan, active = false }
      subs[e.subscription] = s
      local key = e.currency .. "\0" .. e.tenant
      by_tenant[key] = by_tenant[key] or {}
      by_tenant[key][#by_tenant[key] + 1] = s
    end
    local c = e.change
    local touched = { [s.currency .. "\0" .. s.tenant] = { s.currency, s.tenant } }
    if c == "terminated" or c == "canceled" then
      s.active = false
    elseif c == "trial_ended" then
      -- only the trial of the start that set it (a later change has its own, or none)
      if s.trial_until == e.at then s.trial_until = nil end
    elseif c == "created" then
      if e.mrr then s.price, s.plan = e.mrr, e.plan end
    elseif c == "activated" or c == "reactivated" then
      if e.mrr then s.price, s.plan = e.mrr, e.plan end
      if not s.active then active_order = active_order + 1; s.since = active_order end
      s.active, s.trial_until = true, e.trial_ends
    else -- upgraded, downgraded
      if not s.active then
        -- a new subscription replacing another: end the one it replaces
        local old = e.previous and subs[e.previous]
        if not (old and old.active) then
          old = nil
          for _, o in ipairs(by_tenant[e.currency .. "\0" .. e.tenant] or {}) do
            if o ~= s and o.active and o.currency == e.currency
              and o.plan ~= nil and o.plan == e.previous_plan and (not old or o.since > old.since) then
              old = o
            end
          end
        end
        if old then
          old.active = false
          touched[old.currency .. "\0" .. old.tenant] = { old.currency, old.tenant }
        end
        active_order = active_order + 1
        s.since = active_order
      end
      s.price, s.plan, s.active, s.trial_until = e.mrr, e.plan, true, e.trial_ends
    end
    -- a subscription in its trial is active and pays nothing yet
    s.mrr = s.trial_until and ZERO or s.price
    for _, ct in pairs(touched) do
      local cur, tenant = ct[1], ct[2]
      out[cur] = out[cur] or {}
      local st = out[cur][tenant] or {}
      out[cur][tenant] = st
      local v = tenant_mrr(cur, tenant)
      if st[#st] and st[#st].at == e.at then st[#st].mrr = v else st[#st + 1] = { at = e.at, mrr = v } end
    end
  end
  return out
end

-- snapshots(steps_of_currency, bounds) -> {[tenant] = {v0, v1, ...}}: each tenant's MRR at each
-- boundary (ascending: the first second of each month, and of the month after the last), the
-- value after every change before it (a change at a boundary counts from that boundary on).
-- Between two boundaries without a change the value is the same object, which lets the
-- callers skip a tenant that did not move with a rawequal.
function M.snapshots(tenants_steps, bounds)
  local out = {}
  for tenant, st in pairs(tenants_steps) do
    local row, i, v = {}, 1, ZERO
    for k, b in ipairs(bounds) do
      while st[i] and st[i].at < b do
        v = st[i].mrr
        i = i + 1
      end
      row[k] = v
    end
    out[tenant] = row
  end
  return out
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  return keys
end
M.sorted_keys = sorted_keys

-- range(opts, steps) -> the month starts from opts.from to opts.to (defaults: the first month of
-- the history, and the month of opts.now), and the bounds: those and the start of the month after.
function M.range(opts, steps)
  local first
  for _, tenants in pairs(steps) do
    for _, st in pairs(tenants) do
      if st[1] and (not first or st[1].at < first) then first = st[1].at end
    end
  end
  local now = util.now(opts.now)
  local from = opts.from ~= nil and M.month_arg(opts.from, "mrr: from") or month_start(first or now)
  local to = opts.to ~= nil and M.month_arg(opts.to, "mrr: to") or month_start(now)
  if to < from then error("mrr: to: before from", 0) end
  local months = M.months(from, to)
  if #months > 1200 then error("mrr: from: more than 100 years of months asked", 0) end
  local bounds = {}
  for i, m in ipairs(months) do bounds[i] = m end
  bounds[#bounds + 1] = next_month(months[#months])
  return months, bounds
end

-- compute(history, {from=, to=, currency=, tenant=, detail=, now=, yield=}) -> months: for each
-- currency (sorted) and each month in order, {currency, month = "2026-03", from, to, mrr_start,
-- new, expansion, contraction, churn, reactivation, mrr_end, customers_start, customers_end,
-- counts = {new = n, ...}, movements = { {tenant, kind, amount} } (with detail)}. Every amount
-- is an exact decimal and mrr_end = mrr_start + new + expansion - contraction - churn +
-- reactivation holds exactly. A tenant's movement is the change of its MRR between the month's
-- two boundaries; reactivation is a tenant back from 0 that had MRR at an earlier boundary.
function M.compute(history, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("mrr.compute: opts: table expected", 2) end
  local steps = M.steps(history, { currency = opts.default_currency, yield = opts.yield })
  local months, bounds = M.range(opts, steps)
  local breathe = M.breather(opts.yield)
  local out = {}
  for _, cur in ipairs(sorted_keys(steps)) do
    local tenants = steps[cur]
    if opts.tenant then tenants = tenants[opts.tenant] and { [opts.tenant] = tenants[opts.tenant] } end
    if tenants and (opts.currency == nil or opts.currency == cur) then
      -- "had MRR before": any boundary up to the first month's start, whatever opts.from says
      local snaps = M.snapshots(tenants, bounds)
      local seen = {}
      for tenant, st in pairs(tenants) do
        for _, p in ipairs(st) do
          if p.at >= bounds[1] then break end
          if p.mrr > ZERO then seen[tenant] = true end
        end
      end
      local names = sorted_keys(tenants)
      local rows = {}
      for k, m in ipairs(months) do
        rows[k] = { currency = cur, month = month_key(m), from = m, to = bounds[k + 1], new = ZERO,
          expansion = ZERO, contraction = ZERO, churn = ZERO, reactivation = ZERO,
          counts = { new = 0, expansion = 0, contraction = 0, churn = 0, reactivation = 0 },
          movements = opts.detail and {} or nil }
      end
      -- Only the months in which a tenant's value changed cost decimal work: the starts and
      -- ends follow from the first start and the movements (which is the identity itself).
      local start_sum, start_n = ZERO, 0
      for _, tenant in ipairs(names) do
        breathe()
        local snap = snaps[tenant]
        if snap[1] > ZERO then start_sum, start_n = start_sum + snap[1], start_n + 1 end
        for k = 1, #months do
          local s, e = snap[k], snap[k + 1]
          if not rawequal(s, e) then
            local kind, amount
            if s:is_zero() and e > ZERO then
              kind, amount = seen[tenant] and "reactivation" or "new", e
            elseif s > ZERO and e:is_zero() then
              kind, amount = "churn", s
            elseif e > s then
              kind, amount = "expansion", e - s
            elseif e < s then
              kind, amount = "contraction", s - e
            end
            if kind then
              local row = rows[k]
              row[kind] = row[kind] + amount
              row.counts[kind] = row.counts[kind] + 1
              if row.movements then row.movements[#row.movements + 1] = { tenant = tenant, kind = kind, amount = amount } end
            end
            if e > ZERO then seen[tenant] = true end
          end
        end
      end
      for k, row in ipairs(rows) do
        local prev = rows[k - 1]
        row.mrr_start = prev and prev.mrr_end or start_sum
        row.customers_start = prev and prev.customers_end or start_n
        row.mrr_end = row.mrr_start + row.new + row.expansion - row.contraction - row.churn + row.reactivation
        local c = row.counts
        row.customers_end = row.customers_start + c.new + c.reactivation - c.churn
        out[#out + 1] = row
      end
    end
  end
  return out
end

-- reconciles(row) -> true when the month's movements add up to its end (the invariant)
function M.reconciles(row)
  return row.mrr_end == row.mrr_start + row.new + row.expansion - row.contraction - row.churn + row.reactivation
end

-- display(row, {exact = false}) -> the month as JSON wants it: times in RFC 3339, amounts as
-- strings at the currency's scale (rounded half-even, for display only) or, with exact, the
-- exact value ("130/3" when a weekly fee has no finite monthly decimal).
function M.display(row, opts)
  local exact = opts and opts.exact
  local scale = decimal.scale(row.currency) or 2
  local function show(d)
    if exact then return tostring(d) end
    return d:round(scale, "half_even"):format(scale)
  end
  local o = { currency = row.currency, month = row.month, from = util.format_rfc3339(row.from),
    to = util.format_rfc3339(row.to), customers_start = row.customers_start, customers_end = row.customers_end,
    counts = row.counts }
  for _, k in ipairs({ "mrr_start", "new", "expansion", "contraction", "churn", "reactivation", "mrr_end" }) do
    o[k] = show(row[k])
  end
  if row.movements then
    local list = {}
    for i, mv in ipairs(row.movements) do list[i] = { tenant = mv.tenant, kind = mv.kind, amount = show(mv.amount) } end
    o.movements = list
  end
  return o
end

-- The most subscriptions whose trials one report reads (subscriptions.list's ceiling).
M.TRIALS_READ = 100000

-- history(opts) -> the subscription history from steward.billing.subscriptions, each row with
-- its subscription's trial_ends (the history rows do not carry it), or opts.history when given
-- | nil, err
function M.history(opts)
  if opts.history ~= nil then return opts.history end
  local ok, subs = pcall(require, "steward.billing.subscriptions")
  if not ok or type(subs) ~= "table" or type(subs.history) ~= "function" then
    return nil, "steward.billing.subscriptions is not installed: no subscription history to read"
  end
  local h, err = subs.history({ tenant = opts.tenant })
  if not h then return nil, err end
  local list
  list, err = subs.list({ tenant = opts.tenant, limit = M.TRIALS_READ })
  if not list then return nil, err end
  local trial = {}
  for _, s in ipairs(list) do
    if type(s.trial_ends) == "number" then trial[s.id] = s.trial_ends end
  end
  for _, e in ipairs(h) do
    if e.trial_ends == nil and STARTS[e.change] then e.trial_ends = trial[e.subscription] end
  end
  return h
end

-- report(opts) -> compute() over the stored history | nil, err
function M.report(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("mrr.report: opts: table expected", 2) end
  local h, err = M.history(opts)
  if not h then return nil, err end
  return M.compute(h, opts)
end

return M
