-- steward.billing.usage on a real store (STEWARD_TEST_STORE, default SQLite): validation per
-- event (field and index), idempotency per (subscription, transaction_id) — the same id on
-- another subscription is another event —, duplicates answered and announced, the grace
-- window (a late event inside it lands in its own period; past it the event is refused and
-- announced as billing.usage.late), the policy's record once even when run again, and query /
-- count over [from, to).
local t = require "steward.tap"
local events = require "steward.runtime.events"
local bconfig = require "steward.billing.config"

local JAN1, FEB1 = 1767225600, 1769904000
local DAY = 86400

local bs = assert(loadfile("tests/support/billing_store.lua"))()
local st = bs.st
require("steward.tenants").use(st)
local record = require "steward.tenants.record"
assert(record.insert(st, assert(record.check_new({ id = "acme", name = "Acme" })), JAN1))
local usage = require "steward.billing.usage"
local subs = require "steward.billing.subscriptions"
assert(require("steward.billing.metrics").create(st, { code = "calls", aggregation = "count" }, JAN1))
assert(require("steward.billing.metrics").create(st, { code = "gb", aggregation = "sum", field = "gb" }, JAN1))
assert(require("steward.billing.plans").create(st, { code = "pro", interval = "monthly", amount = "10" }, JAN1))
bconfig.configure({ grace_period = "2d" })
local s1 = assert(subs.create(st, { tenant = "acme", plan = "pro", started = JAN1 }, JAN1))
local s2 = assert(subs.create(st, { tenant = "acme", plan = "pro", started = JAN1 }, JAN1))

local function ev(id, sub, ts, props, code)
  return { transaction_id = id, subscription = sub, code = code or "calls", timestamp = ts, properties = props }
end
local function statuses(r)
  local out = {}
  for i, e in ipairs(r.events) do out[i] = e.status end
  return table.concat(out, ",")
end
local function logged(type_)
  local r = assert(events.query(st, { type = type_ }))
  return r.events or r
end
local function record_all(now)
  for _, e in ipairs(logged("billing.usage")) do assert(usage.record(st, e, now)) end
end

-- ---- validation ----
local bad = {
  { { { subscription = s1.id, code = "calls" } }, 1, "transaction_id", "required" },
  { { ev("a", s1.id), { transaction_id = "b", subscription = s1.id } }, 2, "code", "required" },
  { { ev("a", s1.id, "yesterday") }, 1, "timestamp", "RFC 3339" },
  { { ev("a", s1.id, nil, { gb = 0.5 }) }, 1, "properties.gb", "send it as a string" },
  { { ev("a", s1.id, nil, { nested = { x = 1 } }) }, 1, "properties.nested", "a string, an integer or a boolean" },
  { { { transaction_id = "a", subscription = s1.id, code = "calls", amount = "1" } }, 1, "amount", "unknown field" },
  { { ev("a", "sub-nope") }, 1, "subscription", "no subscription sub%-nope" },
  { { ev("a", s1.id, nil, nil, "nope") }, 1, "code", "no metric nope" },
  { { ev("a", s1.id, JAN1 - 1) }, 1, "timestamp", "before the subscription started" },
}
for _, c in ipairs(bad) do
  local r, e = usage.ingest(st, c[1], { now = JAN1 + DAY })
  t.ok(not r and e.index == c[2] and e.field == c[3] and tostring(e.reason):find(c[4]) ~= nil,
    string.format("refused: [%d] %s: %s", e and e.index or -1, e and e.field or "?", e and e.reason or "?"))
