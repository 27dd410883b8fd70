-- steward.runtime.dispatch under a backlog: past `spill` queued events, entries hold only seq and id
-- and the event is read back from the log when its turn comes, so memory stays bounded; the
-- handler still sees the whole event, and one key's events still run in order.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local dispatch = require "steward.runtime.dispatch"
local policies = require "steward.runtime.policies"
local time = require "steward.time"

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())

local seen, gate = {}, true
local p = assert(policies.check({
  name = "spill.test", on = "spill.*", key = function() return "one" end,
  handle = function(ev)
    while gate do time.sleep(0.005) end -- hold the first run so the rest queue up
    seen[#seen + 1] = ev.data.n .. ":" .. ev.data.pad:sub(1, 3)
  end,
}, "spill.lua", "spill.test"))
local d = dispatch.new({ store = st, spill = 5 })
d:set_policies({ [p.name] = p })

local list = {}
for n = 1, 30 do list[n] = { type = "spill.ev", data = { n = n, pad = "abc" .. string.rep("x", 1000) } } end
local res = assert(events.append(st, list))
local fresh = {}
for i, ev in ipairs(list) do ev.seq = res.seqs[i]; ev.id = res.ids[i]; fresh[i] = ev end
d:notify(fresh)

local q = d.queues[p.name].one
local whole, stubs = 0, 0
for i = q.head, q.tail do
  if q.items[i].spilled then stubs = stubs + 1 else whole = whole + 1 end
end
t.ok(whole <= 5, "at most `spill` queued events are held whole (" .. whole .. ")")
t.ok(stubs >= 24, "the rest are queued as seq and id only (" .. stubs .. ")")
t.ok(q.items[q.tail].data == nil, "a spilled entry carries no data")

gate = false
local deadline = time.monotonic() + 10
while #seen < 30 and time.monotonic() < deadline do time.sleep(0.01) end
t.is(#seen, 30, "every event was handled")
local ordered = true
for i = 1, #seen do if seen[i] ~= i .. ":abc" then ordered = false end end
t.ok(ordered, "in order, each with its whole data read back from the log")
t.is(d.depth, 0, "nothing left queued")
d:drain(2)
st:close()
os.remove(path)
t.done()
