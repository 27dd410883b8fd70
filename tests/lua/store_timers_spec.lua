-- steward.runtime.store.timers and steward.runtime.store.schedules: durable timers fire exactly once (also
-- when two tasks fire them at the same moment), cron schedules fire each slot once and only
-- the latest missed slot after downtime. Store conformance suite.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local timers = require "steward.runtime.store.timers"
local schedules = require "steward.runtime.store.schedules"
local events = require "steward.runtime.events"
local task = require "steward.task"
local crypto = require "steward.crypto"
local util = require "steward.runtime.store.util"

local st, tmp = require("tests.support.test_store").open()
local run = crypto.hex(crypto.random(6))
local tenant = "t-" .. run

local function mine(list, prefix)
  local o = {}
  for _, ev in ipairs(list) do if ev.tenant == tenant and (not prefix or ev.id:find(prefix, 1, true)) then o[#o + 1] = ev end end
  return o
end

-- timers -----------------------------------------------------------------------------------
local now = 2e9 -- in the future, so timers and schedules left by other runs do not fire here
local id1 = assert(timers.after(st, "30s", { type = "timer.a", tenant = tenant, data = { k = 1 } }, { now = now }))
local id2 = assert(timers.after(st, 60, { type = "timer.b", tenant = tenant }, { now = now }))
local id3 = assert(timers.after(st, "90s", { type = "timer.c", tenant = tenant }, { now = now }))
t.ok(type(id1) == "string" and id1 ~= id2, "after returns distinct ids")
local pend = assert(timers.pending(st))
local found = 0
for _, p in ipairs(pend) do if p.id == id1 and p.due_at == now + 30 and p.event.type == "timer.a" then found = found + 1 end end
t.is(found, 1, "pending lists the timer with its due time and event")
t.ok(timers.next_due(st) <= now + 30, "next_due is at or before the earliest timer")
t.is(timers.cancel(st, id3), true, "cancel of a pending timer")
t.is(timers.cancel(st, id3), false, "cancel again is false")

t.is(#mine(assert(timers.fire_due(st, now + 29))), 0, "nothing fires before it is due")
local fired = mine(assert(timers.fire_due(st, now + 30)))
t.is(#fired, 1, "the due timer fires")
t.is(fired[1].id, "timer:" .. id1, "with the id timer:<timer id>")
t.is(fired[1].time, now + 30, "its time is the due time")
local stored = events.get(st, "timer:" .. id1)
t.ok(stored and stored.data.k == 1 and stored.type == "timer.a", "the event is in the log")
t.is(#mine(assert(timers.fire_due(st, now + 30))), 0, "a fired timer does not fire again")

-- two tasks fire the same due timers at the same time
local ids = {}
for i = 1, 20 do ids[i] = assert(timers.after(st, 100 + i, { type = "timer.race", tenant = tenant }, { now = now })) end
local results = {}
local h1 = task.spawn(function() results[1] = assert(timers.fire_due(st, now + 1000)) end)
local h2 = task.spawn(function() results[2] = assert(timers.fire_due(st, now + 1000)) end)
t.ok(h1:join() and h2:join(), "both firing tasks finish")
local count = {}
for _, list in ipairs(results) do
  for _, ev in ipairs(mine(list)) do count[ev.id] = (count[ev.id] or 0) + 1 end
end
local total, once = 0, true
for _, c in pairs(count) do total = total + 1; if c ~= 1 then once = false end end
t.is(total, 21, "every due timer fired (20 + timer.b)")
t.ok(once, "each by exactly one of the two tasks")
local q = assert(events.query(st, { tenant = tenant, type = "timer.race" }))
t.is(#q.events, 20, "and is in the log once")

t.raises(function() timers.after(st, "1s", { type = "x", id = "mine" }) end, "event.id", "an event id is refused")
t.raises(function() timers.after(st, "1s", { type = "Bad" }) end, "event.type", "an invalid event raises naming the field")
t.raises(function() timers.after(st, "soon", { type = "x" }) end, "timers.after: d", "a bad duration raises")

-- schedules --------------------------------------------------------------------------------
local P = util.parse_rfc3339
local T0 = P("2033-05-18T03:00:00Z")
local name = "s-" .. run
local next_at = assert(schedules.define(st, name, "*/10 * * * *", { type = "cron.tick", tenant = tenant }, { now = T0 + 1 }))
t.is(next_at, T0 + 600, "define computes next_at")
local found_s
for _, s in ipairs(assert(schedules.list(st))) do if s.name == name then found_s = s end end
t.ok(found_s and found_s.expr == "*/10 * * * *" and found_s.event.type == "cron.tick", "list shows the schedule")
t.is(#mine(assert(schedules.fire_due(st, T0 + 599))), 0, "nothing before the slot")
local f = mine(assert(schedules.fire_due(st, T0 + 600)))
t.is(#f, 1, "the slot fires")
t.is(f[1] and f[1].id, "cron:" .. name .. ":" .. string.format("%d", T0 + 600), "with id cron:<name>:<slot>")
t.is(#mine(assert(schedules.fire_due(st, T0 + 601))), 0, "a slot fires once")
-- down for an hour: six slots missed, only the latest fires
f = mine(assert(schedules.fire_due(st, T0 + 600 + 3600 + 5)))
t.is(#f, 1, "after downtime one event fires")
t.is(f[1] and f[1].time, T0 + 600 + 3600, "for the latest missed slot")
-- redefining with the same expression keeps next_at; a new expression recomputes it
t.is(schedules.define(st, name, "*/10 * * * *", { type = "cron.tick", tenant = tenant }, { now = T0 + 9999 }), T0 + 4800,
  "redefining unchanged keeps next_at")
t.is(schedules.define(st, name, "0 * * * *", { type = "cron.tick", tenant = tenant }, { now = T0 + 9999 }), T0 + 10800,
  "a changed expression recomputes next_at")
-- concurrent firing
local r = {}
local a1 = task.spawn(function() r[1] = assert(schedules.fire_due(st, T0 + 10800)) end)
local a2 = task.spawn(function() r[2] = assert(schedules.fire_due(st, T0 + 10800)) end)
a1:join(); a2:join()
t.is(#mine(r[1]) + #mine(r[2]), 1, "two concurrent fire_due calls fire the slot once")
t.is(schedules.remove(st, name), true, "remove")
t.is(schedules.remove(st, name), false, "remove again is false")
t.raises(function() schedules.define(st, "x", "61 * * * *", { type = "a" }) end, "minute", "a bad expression raises naming the field")
t.raises(function() schedules.define(st, "x", "0 0 30 2 *", { type = "a" }) end, "never", "an expression that never fires raises")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
