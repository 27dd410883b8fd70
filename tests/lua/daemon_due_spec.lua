-- steward.runtime.daemon.due: the daemon's background tick turns due durable timers AND cron
-- schedules into events (regression: the tick called the cron parser module, which has no
-- fire_due, so schedules never fired in the daemon).
local t = require "steward.tap"
local due = require "steward.runtime.daemon.due"
local timers = require "steward.runtime.store.timers"
local schedules = require "steward.runtime.store.schedules"
local st, tmp = require("tests.support.test_store").open()

local now = 1800000000 -- 2027-01-15T08:00:00Z, a whole minute
assert(timers.after(st, 10, { type = "due.timer" }, { now = now }))
assert(schedules.define(st, "due-every-minute", "* * * * *", { type = "due.cron" }, { now = now }))

local fired = due.fire(st, now + 5)
t.is(#fired, 0, "nothing is due before its time")
fired = due.fire(st, now + 61)
local types = {}
for _, ev in ipairs(fired) do types[#types + 1] = ev.type end
table.sort(types)
t.is(table.concat(types, ","), "due.cron,due.timer", "a due timer and a due cron schedule both fire")
local with_seq = true
for _, ev in ipairs(fired) do with_seq = with_seq and type(ev.seq) == "number" end
t.ok(with_seq, "each fired event carries its seq, ready to dispatch")
t.is(#due.fire(st, now + 61), 0, "a second tick at the same time fires nothing again")
st:close()
if tmp then os.remove(tmp) end
t.done()