end
t.is(#logged("billing.usage"), 0, "a refused batch appends nothing")
local r = usage.ingest(st, { ev("a", s1.id) }, { tenant = "globex", now = JAN1 + DAY })
t.is(r, nil, "another tenant's subscription is refused...")
local _, e404 = usage.ingest(st, { ev("a", s1.id) }, { tenant = "globex", now = JAN1 + DAY })
t.ok(e404.status == 404 and e404.field == "subscription", "... as not found (404)")

-- ---- idempotency ----
r = assert(usage.ingest(st, { ev("t1", s1.id, JAN1 + 3600), ev("t2", s1.id, JAN1 + 7200, { gb = "1.25" }, "gb"),
  ev("t1", s1.id, JAN1 + 3600), ev("t1", s2.id, JAN1 + 3600) }, { now = JAN1 + DAY }))
t.is(statuses(r), "accepted,accepted,duplicate,accepted", "t1 twice on a subscription: a duplicate; on another: an event")
t.ok(r.accepted == 3 and r.duplicates == 1, "counts: 3 accepted, 1 duplicate")
t.is(#logged("billing.usage"), 3, "three billing.usage events in the log")
t.is(#logged("billing.usage.duplicate"), 1, "the duplicate announced")
r = assert(usage.ingest(st, { ev("t1", s1.id, JAN1 + 3600) }, { now = JAN1 + DAY }))
t.is(statuses(r), "duplicate", "sent again before the policy recorded it: a duplicate (the log has it)")
record_all(JAN1 + DAY)
t.is(usage.count(st, { subscription = s1.id }), 2, "recorded: two for s1")
t.is(usage.count(st, { subscription = s2.id }), 1, "one for s2")
local list = usage.query(st, { subscription = s1.id, code = "gb", from = JAN1, to = FEB1 })
t.ok(#list == 1 and list[1].properties.gb == "1.25" and list[1].timestamp == JAN1 + 7200 and list[1].transaction_id == "t2",
  "query: the event with its timestamp and properties (amounts as strings)")
record_all(JAN1 + DAY)
t.is(usage.count(st, { subscription = s1.id }), 2, "the policy run again (after a crash) records nothing twice")
t.is(#logged("billing.usage.duplicate"), 2, "and announces no duplicate for its own event")
r = assert(usage.ingest(st, { ev("t1", s1.id, JAN1 + 5 * DAY, { corrected = true }) }, { now = JAN1 + 6 * DAY }))
t.is(statuses(r), "duplicate", "a correction with a recorded id: a duplicate, not applied")
t.is(usage.query(st, { subscription = s1.id, code = "calls" })[1].timestamp, JAN1 + 3600, "the first version stands")
-- an event that reached the log another way (POST /v1/events) with a known id
local other = { id = "other-1", type = "billing.usage", time = JAN1 + DAY, data = ev("t1", s1.id, JAN1 + 3600) }
t.is(usage.record(st, other, JAN1 + DAY), "duplicate", "record: a known id from another event is a duplicate")

-- ---- grace window ----
r = assert(usage.ingest(st, { ev("late-ok", s1.id, FEB1 - 60) }, { now = FEB1 + DAY }))
t.is(statuses(r), "accepted", "a January event one day into February (grace 2d): accepted")
record_all(FEB1 + DAY)
t.is(usage.count(st, { subscription = s1.id, from = JAN1, to = FEB1 }), 3, "... and it lands in January")
r = assert(usage.ingest(st, { ev("too-late", s1.id, FEB1 - 60), ev("fine", s1.id, FEB1 + 60) }, { now = FEB1 + 2 * DAY }))
t.is(statuses(r), "late,accepted", "past the grace window: refused as late; February's is fine")
t.ok(r.late == 1 and r.events[1].reason:find("grace_period"), "the answer says why")
local lates = logged("billing.usage.late")
t.ok(#lates == 1 and lates[1].data.transaction_id == "too-late", "announced as billing.usage.late")
record_all(FEB1 + 2 * DAY)
t.is(usage.count(st, { subscription = s1.id, from = JAN1, to = FEB1 }), 3, "never recorded")
-- acknowledged in time, handled late (a backlog, a restart): judged by when it was received
local backlog = { id = "bk", type = "billing.usage", time = FEB1 + DAY, source = "steward.billing.usage",
                  data = ev("backlog", s1.id, FEB1 - 60) }
t.is(usage.record(st, backlog, FEB1 + 10 * DAY), "recorded", "acknowledged inside the window: recorded even if handled after")
local direct = { id = "direct", type = "billing.usage", time = FEB1 + 5 * DAY, data = ev("direct", s1.id, FEB1 - 60) }
t.is(usage.record(st, direct, FEB1 + 5 * DAY), "late", "received past the window by another route: late, not recorded")

-- by external_id: an upgrade hands it on, and each event goes to the subscription of its time
local e1 = assert(subs.create(st, { tenant = "acme", plan = "pro", started = FEB1, external_id = "acme-main" }, FEB1))
local e2 = assert(subs.upgrade(st, e1.id, "pro", FEB1 + 10 * DAY))
r = assert(usage.ingest(st, { ev("x1", "acme-main", FEB1 + 9 * DAY), ev("x2", "acme-main", FEB1 + 11 * DAY) },
  { now = FEB1 + 12 * DAY }))
t.ok(statuses(r) == "accepted,accepted" and r.events[1].subscription == e1.id and r.events[2].subscription == e2.id,
  "events sent to an external_id land on the subscription running at their time, across an upgrade")
r = assert(usage.ingest(st, { ev("x1", e1.id, FEB1 + 9 * DAY) }, { now = FEB1 + 12 * DAY }))
t.is(statuses(r), "duplicate", "idempotency is per subscription, whichever name the event used")
t.raises(function() usage.query(st, {}) end, "usage.query: subscription: string expected", "misuse raises naming the argument")
bconfig.configure(nil)
bs.close()
t.done()
