-- steward.runtime.dispatch's handle_batch (gh-14): the queued events of one key reach the
-- policy together, in log order, as one run, and each is recorded handled after it; a batch
-- run that fails leaves none recorded and its events run again one at a time through
-- `handle` (the good ones handled once, the bad one parked alone); policies.check validates
-- the two fields.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local dispatch = require "steward.runtime.dispatch"
local policies = require "steward.runtime.policies"
local time = require "steward.time"
require("steward.log").set_level("error") -- the planned failures would log every retry

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())

local function wait(cond)
  local deadline = time.monotonic() + 30
  while not cond() and time.monotonic() < deadline do time.sleep(0.005) end
  return cond()
end

-- scenario(name, bad): 1 event that holds the key until released, then 40 more queued behind it.
local function scenario(name, bad)
  local hold, singles, batches, seen = true, {}, {}, {}
  local p = assert(policies.check({
    name = name, on = name .. ".*", key = function() return "one" end, batch_max = 16,
    handle = function(ev)
      while hold do time.sleep(0.002) end
      if ev.data.i == bad then error("planned failure") end
      singles[#singles + 1] = ev.data.i
      seen[#seen + 1] = ev.data.i
    end,
    handle_batch = function(list)
      local is = {}
      for i, ev in ipairs(list) do
        if ev.data.i == bad then error("planned failure in a batch") end
        is[i] = ev.data.i
      end
      batches[#batches + 1] = is
      for _, i in ipairs(is) do seen[#seen + 1] = i end
    end,
  }, name .. ".lua", name))
  local d = dispatch.new({ store = st, retry_attempts = 2, retry_base = 0.001, retry_max = 0.002 })
  d:set_policies({ [p.name] = p })
  local list = {}
  for i = 1, 41 do list[i] = { type = name .. ".ev", data = { i = i } } end
  local first = assert(events.append(st, { list[1] }))
  list[1].seq, list[1].id = first.seqs[1], first.ids[1]
  d:notify({ list[1] })
  local rest = {}
  for i = 2, 41 do rest[#rest + 1] = list[i] end
  local res = assert(events.append(st, rest))
  for i, ev in ipairs(rest) do ev.seq, ev.id = res.seqs[i], res.ids[i] end
  d:notify(rest)
  hold = false
  wait(function() return d.depth == 0 end)
  d:drain(2)
  return { d = d, p = p, list = list, singles = singles, batches = batches, seen = seen }
end

local r = scenario("batch1")
t.is(r.d.depth, 0, "every event was handled")
t.ok(#r.batches >= 3, "the queued events came in batches (" .. #r.batches .. " runs)")
local max, in_order = 0, true
for _, b in ipairs(r.batches) do if #b > max then max = #b end end
t.ok(max > 1 and max <= 16, "a batch holds several events, at most batch_max (largest " .. max .. ")")
for j = 2, #r.seen do if r.seen[j] ~= r.seen[j - 1] + 1 then in_order = false end end
t.ok(in_order and #r.seen == 41, "each event handled once, in log order (" .. #r.seen .. " handled)")
local rows = assert(st:sql("SELECT count(*) AS n FROM handled WHERE policy = $1 AND status = 'done'", r.p.name))
t.is(rows[1].n, 41, "a completion record for every event of every batch")

r = scenario("batch2", 20)
local twice, order_ok = {}, true
for _, i in ipairs(r.seen) do twice[i] = (twice[i] or 0) + 1 end
local all_once = true
for i = 1, 41 do
  if i == 20 then
    if twice[i] then all_once = false end
  elseif twice[i] ~= 1 then all_once = false end
end
for j = 2, #r.seen do if r.seen[j] < r.seen[j - 1] then order_ok = false end end
t.ok(all_once, "a failed batch: its other events handled once each, through handle")
t.ok(order_ok, "a failed batch: still in log order")
local fell = false
for _, i in ipairs(r.singles) do if i > 1 and i ~= 20 then fell = true end end
t.ok(fell, "a failed batch's events ran alone")
rows = assert(st:sql("SELECT count(*) AS n FROM dead_letters WHERE policy = $1", r.p.name))
t.is(rows[1].n, 1, "the bad event alone is parked as a dead letter")
rows = assert(st:sql("SELECT count(*) AS n FROM handled WHERE policy = $1 AND status = 'done'", r.p.name))
t.is(rows[1].n, 40, "the others are recorded done")

local _, err = policies.check({ on = "x.*", handle_batch = function() end }, "p.lua", "p")
t.like(err, "handle", "handle_batch without handle is refused")
_, err = policies.check({ on = "x.*", handle = function() end, handle_batch = 1 }, "p.lua", "p")
t.like(err, "handle_batch: must be a function", "handle_batch must be a function")
_, err = policies.check({ on = "x.*", handle = function() end, batch_max = 0 }, "p.lua", "p")
t.like(err, "batch_max: must be an integer", "batch_max is checked")

st:close()
os.remove(path)
t.done()
