-- steward.runtime.dispatch's queues as a property: for many (events, keys, runners) shapes, with
-- handlers that fail and retry and some that never succeed, every event is handled exactly
-- once (or parked once as a dead letter), one key's events run in log order, nothing stays
-- queued, and every per-key queue is freed once it empties.
-- Pins gh-13.1: with more keys than runners, the ready list (a table with holes read with #)
-- dropped keys, so acknowledged events stayed queued for ever.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local dispatch = require "steward.runtime.dispatch"
local policies = require "steward.runtime.policies"
local time = require "steward.time"
require("steward.log").set_level("error") -- the planned failures would log every retry

local seed = tonumber(os.getenv("DISPATCH_SEED")) or os.time()
math.randomseed(seed)
t.diag("seed " .. seed .. " (DISPATCH_SEED=" .. seed .. " replays it)")

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())

local shapes = {
  { n = 300, keys = 300, cap = 256 },  -- the issue's reproduction: more keys than runners
  { n = 1000, keys = 1000, cap = 256 },
  { n = 200, keys = 50, cap = 3 },
  { n = 200, keys = 7, cap = 2 },
  { n = 150, keys = 1, cap = 4 },
  { n = 400, keys = 120, cap = 16 },
  { n = 64, keys = 64, cap = 1 },
}

local round = 0
for _, shape in ipairs(shapes) do
  round = round + 1
  local prefix = "q" .. round
  local ok_runs, attempts, order = {}, {}, {}
  local p = assert(policies.check({
    name = prefix .. ".test", on = prefix .. ".*", key = function(ev) return ev.data.k end,
    handle = function(ev)
      local id = ev.id
      attempts[id] = (attempts[id] or 0) + 1
      if math.random() < 0.3 then time.sleep(0) end -- interleave runners
      if ev.data.fail == "always" or attempts[id] <= ev.data.fail then error("planned failure") end
      ok_runs[id] = (ok_runs[id] or 0) + 1
      local o = order[ev.data.k] or {}
      order[ev.data.k] = o
      o[#o + 1] = ev.data.i
    end,
  }, prefix .. ".lua", prefix .. ".test"))
  local d = dispatch.new({ store = st, concurrency = shape.cap, retry_attempts = 3,
                           retry_base = 0.001, retry_max = 0.004 })
  d:set_policies({ [p.name] = p })

  local list, fails = {}, {}
  for i = 1, shape.n do
    local r = math.random()
    local fail = r < 0.05 and "always" or (r < 0.2 and 1 or (r < 0.25 and 2 or 0))
    fails[i] = fail
    list[i] = { type = prefix .. ".ev", data = { k = "k" .. math.random(shape.keys), i = i, fail = fail } }
  end
  -- Delivered in a few batches, as the HTTP API's commits deliver them.
  local at = 1
  while at <= shape.n do
    local batch = {}
    for i = at, math.min(shape.n, at + math.random(1, 100) - 1) do batch[#batch + 1] = list[i] end
    local res = assert(events.append(st, batch))
    for i, ev in ipairs(batch) do ev.seq = res.seqs[i]; ev.id = res.ids[i] end
    d:notify(batch)
    at = at + #batch
  end

  local deadline = time.monotonic() + 60
  while d.depth > 0 and time.monotonic() < deadline do time.sleep(0.01) end
  local what = string.format("%d events over %d keys, %d runners", shape.n, shape.keys, shape.cap)
  t.is(d.depth, 0, what .. ": nothing left queued")

  local once, missing, twice, dead_ran = true, 0, 0, 0
  local want_dead = 0
  for i, ev in ipairs(list) do
    local runs = ok_runs[ev.id] or 0
    if fails[i] == "always" then
      want_dead = want_dead + 1
      if runs ~= 0 then dead_ran = dead_ran + 1 end
    elseif runs == 0 then missing = missing + 1; once = false
    elseif runs > 1 then twice = twice + 1; once = false end
  end
  t.ok(once, what .. ": every event handled exactly once (missing " .. missing .. ", twice " .. twice .. ")")
  t.is(dead_ran, 0, what .. ": no always-failing event counted as handled")
  local rows = assert(st:sql("SELECT count(*) AS n FROM dead_letters WHERE policy = $1", p.name))
  t.is(rows[1].n, want_dead, what .. ": each always-failing event parked once as a dead letter")

  local in_order = true
  for _, o in pairs(order) do
    for j = 2, #o do if o[j] < o[j - 1] then in_order = false end end
  end
  t.ok(in_order, what .. ": each key's events in log order")
  t.is(next(d.queues[p.name]), nil, what .. ": every per-key queue freed once empty")
  t.is(d:stats().ready, 0, what .. ": the ready list is empty")
  d:drain(2)
end

st:close()
os.remove(path)
t.done()
