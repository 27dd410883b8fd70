-- steward.tenants.limits: a tenant's limits on the hot paths — off until a plan is configured
-- or the tenant has a record; the default plan for a tenant known only from its tokens; the
-- ingest admission and charge; queue shares; the budgets of a tenant's policies capped at its
-- plan's; the per-worker share; a plan that takes no events.
local t = require "steward.tap"
local limits = require "steward.tenants.limits"
local tconfig = require "steward.tenants.config"

local function configure(v, workers)
  local c = assert(tconfig.check(v))
  tconfig.configure(c)
  limits.configure({ tenants = c, workers = workers or 1 })
end

-- Off while no plan is configured and the tenant has no record.
configure({})
for _ = 1, 1000 do assert(limits.admit("acme")) end
t.pass("no plans, no record: 1000 requests of acme admitted")
t.is(limits.queue_share("acme"), 1, "weight 1")
local p = { name = "acme.p", tenant = "acme", budget = { name = "acme.p", cpu = 1, memory = 64 * 2 ^ 20 } }
t.is(limits.budget(p), p.budget, "a tenant policy keeps its own budget")

-- A plan configured: a tenant without a record gets the default plan.
configure({ default_plan = "basic",
  plans = { basic = { rate = { ingest = 1, burst = 2 }, budgets = { cpu = "20ms", queue_share = 2 } } } })
local lim = limits.of("acme")
t.ok(lim.rate.ingest == 1 and lim.rate.burst == 2 and lim.budgets.queue_share == 2, "of(): the default plan's rate and share")
t.is(lim.budgets.memory, "16MiB", "of(): what the plan does not say comes from the defaults (memory 16MiB)")
t.ok(limits.admit("acme") and limits.admit("acme"), "the burst of 2 is admitted")
local ok, retry, l = limits.admit("acme")
t.ok(ok == false and retry == 1 and l.ingest == 1 and l.burst == 2, "the third is refused, Retry-After 1, with the limit")
t.ok(limits.admit("globex"), "another tenant has its own bucket")
t.ok(limits.admit(nil), "no tenant: not limited")
limits.charge("globex", 5)
t.ok(not limits.admit("globex"), "charge() takes a batch's other events")
t.is(limits.queue_share("acme"), 2, "queue_share from the plan")

local b = limits.budget(p)
t.ok(b.cpu == 0.02 and b.memory == 16 * 2 ^ 20 and b.name == "acme.p", "a tenant policy's budget is capped at its plan's (cpu 20ms, memory 16MiB)")
t.is(limits.budget(p), b, "the same table again (guard.run keeps one per policy)")
local small = { name = "acme.small", tenant = "acme", budget = { name = "acme.small", cpu = 0.005, memory = 2 ^ 20 } }
local sb = limits.budget(small)
t.ok(sb.cpu == 0.005 and sb.memory == 2 ^ 20, "a policy asking for less than its plan keeps its own")
local global = { name = "g", budget = { name = "g", cpu = 5 } }
t.is(limits.budget(global), global.budget, "a policy of no tenant keeps its own")

-- Workers: each process admits its share.
configure({ plans = { basic = { rate = { ingest = 10, burst = 4 } } } }, 4)
t.ok(limits.admit("w"), "one of 4 workers admits 1 of a burst of 4")
ok, retry, l = limits.admit("w")
t.ok(ok == false and l.per_worker.burst == 1 and l.per_worker.ingest == 2.5 and l.workers == 4,
  "and refuses the second: per worker 2.5/s, burst 1")

-- A plan with ingest = 0 takes nothing.
configure({ plans = { basic = { rate = { ingest = 0 } } } })
ok, retry, l = limits.admit("closed")
t.ok(ok == false and retry == 60 and l.ingest == 0, "ingest = 0: refused, Retry-After 60")

-- steward.tenants is asked first: a record's limits win, a record makes a tenant limited
-- even with no plan configured.
local real = package.loaded["steward.tenants"]
package.loaded["steward.tenants"] = { limits = function(id)
  if id == "vip" then return tconfig.limits("basic", { rate = { ingest = 1000, burst = 1000 }, budgets = { queue_share = 5 } }) end
  if id == "small" then return tconfig.limits("basic", { rate = { ingest = 1, burst = 1 } }) end
  return nil, "not found"
end }
configure({})
t.is(limits.queue_share("vip"), 5, "a tenant record's limits")
t.ok(limits.admit("small") and not limits.admit("small"), "a tenant with a record is limited with no plan configured")
t.ok(limits.admit("nobody") and limits.admit("nobody"), "a tenant without one is not")
package.loaded["steward.tenants"] = real

t.done()
