-- steward.billing.usage.record_many on a real store (STEWARD_TEST_STORE, default SQLite): a
-- batch of events gives the same outcomes, the same billing_usage rows and the same
-- billing.usage.duplicate / .late announcements as the same events recorded one by one — with
-- a duplicate inside the batch, the same event twice, a late one, an invalid one, and a replay
-- of the whole batch (after a crash: recorded again, nothing twice) — in one store batch and
-- one events.append; a store error leaves nothing behind.
local t = require "steward.tap"
local events = require "steward.runtime.events"
local bconfig = require "steward.billing.config"

local JAN1, FEB1 = 1767225600, 1769904000
local DAY = 86400
local SOURCE = "steward.billing.usage"

local bs = assert(loadfile("tests/support/billing_store.lua"))()
local st = bs.st
require("steward.tenants").use(st)
local record = require "steward.tenants.record"
assert(record.insert(st, assert(record.check_new({ id = "acme", name = "Acme" })), JAN1))
local usage = require "steward.billing.usage"
local subs = require "steward.billing.subscriptions"
assert(require("steward.billing.metrics").create(st, { code = "calls", aggregation = "count" }, JAN1))
assert(require("steward.billing.plans").create(st, { code = "pro", interval = "monthly", amount = "10" }, JAN1))
bconfig.configure({ grace_period = "2d" })
-- one subscription recorded one by one, one in batches: the same events on each
local one = assert(subs.create(st, { tenant = "acme", plan = "pro", started = JAN1 }, JAN1))
local many = assert(subs.create(st, { tenant = "acme", plan = "pro", started = JAN1 }, JAN1))

-- the events of a subscription, their ids prefixed by a tag (stripped when comparing)
local function batch(tag, sub)
  local function ev(id, tx, opts)
    opts = opts or {}
    return { id = tag .. id, type = "billing.usage", tenant = "acme", time = opts.time or JAN1 + DAY,
             source = opts.source or SOURCE,
             data = { transaction_id = tx, subscription = sub.id, code = opts.code or "calls",
                      timestamp = opts.ts or JAN1 + 3600, properties = { n = tx } } }
  end
  return {
    ev("e1", "t1"),
    ev("e2", "t2", { ts = JAN1 + 7200 }),
    ev("e3", "t1"),                                                  -- another event, a known id: a duplicate
    ev("e1", "t1"),                                                  -- the same event again: recorded
    ev("e4", "t4", { time = FEB1 + 5 * DAY, source = "elsewhere" }), -- received past the grace window: late
    ev("e5", "t5", { code = "nope" }),                               -- refused: no such metric
    ev("e6", "t6", { ts = JAN1 + 3 * DAY }),
    ev("e7", "t2"),                                                  -- a duplicate of an earlier one
  }
end

-- an outcome as text; " sub" when it names the subscription the event was for
local function show(o, sub)
  if o.err then return "err " .. o.err end
  return o.outcome .. (o.subscription == sub.id and " sub" or o.subscription and " another subscription" or "")
end
local function singles(list, now)
  local out = {}
  for i, ev in ipairs(list) do
    local outcome, x = usage.record(st, ev, now)
    out[i] = show(outcome and { outcome = outcome, subscription = x } or { err = x }, one)
  end
  return table.concat(out, ",")
end
local function batched(list, now)
  local res = assert(usage.record_many(st, list, now))
  local out = {}
  for i = 1, #list do out[i] = show(res[i], many) end
  return table.concat(out, ",")
end
local function rows(sub, tag)
  local r = assert(st.db:query("SELECT transaction_id, tenant, code, happened, properties, received, event_id " ..
    "FROM billing_usage WHERE subscription = $1 ORDER BY transaction_id", sub.id))
  local out = {}
  for i, x in ipairs(r) do
    out[i] = table.concat({ x.transaction_id, x.tenant, x.code, tostring(x.happened), x.properties, tostring(x.received),
      (x.event_id:gsub("^" .. tag, "")) }, "|")
  end
  return table.concat(out, "\n")
