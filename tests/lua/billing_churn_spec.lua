-- steward.billing.churn on a real store (PostgreSQL through STEWARD_TEST_STORE): ISO weeks,
-- a signal recorded and announced once per tenant per reason per week (and again the next
-- week), the reasons and score adding up within a week, misuse named; usage falling week over
-- week from the billing.usage events of the log; and a termination told apart as churn (no MRR
-- left) or contraction (other subscriptions go on) from the subscription history.
local t = require "steward.tap"
local events = require "steward.runtime.events"
local util = require "steward.runtime.store.util"
local churn = require "steward.billing.churn"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st, dispatched = spec.st, spec.dispatched

local function utc(y, m, d, h) return util.days_from_civil(y, m, d) * 86400 + (h or 0) * 3600 end

local function risk_events()
  local out = {}
  for _, ev in ipairs(assert(events.query(st, { type = "billing.churn_risk", limit = 1000 })).events) do
    out[#out + 1] = ev
  end
  return out
end

local function main()
  -- weeks: Monday 00:00 UTC to Monday
  local start, key = churn.week(utc(2026, 12, 13, 23))
  t.is(key, "2026-12-07", "a Sunday late is in the week of the Monday before")
  t.is(start, utc(2026, 12, 7), "... which starts at 00:00 UTC")
  t.is(select(2, churn.week(utc(2026, 12, 14))), "2026-12-14", "Monday 00:00 starts the next week")
  t.is(select(2, churn.week(0)), "1969-12-29", "the epoch (a Thursday) is in the week of Monday 1969-12-29")

  -- once per tenant per reason per week
  local now = utc(2026, 12, 8, 10)
  local a = assert(churn.signal(st, "acme", "downgrade", { now = now, detail = { plan = "lite" } }))
  t.ok(a.fresh, "a first downgrade is a fresh signal")
  t.is(a.score, 30, "... scored with the default weights")
  t.is(#dispatched, 1, "... announced at once")
  t.is(dispatched[1] and dispatched[1].type, "billing.churn_risk", "... as billing.churn_risk")
  local again = assert(churn.signal(st, "acme", "downgrade", { now = now + 3600 }))
  t.ok(not again.fresh, "the same reason in the same week is not signalled again")
  t.is(#risk_events(), 1, "... one event in the log")
  local b = assert(churn.signal(st, "acme", "payment_failed", { now = now + 7200, detail = { invoice = "INV-7" } }))
  t.ok(b.fresh, "another reason the same week is")
  t.is_deeply(b.reasons, { "downgrade", "payment_failed" }, "... and carries the week's reasons")
  t.is(b.score, 70, "... scored together: 30 + 40")
  local ev = risk_events()[2]
  t.is_deeply({ ev.tenant, ev.data.tenant, ev.data.reason, ev.data.score, ev.data.week, ev.data.detail.invoice },
    { "acme", "acme", "payment_failed", 70, "2026-12-07", "INV-7" }, "the event's data: tenant, reason, score, week, detail")
  t.is(#ev.data.reasons, 2, "... and the reasons")
  local nxt = assert(churn.signal(st, "acme", "downgrade", { now = now + 7 * 86400 }))
  t.ok(nxt.fresh, "the next week the same reason is signalled again")
  t.is_deeply(nxt.reasons, { "downgrade" }, "... with that week's reasons only")
  t.is(assert(churn.signal(st, "bolt", "churn", { now = now, weights = { churn = 100 } })).score, 100,
    "weights come from the caller (the policy's config)")
  t.is(assert(churn.signal(st, "cyan", "churn", { now = now, weights = { churn = 80, usage_drop = 50 } })).score, 80,
    "only the week's reasons count: churn alone is 80")
  local list = assert(churn.signals(st, { tenant = "acme" }))
  t.is(#list, 3, "signals(): acme's three")
  t.is(list[1].reason, "downgrade", "... newest first")
  t.is(list[3].detail.plan, "lite", "... with their detail")

  t.raises(function() churn.signal(st, "acme", "bored") end, "reason: bored", "an unknown reason is named")
  t.raises(function() churn.signal(st, nil, "churn") end, "tenant: string expected", "no tenant")
  t.raises(function() churn.signal(st, "acme", "churn", { weights = { churn = "9" } }) end, "weights%.churn",
    "a bad weight is named")
  t.ok(churn.check_weights({ usage_drop = 10 }), "check_weights: a known reason")
  t.like(select(2, churn.check_weights({ mood = 1 })), "^mood: no such reason", "check_weights: an unknown one")

  -- usage week over week, from billing.usage events in the log (acme 40 -> 10, bolt 40 -> 35, cyan 5 -> 0)
  local list_ev = {}
  local w0 = utc(2026, 11, 23) -- two weeks before Monday 12-07
  local function used(tenant, n, from)
    for i = 1, n do
      list_ev[#list_ev + 1] = { type = "billing.usage", tenant = tenant, time = from + i * 600, data = { code = "api" } }
    end
  end
  used("acme", 40, w0); used("acme", 10, w0 + 7 * 86400)
  used("bolt", 40, w0); used("bolt", 35, w0 + 7 * 86400)
  used("cyan", 5, w0)
  used("dune", 30, w0 + 14 * 86400) -- this week: not a complete week yet
  assert(events.append(st, list_ev))
  local drops = assert(churn.usage_drops(st, { now = now, drop = 30, min_events = 10 }))
  t.is(#drops, 1, "usage_drops: one tenant fell 30 % or more")
  t.is_deeply(drops[1], { tenant = "acme", previous = 40, current = 10, fall = 75, week = "2026-11-30" },
    "... acme: 40 then 10, a 75 % fall in the week of 11-30")
  t.is(#assert(churn.usage_drops(st, { now = now, drop = 10, min_events = 10 })), 2, "a 10 % threshold takes bolt too")
  t.is(#assert(churn.usage_drops(st, { now = now, drop = 30, min_events = 1 })), 2,
    "min_events 1 takes cyan (5 -> 0) in")
  t.raises(function() churn.usage_drops(st, { drop = 0 }) end, "drop:", "a drop of 0 % is refused")

  -- termination: churn or contraction, from the history
  local H = {
    { subscription = "s1", tenant = "acme", at = utc(2026, 1, 1), change = "activated", amount = "10", interval = "monthly" },
    { subscription = "s2", tenant = "acme", at = utc(2026, 1, 2), change = "activated", amount = "20", interval = "monthly" },
    { subscription = "s1", tenant = "acme", at = utc(2026, 3, 1), change = "terminated" },
    { subscription = "s2", tenant = "acme", at = utc(2026, 4, 1), change = "terminated" },
  }
  t.is(churn.termination("acme", utc(2026, 3, 1), { history = H }), "contraction", "s2 goes on: a contraction")
  t.is(churn.termination("acme", utc(2026, 4, 1), { history = H }), "churn", "the last one ends: churn")
end

spec.run(main)
