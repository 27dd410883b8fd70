-- The dispatcher shares its runners among tenants (steward.tenants.fairness in
-- steward.runtime.dispatch): a tenant that floods the queue with thousands of keys, or one key
-- with thousands of events, does not make another tenant's events wait behind all of them;
-- weights (queue_share) divide the runners; one key's events still run in log order.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local dispatch = require "steward.runtime.dispatch"
local policies = require "steward.runtime.policies"
local time = require "steward.time"
require("steward.log").set_level("error")

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())

local round = 0
-- run{key, cap, weight, batches = {{tenant, n}, ...}} -> the handled events in handling order
local function run(o)
  round = round + 1
  local prefix = "f" .. round
  local handled = {}
  local p = assert(policies.check({
    name = prefix .. ".test", on = prefix .. ".*", key = o.key,
    handle = function(ev)
      time.sleep(0.001) -- a handler that waits holds its runner, as real ones do
      handled[#handled + 1] = { tenant = ev.tenant, i = ev.data.i }
    end,
  }, prefix .. ".lua", prefix .. ".test"))
  local d = dispatch.new({ store = st, concurrency = o.cap, tenant_weight = o.weight })
  d:set_policies({ [p.name] = p })
  for _, b in ipairs(o.batches) do
    local list = {}
    for i = 1, b[2] do list[i] = { type = prefix .. ".ev", tenant = b[1], data = { i = i } } end
    local res = assert(events.append(st, list))
    for i, ev in ipairs(list) do ev.seq = res.seqs[i]; ev.id = res.ids[i] end
    d:notify(list)
    handled[#handled + 1] = { tenant = "queued:" .. b[1] } -- what ran before this was queued does not count
  end
  local deadline = time.monotonic() + 60
  while d.depth > 0 and time.monotonic() < deadline do time.sleep(0.005) end
  t.is(d.depth, 0, prefix .. ": everything handled")
  d:drain(2)
  return handled
end

-- How many events were handled from the moment tenant's batch was queued until its last one.
local function last_position(handled, tenant)
  local from, last = nil, nil
  for pos, h in ipairs(handled) do
    if h.tenant == "queued:" .. tenant then from = pos end
    if h.tenant == tenant then last = pos end
  end
  local n = 0
  for pos = (from or 0) + 1, last or 0 do if handled[pos].i then n = n + 1 end end
  return last and n
end

-- 1. Many keys (key = event id): 300 noisy keys queued before 3 quiet ones, 2 runners.
local h = run({ key = function(ev) return ev.id end, cap = 2, batches = { { "noisy", 300 }, { "quiet", 3 } } })
local pos = last_position(h, "quiet")
t.ok(pos and pos <= 12, "many keys: once queued, the quiet tenant's 3 events are done within 12 handlings, not behind ~300 ("  .. tostring(pos) .. ")")

-- 2. One key per tenant (the default key), one runner: the noisy key does not keep it.
h = run({ key = function(ev) return ev.tenant end, cap = 1, batches = { { "noisy", 300 }, { "quiet", 3 } } })
pos = last_position(h, "quiet")
t.ok(pos and pos <= 12, "one runner, one key each: once queued, the quiet tenant is done within 12 handlings ("  .. tostring(pos) .. ")")
local order_ok = true
local seen = {}
for _, x in ipairs(h) do
  if not x.i then goto next end
  if seen[x.tenant] and x.i ~= seen[x.tenant] + 1 then order_ok = false end
  seen[x.tenant] = x.i
  ::next::
end
t.ok(order_ok and seen.noisy == 300 and seen.quiet == 3, "and each key's events ran in log order, each once")

-- 3. Weights: gold (queue_share 3) against basic (1), both flooding, many keys, 1 runner.
h = run({ key = function(ev) return ev.id end, cap = 1,
  weight = function(tenant) return tenant == "gold" and 3 or 1 end,
  batches = { { "basic", 200 }, { "gold", 200 } } })
local count = { gold = 0, basic = 0 }
-- Counted from when both wait (gold's batch queued) over the next 80 handlings.
local from
for i, x in ipairs(h) do if x.tenant == "queued:gold" then from = i end end
local seen80 = 0
for i = from + 1, #h do
  if h[i].i and seen80 < 80 then count[h[i].tenant] = count[h[i].tenant] + 1; seen80 = seen80 + 1 end
end
t.ok(count.gold >= 55 and count.gold <= 65, "weights 3:1 share the runner 3:1 while both wait (" ..
  count.gold .. " gold : " .. count.basic .. " basic of 80)")

st:close()
os.remove(path)
t.done()