end
local function announced(sub, tag)
  local out = {}
  for _, type_ in ipairs({ "billing.usage.duplicate", "billing.usage.late" }) do
    local r = assert(events.query(st, { type = type_ }))
    for _, e in ipairs(r.events or r) do
      if e.data.subscription == sub.id then
        out[#out + 1] = table.concat({ e.type, (e.id:gsub(":" .. tag, ":")), e.data.transaction_id,
          (tostring(e.data.event):gsub("^" .. tag, "")), tostring(e.time), e.source }, "|")
      end
    end
  end
  return table.concat(out, "\n")
end

local NOW = JAN1 + DAY
local a = singles(batch("A", one), NOW)
-- the store's connection seen through a table that counts (or fails) its batches
local real_db = st.db
local function spy(batch_fn)
  return setmetatable({ batch = function(_, stmts) return batch_fn(stmts) end },
    { __index = function(_, k) return function(_, ...) return real_db[k](real_db, ...) end end })
end
local db_batches, appends = 0, 0
local real_append = events.append
st.db = spy(function(stmts)
  -- the batches that write usage rows (events.append writes the announcements in its own)
  for _, x in ipairs(stmts) do
    if tostring(x[1]):find("INSERT INTO billing_usage ", 1, true) then db_batches = db_batches + 1; break end
  end
  return real_db:batch(stmts)
end)
events.append = function(...) appends = appends + 1; return real_append(...) end
local b = batched(batch("B", many), NOW)
st.db, events.append = real_db, real_append
t.is(b, a, "a batch: the outcomes of the events recorded one by one")
t.is(a, "recorded sub,recorded sub,duplicate,recorded sub,late,err invalid: code: no metric nope,recorded sub,duplicate",
  "... which are: recorded, recorded, duplicate, the same event again recorded, late, refused, recorded, duplicate")
t.is(db_batches, 1, "the batch's rows written in one store batch (one transaction)")
t.is(appends, 1, "its duplicates and late events announced in one append")
t.is(rows(many, "B"), rows(one, "A"), "the same rows")
t.like(rows(many, "B"), "^t1|[^\n]*|e1\nt2|[^\n]*|e2\nt6|[^\n]*|e6$", "three rows: t1 (of e1), t2 (of e2), t6")
t.is(announced(many, "B"), announced(one, "A"), "the same announcements, in the same order")
t.like(announced(many, "B"), "duplicate|billing.usage.duplicate:e3|t1", "the duplicate inside the batch announced")

-- a replay of the whole batch (the dispatcher after a crash): recorded again, nothing twice
local NOW2 = JAN1 + 2 * DAY
a = singles(batch("A", one), NOW2)
b = batched(batch("B", many), NOW2)
t.is(b, a, "replayed: the outcomes of a replay one by one")
t.is(a, "recorded sub,recorded sub,duplicate,recorded sub,late,err invalid: code: no metric nope,recorded sub,duplicate",
  "... each event of its own recorded again, the duplicates still duplicates")
t.is(rows(many, "B"), rows(one, "A"), "replayed: the same rows, none twice")
t.is(announced(many, "B"), announced(one, "A"), "replayed: the same announcements")

-- a store error: nothing recorded, nothing announced, so the dispatcher can run each event alone
local before_rows, before_ann = rows(many, "B"), announced(many, "B")
st.db = spy(function() return nil, "disk I/O error" end)
local fresh = batch("C", many)
for _, ev in ipairs(fresh) do ev.data.transaction_id = "c-" .. ev.data.transaction_id end
local res, err = usage.record_many(st, fresh, NOW2)
st.db = real_db
t.ok(res == nil and err == "disk I/O error", "a store error: nil and the store's error")
t.is(rows(many, "B"), before_rows, "... nothing recorded")
t.is(announced(many, "B"), before_ann, "... nothing announced (not even the late one)")

-- record is record_many of one, and misuse raises naming the argument
t.is(usage.record_many(st, {}, NOW2) and #usage.record_many(st, {}, NOW2), 0, "an empty batch: no outcomes")
t.raises(function() usage.record_many(st, "x") end, "usage.record_many: events: a list", "misuse: events")
t.raises(function() usage.record_many(st, { {} }) end, "usage.record_many: events%[1%]", "misuse: an element")
t.raises(function() usage.record(st, {}) end, "usage.record: ev:", "misuse: record's event")
bconfig.configure(nil)
bs.close()
t.done()
