-- steward.billing.subscriptions: a tenant's subscription to a plan version and its life —
-- pending (until it starts) -> active -> terminated (ended, or replaced by an upgrade or a
-- downgrade) or canceled (a pending one that never started). A pending subscription starts on
-- a durable timer armed in the same batch that creates it, so a restart in between loses
-- nothing (the shipped policy billing.subscriptions hears the timer). Every change writes its
-- row of `history` (what MRR reads) and its event in one batch with the change itself; a
-- change is an UPDATE conditional on the version it read, so of two concurrent changes one
-- applies. `due(now)` lists the periods the invoices still need to bill.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"
local bconfig = require "steward.billing.config"
local plans = require "steward.billing.plans"
local V = require "steward.billing.values"
local guard = require "steward.billing.guard"
require "steward.billing.schema"

local type, pairs, ipairs, tostring, tonumber, error, pcall, require, unpack, max, min =
  type, pairs, ipairs, tostring, tonumber, error, pcall, require, unpack, math.max, math.min
local format = string.format

local M = {}

M.STATES = { pending = true, active = true, terminated = true, canceled = true }
M.BILLING_TIMES = { calendar = true, anniversary = true }
M.CHANGES = { created = true, activated = true, reactivated = true, upgraded = true, downgraded = true,
              terminated = true, canceled = true }
M.TIMER_EVENT = "billing.subscription.timer"

local SOURCE = "steward.billing.subscriptions"
local COLS = "id, tenant, plan, plan_version, state, billing_time, started, trial_ends, ending, terminated, canceled, " ..
  "anchor, previous, next, external_id, invoiced_to, advance_to, created, updated, version"

local ready = domain.migrator("billing")
M.ready = ready

local function row(r)
  local s = domain.row(r, {})
  s.plan_version, s.version = tonumber(s.plan_version), tonumber(s.version)
  return s
end

-- periods: h3's steward.billing.periods (bounds of the billing period containing a time)
local function periods()
  local ok, p = pcall(require, "steward.billing.periods")
  if not ok or type(p) ~= "table" then return nil, "steward.billing.periods is not installed" end
  return p
end

-- period(sub, at [, plan]) -> {from, to} | nil, err: the billing period of sub containing at
-- (calendar or anniversary, in billing.timezone).
function M.period(sub, at, plan)
  local p, err = periods()
  if not p then return nil, err end
  if not plan then
    plan, err = plans.get(sub.plan, sub.plan_version)
    if not plan then return nil, err or ("no plan " .. sub.plan) end
  end
  return p.bounds(plan.interval, sub.anchor, at, { billing_time = sub.billing_time, timezone = bconfig.current.timezone })
end

