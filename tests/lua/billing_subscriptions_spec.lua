-- steward.billing.subscriptions on a real store (STEWARD_TEST_STORE, default an SQLite file;
-- tests/e2e/billing_subscriptions_pg.t runs it on PostgreSQL): pending -> active on the durable
-- timer armed with the creation (surviving a close and reopen of the store), trials, upgrade now
-- (the old one terminated now, the new one started now on the same anchor), downgrade at the
-- period's end (a pending subscription, which ends the old one when it starts), terminate,
-- cancel, the history MRR reads, and due(now): the periods still to invoice — calendar and
-- anniversary, in arrears, in advance, and the final partial one.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local timers = require "steward.runtime.store.timers"

local JAN1, FEB1, MAR1, APR1 = 1767225600, 1769904000, 1772323200, 1775001600
local DAY = 86400

local bs = assert(loadfile("tests/support/billing_store.lua"))()
local url, st = bs.url, bs.st
require("steward.tenants").use(st)
local record = require "steward.tenants.record"
for _, id in ipairs({ "acme", "globex", "initech" }) do
  assert(record.insert(st, assert(record.check_new({ id = id, name = id })), JAN1))
end

local plans = require "steward.billing.plans"
local subs = require "steward.billing.subscriptions"
local metrics = require "steward.billing.metrics"

assert(metrics.create(st, { code = "api_calls", aggregation = "count" }, JAN1))
assert(plans.create(st, { code = "basic", interval = "monthly", amount = "10" }, JAN1))
assert(plans.create(st, { code = "pro", interval = "monthly", amount = "49.90", trial_days = 14 }, JAN1))
assert(plans.create(st, { code = "team", interval = "monthly", amount = "99", pay_in_advance = true }, JAN1))

local function kinds(list)
  local out = {}
  for i, h in ipairs(list) do out[i] = h.change end
  return table.concat(out, ",")
end
local function logged(type_)
  local r = assert(events.query(st, { type = type_ }))
  return r.events or r
end

-- ---- pending -> active on the durable timer ----
local s = assert(subs.create(st, { tenant = "acme", plan = "basic", started = FEB1 }, JAN1 + DAY))
t.is(s.state, "pending", "a subscription dated later is pending")
local pend = assert(timers.pending(st))
t.ok(#pend == 1 and pend[1].due_at == FEB1 and pend[1].event.type == "billing.subscription.timer"
  and pend[1].event.data.subscription == s.id, "its start timer is armed for the start, with the creation")
t.is(subs.activate(st, s.id, FEB1 - 1), false, "activate before the start changes nothing")

-- a restart in between: the store closed and opened again keeps the timer
if url:match("^sqlite:") then
  st:close()
  st = assert(store.open(url))
  store.set_default(st)
  require("steward.tenants").use(st)
end
local fired = assert(timers.fire_due(st, FEB1))
t.ok(#fired == 1 and fired[1].type == "billing.subscription.timer", "after a reopen of the store, the timer fires at the start")
local a = assert(subs.activate(st, s.id, FEB1))
t.is(a.state, "active", "the timer's handler activates it")
t.is(subs.activate(st, s.id, FEB1), false, "a second activation (a handler run again) changes nothing")
t.is(subs.get(st, s.id).state, "active", "stored active")
t.is(kinds(subs.history(st, { subscription = s.id })), "created,activated", "history: created, then activated at the start")
t.is(#logged("billing.subscription.activated"), 1, "one billing.subscription.activated event")

-- ---- trials, validation ----
local p = assert(subs.create(st, { tenant = "globex", plan = "pro", started = JAN1 + 10 * DAY, billing_time = "anniversary" },
  JAN1 + 10 * DAY))
t.is(p.state, "active", "started now: active at once")
t.is(p.trial_ends, JAN1 + 24 * DAY, "trial_ends: the plan's 14 trial days after the start")
local _, err = subs.create(st, { tenant = "globex", plan = "nope" })
t.is(err, "plan: no plan nope", "an unknown plan is refused naming the field")
_, err = subs.create(st, { tenant = "nobody", plan = "basic" })
t.is(err, "tenant: no tenant nobody", "an unknown tenant is refused naming the field")
_, err = subs.create(st, { tenant = "globex", plan = "basic", billing_time = "weekly" })
t.is(err, "billing_time: calendar or anniversary expected", "a bad billing_time is refused naming the field")
_, err = subs.create(st, { tenant = "globex", plan = "basic", colour = "red" })
t.like(err, "^colour: unknown field", "an unknown field is refused naming it")

-- ---- upgrade now ----
local up = assert(subs.upgrade(st, p.id, "team", JAN1 + 20 * DAY))
local old = subs.get(st, p.id)
t.ok(old.state == "terminated" and old.terminated == JAN1 + 20 * DAY and old.next == up.id,
  "upgrade: the old subscription terminates now, pointing at the new one")
t.ok(up.state == "active" and up.started == JAN1 + 20 * DAY and up.previous == p.id and up.anchor == p.anchor
  and up.plan == "team", "the new one starts now on the same anchor, pointing back")
local h = subs.history(st, { subscription = up.id })
t.ok(h[2].change == "upgraded" and h[2].previous_plan == "pro" and tostring(h[2].amount) == "99",
  "history: upgraded from pro, at the new plan's fee")
_, err = subs.upgrade(st, p.id, "team")
t.like(err, "^invalid: the subscription is terminated", "a terminated subscription cannot be upgraded")

-- ---- downgrade at the period's end ----
local down = assert(subs.downgrade(st, s.id, "basic", FEB1 + 5 * DAY))
t.ok(down.state == "pending" and down.started == MAR1 and down.previous == s.id,
  "downgrade: a pending subscription starting at the end of the current (calendar) period")
t.ok(subs.get(st, s.id).next == down.id and subs.get(st, s.id).ending == MAR1, "the current one knows its end and its successor")
local down2 = assert(subs.downgrade(st, s.id, "basic", FEB1 + 6 * DAY))
t.is(subs.get(st, down.id).state, "canceled", "a second downgrade replaces the first (canceled)")
local ids = {}
for _, x in ipairs(assert(timers.pending(st))) do ids[#ids + 1] = x.event.data.subscription end
t.is(table.concat(ids, ","), down2.id, "only the replacement's start timer is left")
assert(timers.fire_due(st, MAR1))
assert(subs.activate(st, down2.id, MAR1))
local ended = subs.get(st, s.id)
t.ok(ended.state == "terminated" and ended.terminated == MAR1, "at the period's end the old one terminates...")
t.is(subs.get(st, down2.id).state, "active", "... and the downgrade starts")
t.is(kinds(subs.history(st, { subscription = down2.id })), "created,downgraded", "history: downgraded (not a churn)")
t.is(#subs.history(st, { subscription = s.id, from = MAR1 }), 0, "the replaced subscription's end is no churn row")

-- ---- cancel, terminate, reactivate ----
local later = assert(subs.create(st, { tenant = "initech", plan = "basic", started = APR1 }, MAR1))
local c = assert(subs.cancel(st, later.id, MAR1 + DAY))
t.is(c.state, "canceled", "a pending subscription is canceled")
t.is(#assert(timers.pending(st)), 0, "its start timer is gone")
_, err = subs.cancel(st, down2.id)
t.like(err, "^invalid: the subscription is active, not pending", "an active subscription is not canceled (terminate it)")
local term = assert(subs.terminate(st, down2.id, MAR1 + 9 * DAY))
t.ok(term.state == "terminated" and term.terminated == MAR1 + 9 * DAY, "terminate: now")
t.is(#logged("billing.subscription.terminated"), 1, "a billing.subscription.terminated event")
local back = assert(subs.create(st, { tenant = "acme", plan = "basic" }, MAR1 + 20 * DAY))
t.is(kinds(subs.history(st, { subscription = back.id })), "created,reactivated", "a tenant that churned and returns: reactivated")
assert(subs.terminate(st, back.id, MAR1 + 21 * DAY))

-- ---- history for MRR ----
local all = subs.history(st, { from = FEB1, to = MAR1 + 10 * DAY })
local seen = {}
for _, x in ipairs(all) do seen[#seen + 1] = x.change end
t.is(table.concat(seen, ","), "activated,created,created,created,downgraded,canceled,terminated",
  "history{from, to}: every change in [from, to), in time order")
t.is(kinds(subs.history(st, { tenant = "initech" })), "created,canceled", "history{tenant}: one tenant's")
t.ok(all[1].interval == "monthly" and all[1].currency == "USD" and tostring(all[1].amount) == "10",
  "each row carries the plan's fee, currency and interval")

-- ---- due: the periods still to invoice ----
local q = assert(subs.create(st, { tenant = "globex", plan = "basic", started = JAN1 + 14 * DAY }, JAN1 + 14 * DAY))
local anniv = assert(subs.create(st, { tenant = "initech", plan = "basic", started = JAN1 + 14 * DAY,
  billing_time = "anniversary" }, JAN1 + 14 * DAY))
local function due_of(id, now)
  local out = {}
  for _, d in ipairs(assert(subs.due(st, now))) do
    if d.subscription == id then out[#out + 1] = string.format("%s:%d-%d", d.kind, d.period.from, d.period.to) end
  end
  return table.concat(out, " ")
end
t.is(due_of(q.id, MAR1 + 4 * DAY), string.format("arrears:%d-%d arrears:%d-%d", JAN1 + 14 * DAY, FEB1, FEB1, MAR1),
  "calendar: the partial first month from the start, then February")
t.is(due_of(anniv.id, MAR1 + 20 * DAY), string.format("arrears:%d-%d arrears:%d-%d", JAN1 + 14 * DAY, FEB1 + 14 * DAY,
  FEB1 + 14 * DAY, MAR1 + 14 * DAY), "anniversary: from the 15th to the 15th")
assert(subs.mark_invoiced(st, q.id, { from = JAN1 + 14 * DAY, to = FEB1 }, "arrears"))
t.is(due_of(q.id, MAR1 + 4 * DAY), string.format("arrears:%d-%d", FEB1, MAR1), "a period marked invoiced is due no more")
assert(subs.mark_invoiced(st, q.id, { from = FEB1, to = MAR1 }, "arrears"))
t.is(due_of(q.id, MAR1 + 4 * DAY), "", "nothing due mid-period once the past ones are invoiced")
assert(subs.terminate(st, q.id, MAR1 + 9 * DAY))
t.is(due_of(q.id, MAR1 + 10 * DAY), string.format("final:%d-%d", MAR1, MAR1 + 9 * DAY),
  "terminated: the last, partial period is due at once (final)")
local adv = assert(subs.create(st, { tenant = "globex", plan = "team", started = MAR1 }, MAR1))
t.is(due_of(adv.id, MAR1 + DAY), string.format("advance:%d-%d", MAR1, APR1), "paid in advance: the current period from its start")
assert(subs.mark_invoiced(st, adv.id, { from = MAR1, to = APR1 }, "advance"))
t.is(due_of(adv.id, APR1 + DAY), string.format("arrears:%d-%d advance:%d-%d", MAR1, APR1, APR1, APR1 + 30 * DAY),
  "next period: March's usage in arrears and April's fee in advance")

-- ---- concurrent changes: one applies ----
local r1 = assert(subs.create(st, { tenant = "globex", plan = "basic" }, APR1))
local stale = subs.get(st, r1.id)
assert(subs.downgrade(st, r1.id, "basic", APR1 + DAY))
local stmt_ok, why = subs.upgrade(st, stale.id, "team", APR1 + DAY) -- reads afresh: still active, applies
t.ok(stmt_ok and not why, "an upgrade after a downgrade applies and cancels the pending downgrade")
t.is(#assert(subs.list(st, { tenant = "globex", state = "pending" })), 0, "no pending downgrade left")

-- five upgrades of one subscription at once: one applies, the others are conflicts that
-- leave nothing behind (no second subscription, no history row, no event)
local task = require "steward.task"
local r2 = assert(subs.create(st, { tenant = "initech", plan = "basic" }, APR1))
local results, running = {}, {}
for i = 1, 5 do
  running[i] = task.spawn(function()
    local n, e = subs.upgrade(st, r2.id, "team", APR1 + DAY)
    results[i] = n and "ok" or tostring(e)
  end)
end
for i = 1, 5 do running[i]:join() end
local oks, conflicts = 0, 0
for _, x in ipairs(results) do
  -- a loser that read before the winner wrote is a conflict; one that read after, invalid
  if x == "ok" then oks = oks + 1 elseif x:match("^conflict") or x:match("^invalid: the subscription is terminated") then
    conflicts = conflicts + 1
  end
end
t.ok(oks == 1 and conflicts == 4, "five concurrent upgrades: one applies, four are refused (" .. table.concat(results, "; ") .. ")")
local made = 0
for _, x in ipairs(assert(subs.list(st, { tenant = "initech" }))) do if x.previous == r2.id then made = made + 1 end end
t.is(made, 1, "one replacement subscription, not five")
t.is(#subs.history(st, { tenant = "initech", from = APR1 + DAY }), 2, "its two history rows only (created, upgraded)")

t.raises(function() subs.get(st, 42) end, "subscriptions.get: id: string expected", "misuse raises naming the argument")

bs.close(st)
t.done()