-- get(st, id) -> subscription | false | nil, err
function M.get(st, id)
  if type(id) ~= "string" then error("subscriptions.get: id: string expected, got " .. type(id), 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_subscriptions WHERE id = $1", id)
end

-- get_many(st, ids) -> {[id] = subscription} (the ids not found are absent) | nil, err: one
-- query per 500 ids, for a usage batch naming many subscriptions (one get each was most of its
-- cost: docs/performance.md, "Billing (issue 18)").
function M.get_many(st, ids)
  if type(ids) ~= "table" then error("subscriptions.get_many: ids: list expected, got " .. type(ids), 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local out = {}
  for first = 1, #ids, 500 do
    local marks, params = {}, {}
    for j = first, min(first + 499, #ids) do
      if type(ids[j]) ~= "string" then error("subscriptions.get_many: ids[" .. j .. "]: string expected", 2) end
      params[#params + 1] = ids[j]
      marks[#marks + 1] = "$" .. #params
    end
    local rows
    rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_subscriptions WHERE id IN (" ..
      table.concat(marks, ",") .. ")", unpack(params))
    if not rows then return nil, err end
    for _, r in ipairs(rows) do
      local s = row(r)
      out[s.id] = s
    end
  end
  return out
end

-- list(st, {tenant=, state=, plan=, external_id=, limit=}) -> subscriptions, newest first | nil, err
function M.list(st, f)
  f = f or {}
  if type(f) ~= "table" then error("subscriptions.list: filter: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  for _, k in ipairs({ "tenant", "state", "plan", "external_id" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" then error("subscriptions.list: " .. k .. ": string expected", 2) end
      if k == "state" and not M.STATES[f[k]] then
        error("subscriptions.list: state: one of pending, active, terminated, canceled expected", 2)
      end
      w:add(k .. " = ?", f[k])
    end
  end
  local limit = util.limit_arg(f.limit, "subscriptions.list: limit", 1000, 100000)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_subscriptions" .. w:clause() ..
    " ORDER BY created DESC, id DESC LIMIT " .. w:param(limit), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- ---- changes ----

local function event(type_, s, now, extra)
  local d = { subscription = s.id, tenant = s.tenant, plan = s.plan, plan_version = s.plan_version, state = s.state,
              billing_time = s.billing_time, external_id = s.external_id }
  for k, v in pairs(extra or {}) do d[k] = v end
  return { id = format("billing.subscription:%s:%s:%s", s.id, type_, tostring(s.version)), type = "billing.subscription." .. type_,
           tenant = s.tenant, time = now, source = SOURCE, data = d }
end

local function history_stmt(s, change, at, plan, previous_plan)
  return { "INSERT INTO billing_subscription_history (id, subscription, tenant, at, change, plan, previous_plan, amount, " ..
    "currency, plan_interval) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO NOTHING",
    format("%s:%s", s.id, change), s.id, s.tenant, at, change, plan.code, util.nullable(previous_plan),
    V.text(plan.amount), plan.currency, plan.interval }
end

-- the timer that starts a pending subscription, armed in the batch that creates it
local function timer_stmt(s, now)
  local text = timers.check_event({ type = M.TIMER_EVENT, tenant = s.tenant, source = SOURCE,
    data = { subscription = s.id, action = "activate" } }, "subscriptions")
  return { "INSERT INTO timers (id, due_at, event, created) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    "k:billing.subscription.start:" .. s.id, s.started, text, now }
end

local function timer_cancel_stmt(id)
  return { "DELETE FROM timers WHERE id = $1", "k:billing.subscription.start:" .. id }
end

-- commit(st, stmts, evs, now) -> results | nil, err: the change, its history rows and its
-- events in one batch; subscribers hear the events that were new.
local function commit(st, stmts, evs, now, check)
  for i = 1, #stmts do
    if stmts[i].guard then
      for _, g in ipairs(guard.statements("billing_subscriptions", stmts[i].guard)) do stmts[#stmts + 1] = g end
    end
  end
  local first = #stmts + 1
  local texts = {}
  for i, ev in ipairs(evs) do texts[i] = json.encode(ev.data) end
  for _, s in ipairs(events.insert_statements(evs, texts, now)) do stmts[#stmts + 1] = s end
  local res, err = st.db:batch(stmts)
  if not res then
    if guard.conflict(err) then return nil, "conflict: the subscription changed meanwhile" end
    return nil, err
  end
  if check then
    local ok, why = check(res)
    if not ok then return nil, why end
  end
  local seqs, fresh = {}, {}
  for i = first, #res do
    for _, r in ipairs(res[i].rows or {}) do seqs[r.id] = r.seq end
  end
  for _, ev in ipairs(evs) do
    if seqs[ev.id] then ev.seq = seqs[ev.id]; fresh[#fresh + 1] = ev end
  end
  events.published(st, fresh)
  return res
end

-- changed(i, what [, j, other]): the batch's conditional updates i (and j) each changed their
-- row, else the batch must not stand: "conflict".
local function changed(i, what, j, other)
  return function(res)
    if res[i].changes ~= 1 then return nil, "conflict: the subscription " .. what .. " changed meanwhile" end
    if j and res[j].changes ~= 1 then return nil, "conflict: the subscription " .. other .. " changed meanwhile" end
    return true
  end
end

-- The UPDATE of a change, conditional on the version read; the batch falls with it (guard).
local function update_stmt(s, sets, params, now)
  local key = guard.key(now)
  local stmt = { "UPDATE billing_subscriptions SET " .. sets .. ", updated = $1, version = $2, change_id = $" ..
    (#params + 5) .. " WHERE id = $3 AND version = $4", now, s.version + 1, s.id, s.version }
  for _, p in ipairs(params) do stmt[#stmt + 1] = util.nullable(p) end
  stmt[#stmt + 1] = key
  stmt.guard = key
  return stmt
end

local function insert_stmt(s)
  return { "INSERT INTO billing_subscriptions (id, tenant, plan, plan_version, state, billing_time, started, trial_ends, " ..
    "ending, anchor, previous, external_id, created, updated, version) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$13,1)",
    s.id, s.tenant, s.plan, s.plan_version, s.state, s.billing_time, s.started, util.nullable(s.trial_ends),
    util.nullable(s.ending), s.anchor, util.nullable(s.previous), util.nullable(s.external_id), s.created }
end

local function tenant_known(tenant)
  local okt, tenants = pcall(require, "steward.tenants")
  if not okt or type(tenants) ~= "table" or type(tenants.get) ~= "function" then return true end
  local okg, rec, err = pcall(tenants.get, tenant)
  if not okg then return true end -- no tenants store here (a script): the caller vouches
  if rec == nil then
    if err == "not found" then return nil, "tenant: no tenant " .. tenant end
    return nil, err
  end
  if rec.state == "removed" or rec.state == "offboarding" then return nil, "tenant: " .. tenant .. " is " .. rec.state end
  return true
end

local function load(st, id, what)
  if type(id) ~= "string" then error(what .. ": id: string expected, got " .. type(id), 3) end
  local s, err = M.get(st, id)
  if s == nil then return nil, err end
  if not s then return nil, "not found: no subscription " .. id end
  return s
end

local function plan_arg(st, code, field)
  if type(code) ~= "string" then return nil, field .. ": a plan code expected" end
  local p, err = plans.get(st, code)
  if p == nil then return nil, err end
  if not p then return nil, field .. ": no plan " .. code end
  return p
end

local function trial_end(plan, started)
  if plan.trial_days and plan.trial_days > 0 then return started + plan.trial_days * 86400 end
  return nil
end

-- The change an activation records: a replacement's kind, else a first start or a tenant's
-- return after a subscription that ended.
local function start_change(st, s)
  if s.previous then return nil end
  local rows = st.db:query("SELECT COUNT(*) AS n FROM billing_subscriptions WHERE tenant = $1 AND id <> $2 AND " ..
    "state = 'terminated' AND next IS NULL", s.tenant, s.id)
  if rows and tonumber(rows[1].n) > 0 then return "reactivated" end
  return "activated"
end

local CREATE = { tenant = true, plan = true, external_id = true, billing_time = true, started = true }

-- create(st, {tenant, plan, external_id, billing_time, started} [, now]) -> subscription |
-- nil, "field: reason". Pending until `started` (a durable timer starts it), active at once
-- when started is now or past.
function M.create(st, spec, now)
  if type(spec) ~= "table" then error("subscriptions.create: spec: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  err = V.unknown(spec, CREATE)
  if err then return nil, err end
  local tenant
  tenant, err = V.str(spec.tenant, "tenant", { required = true, max = 63 })
  if err then return nil, err end
  ok, err = tenant_known(tenant)
  if not ok then return nil, err end
  local plan
  plan, err = plan_arg(st, spec.plan, "plan")
  if not plan then return nil, err end
  local external
  external, err = V.str(spec.external_id, "external_id", { max = 200 })
  if err then return nil, err end
  local bt
  bt, err = V.str(spec.billing_time, "billing_time", { max = 20 })
  if err then return nil, err end
  bt = bt or "calendar"
  if not M.BILLING_TIMES[bt] then return nil, "billing_time: calendar or anniversary expected" end
  now = util.now(now)
  local started
  started, err = V.time(spec.started, "started")
  if err then return nil, err end
  started = started or now
  local s = { id = "sub-" .. util.uuidv7(now), tenant = tenant, plan = plan.code, plan_version = plan.version,
              state = started <= now and "active" or "pending", billing_time = bt, started = started,
              trial_ends = trial_end(plan, started), anchor = started, external_id = external, created = now,
              updated = now, version = 1 }
  local stmts = { insert_stmt(s), history_stmt(s, "created", now, plan) }
  local evs = { event("created", s, now, { started = started, trial_ends = s.trial_ends }) }
  if s.state == "active" then
    local change = start_change(st, s)
    stmts[#stmts + 1] = history_stmt(s, change, started, plan)
    evs[#evs + 1] = event("activated", s, now, { change = change })
  else
    stmts[#stmts + 1] = timer_stmt(s, now)
  end
  local res
  res, err = commit(st, stmts, evs, now)
  if not res then return nil, err end
  return s
end

-- activate(st, id [, now]) -> subscription (active) | false (not pending, or not due yet) |
-- nil, err. The start timer's handler calls it; a downgrade's subscription ends the one it
-- replaces in the same batch.
function M.activate(st, id, now)
  local s, err = load(st, id, "subscriptions.activate")
  if not s then return nil, err end
  now = util.now(now)
  if s.state ~= "pending" or s.started > now then return false end
  local plan
  plan, err = plans.get(st, s.plan, s.plan_version)
  if not plan then return nil, err or ("no plan " .. s.plan) end
  local stmts = { update_stmt(s, "state = 'active'", {}, now) }
  local after = {}
  for k, v in pairs(s) do after[k] = v end
  after.state, after.version, after.updated = "active", s.version + 1, now
  local change, old, ended = start_change(st, s), nil, nil
  if s.previous then
    old = M.get(st, s.previous)
    if old and old.state == "active" then
      stmts[#stmts + 1] = update_stmt(old, "state = 'terminated', terminated = $5, ending = $5", { s.started }, now)
      ended = #stmts
      change = "downgraded"
    else
      change = start_change(st, { tenant = s.tenant, id = s.id })
    end
  end
  local prev_plan = old and old.plan or nil
  stmts[#stmts + 1] = history_stmt(s, change, s.started, plan, prev_plan)
  local res
  res, err = commit(st, stmts, { event("activated", after, now, { change = change, previous = s.previous }) }, now,
    changed(1, s.id, ended, s.previous))
  if not res then return nil, err end
  return after
end

-- activate_due(st [, now]) -> number started: every pending subscription whose start has come
-- (what the start timers do, for a store restored without its timers).
function M.activate_due(st, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  now = util.now(now)
  local rows
  rows, err = st.db:query("SELECT id FROM billing_subscriptions WHERE state = 'pending' AND started <= $1 ORDER BY started", now)
  if not rows then return nil, err end
  local n = 0
  for _, r in ipairs(rows) do
    if M.activate(st, r.id, now) then n = n + 1 end
  end
  return n
end

-- A plan change's start: the active subscription id names and the plan code names (its latest
-- version), or nil and the error naming what is wrong.
local function changing(st, id, code, fn)
  local s, err = load(st, id, fn)
  if not s then return nil, err end
  if s.state ~= "active" then return nil, "invalid: the subscription is " .. s.state .. ", not active" end
  local plan
  plan, err = plan_arg(st, code, "plan")
  if not plan then return nil, err end
  return s, plan
end

-- The subscription that follows s on plan, from started on: same tenant, billing time, anchor
-- and external id, linked back to s.
local function successor(s, plan, state, started, now)
  return { id = "sub-" .. util.uuidv7(now), tenant = s.tenant, plan = plan.code, plan_version = plan.version,
           state = state, billing_time = s.billing_time, started = started, anchor = s.anchor,
           previous = s.id, external_id = s.external_id, created = now, updated = now, version = 1 }
end

-- Appends to stmts the cancel of s's pending successor (a downgrade asked before), if any.
local function cancel_next(st, s, stmts, now)
  if not s.next then return end
  local pend = M.get(st, s.next)
  if pend and pend.state == "pending" then
    stmts[#stmts + 1] = update_stmt(pend, "state = 'canceled', canceled = $5", { now }, now)
    stmts[#stmts + 1] = timer_cancel_stmt(pend.id)
  end
end

-- upgrade(st, id, plan [, now]) -> the new subscription | nil, err: now — the old one
-- terminates now, the new one (the plan's latest version) starts now, keeping the billing
-- anchor; the invoices prorate both. A pending downgrade is canceled.
function M.upgrade(st, id, code, now)
  local s, plan = changing(st, id, code, "subscriptions.upgrade")
  if not s then return nil, plan end
  now = util.now(now)
  local n = successor(s, plan, "active", now, now)
  local trial = trial_end(plan, s.started)
  if trial and trial > now then n.trial_ends = trial end
  local stmts = { update_stmt(s, "state = 'terminated', terminated = $5, ending = $5, next = $6", { now, n.id }, now),
                  insert_stmt(n), history_stmt(n, "created", now, plan), history_stmt(n, "upgraded", now, plan, s.plan) }
  cancel_next(st, s, stmts, now)
  local res, err = commit(st, stmts, { event("upgraded", n, now, { previous = s.id, previous_plan = s.plan }) }, now,
    changed(1, s.id))
  if not res then return nil, err end
  return n
end

-- downgrade(st, id, plan [, now]) -> the pending subscription | nil, err: at the end of the
-- current period the old one terminates and the new one starts (a durable timer); a pending
-- downgrade asked before is replaced.
function M.downgrade(st, id, code, now)
  local s, plan = changing(st, id, code, "subscriptions.downgrade")
  if not s then return nil, plan end
  now = util.now(now)
  local cur, err = plans.get(st, s.plan, s.plan_version)
  if not cur then return nil, err or ("no plan " .. s.plan) end
  local p
  p, err = M.period(s, now, cur)
  if not p then return nil, err end
  local n = successor(s, plan, "pending", p.to, now)
  local stmts = { update_stmt(s, "next = $5, ending = $6", { n.id, p.to }, now), insert_stmt(n),
                  history_stmt(n, "created", now, plan), timer_stmt(n, now) }
  cancel_next(st, s, stmts, now)
  local res
  res, err = commit(st, stmts, { event("downgraded", n, now, { previous = s.id, previous_plan = s.plan, starts = p.to }) },
    now, changed(1, s.id))
  if not res then return nil, err end
  return n
end

-- terminate(st, id [, now]) -> subscription (terminated) | nil, err: now; the invoices bill
-- its last, partial period (due lists it as "final"). A pending downgrade is canceled.
function M.terminate(st, id, now)
  local s, err = load(st, id, "subscriptions.terminate")
  if not s then return nil, err end
  if s.state == "pending" then return M.cancel(st, id, now) end
  if s.state ~= "active" then return nil, "invalid: the subscription is " .. s.state .. " already" end
  local plan
  plan, err = plans.get(st, s.plan, s.plan_version)
  if not plan then return nil, err or ("no plan " .. s.plan) end
  now = util.now(now)
  local stmts = { update_stmt(s, "state = 'terminated', terminated = $5, ending = $5, next = NULL", { now }, now),
                  history_stmt(s, "terminated", now, plan) }
  cancel_next(st, s, stmts, now)
  local after = {}
  for k, v in pairs(s) do after[k] = v end
  after.state, after.terminated, after.ending, after.next, after.version, after.updated =
    "terminated", now, now, nil, s.version + 1, now
  local res
  res, err = commit(st, stmts, { event("terminated", after, now, { terminated = now }) }, now, changed(1, s.id))
  if not res then return nil, err end
  return after
end

-- cancel(st, id [, now]) -> subscription (canceled) | nil, err: a pending one only; a pending
-- downgrade canceled leaves the subscription it would have replaced running on.
function M.cancel(st, id, now)
  local s, err = load(st, id, "subscriptions.cancel")
  if not s then return nil, err end
  if s.state ~= "pending" then return nil, "invalid: the subscription is " .. s.state .. ", not pending (terminate it)" end
  local plan
  plan, err = plans.get(st, s.plan, s.plan_version)
  if not plan then return nil, err or ("no plan " .. s.plan) end
  now = util.now(now)
  local stmts = { update_stmt(s, "state = 'canceled', canceled = $5", { now }, now), timer_cancel_stmt(s.id),
                  history_stmt(s, "canceled", now, plan) }
  if s.previous then
    local old = M.get(st, s.previous)
    if old and old.next == s.id then stmts[#stmts + 1] = update_stmt(old, "next = NULL, ending = NULL", {}, now) end
  end
  local after = {}
  for k, v in pairs(s) do after[k] = v end
  after.state, after.canceled, after.version, after.updated = "canceled", now, s.version + 1, now
  local res
  res, err = commit(st, stmts, { event("canceled", after, now, { canceled = now }) }, now, changed(1, s.id))
  if not res then return nil, err end
  return after
end

-- history(st, {from=, to=, tenant=}) -> {{subscription, tenant, at, change, plan,
-- previous_plan, amount, currency, interval}} by time | nil, err. `at` in [from, to).
function M.history(st, f)
  f = f or {}
  if type(f) ~= "table" then error("subscriptions.history: filter: table expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if f.from ~= nil then w:add("at >= ?", f.from) end
  if f.to ~= nil then w:add("at < ?", f.to) end
  if f.tenant ~= nil then w:add("tenant = ?", f.tenant) end
  if f.subscription ~= nil then w:add("subscription = ?", f.subscription) end
  local rows
  rows, err = st.db:query("SELECT subscription, tenant, at, change, plan, previous_plan, CAST(amount AS TEXT) AS amount, " ..
    "currency, plan_interval FROM billing_subscription_history" .. w:clause() .. " ORDER BY at, subscription, change",
    unpack(w.params))
  if not rows then return nil, err end
  -- within one instant, a creation comes before what follows it
  local order = { created = 1, canceled = 2, terminated = 2, activated = 3, reactivated = 3, upgraded = 3, downgraded = 3 }
  table.sort(rows, function(a, b)
    if a.at ~= b.at then return a.at < b.at end
    if order[a.change] ~= order[b.change] then return order[a.change] < order[b.change] end
    return a.subscription < b.subscription
  end)
  for i, r in ipairs(rows) do
    local h = domain.row(r, {})
    h.amount = V.read(h.amount)
    h.interval, h.plan_interval = h.plan_interval, nil
    rows[i] = h
  end
  return rows
end

-- due(st [, now]) -> {{subscription, tenant, plan, plan_version, period = {from, to}, kind}}
-- | nil, err: each period still to invoice. kind: "arrears" (a period that ended), "advance"
-- (the current period of a plan paid in advance, from its start), "final" (the last, partial
-- period of a terminated subscription). The invoices mark what they billed (mark_invoiced).
function M.due(st, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local p
  p, err = periods()
  if not p then return nil, err end
  now = util.now(now)
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_subscriptions WHERE (state = 'active' AND started <= $1) OR " ..
    "(state = 'terminated' AND (invoiced_to IS NULL OR invoiced_to < terminated)) ORDER BY started, id", now)
  if not rows then return nil, err end
  local out = {}
  local opts = { timezone = bconfig.current.timezone }
  for _, r in ipairs(rows) do
    local s = row(r)
    local plan = plans.get(st, s.plan, s.plan_version)
    if plan then
      opts.billing_time = s.billing_time
      local function add(from, to, kind)
        out[#out + 1] = { subscription = s.id, tenant = s.tenant, plan = s.plan, plan_version = s.plan_version,
                          period = { from = from, to = to }, kind = kind }
      end
      local stop = s.terminated or now
      local from = s.invoiced_to or s.started
      for _ = 1, 1000 do
        if from >= stop then break end
        local b = p.bounds(plan.interval, s.anchor, from, opts)
        if not b or b.to <= from then break end
        if s.terminated and s.terminated < b.to then
          add(from, s.terminated, "final")
          break
        end
        if b.to > now then break end
        add(from, b.to, "arrears")
        from = b.to
      end
      if plan.pay_in_advance and s.state == "active" then
        local c = p.bounds(plan.interval, s.anchor, now, opts)
        if c and (s.advance_to or 0) < c.to then add(max(c.from, s.started), c.to, "advance") end
      end
    end
  end
  return out
end

-- mark_invoiced(st, id, period, kind) -> true | nil, err: the invoices billed period (kind as
-- due gave it), so due lists it no more.
function M.mark_invoiced(st, id, period, kind)
  if type(period) ~= "table" or type(period.to) ~= "number" then error("subscriptions.mark_invoiced: period: {from, to} expected", 2) end
  local s, err = load(st, id, "subscriptions.mark_invoiced")
  if not s then return nil, err end
  local col = kind == "advance" and "advance_to" or "invoiced_to"
  local res
  res, err = st.db:exec("UPDATE billing_subscriptions SET " .. col .. " = $1 WHERE id = $2 AND (" .. col ..
    " IS NULL OR " .. col .. " < $1)", period.to, id)
  if not res then return nil, err end
  return true
end

-- view(s) -> the subscription as JSON carries it (times RFC 3339)
local TIMES = { started = true, trial_ends = true, ending = true, terminated = true, canceled = true, anchor = true,
                invoiced_to = true, advance_to = true, created = true, updated = true, at = true }
function M.view(s)
  local o = V.jsonable(s, TIMES)
  for _, k in ipairs({ "trial_ends", "ending", "terminated", "canceled", "previous", "next", "external_id" }) do
    if o[k] == nil then o[k] = V.null end
  end
  return o
end

domain.default_store(M, { "get", "get_many", "list", "create", "activate", "activate_due", "upgrade", "downgrade", "terminate", "cancel",
  "history", "due", "mark_invoiced" })

return M
