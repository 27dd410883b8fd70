-- steward.tenants.limits: the `tenants` config key's check (every error names its field), a
-- tenant's limits from the default plan, the ingest admission, queue shares, and the budgets
-- of a tenant's policies capped at its plan's.
local t = require "steward.tap"
local limits = require "steward.tenants.limits"

-- The check normalises (cpu in seconds, memory in bytes) and passes its own output again.
local cfg = assert(limits.check({ default_plan = "basic", postgres = "main",
  plans = { basic = { rate = { ingest = 50, burst = 80 }, budgets = { cpu = "20ms", memory = "8MiB", queue_share = 2 },
                      quotas = { instances = 4, cpu = 2, memory = "1GiB" } } } }))
t.is(cfg.plans.basic.budgets.cpu, 0.02, "budgets.cpu \"20ms\" is 0.02 s")
t.is(cfg.plans.basic.budgets.memory, 8 * 2 ^ 20, "budgets.memory \"8MiB\" in bytes")
t.is(cfg.plans.basic.quotas.memory, 2 ^ 30, "quotas.memory \"1GiB\" in bytes")
t.is_deeply(assert(limits.check(cfg)), cfg, "the normalised form passes the check unchanged")

local BAD = {
  { { plans = { basic = { rate = { ingest = 0 } } } }, "tenants.plans.basic.rate.ingest: a number greater than 0 expected" },
  { { plans = { basic = { rate = { ingest = 5, burst = 0.5 } } } }, "tenants.plans.basic.rate.burst: at least 1" },
  { { plans = { basic = { rate = { per_minute = 5 } } } }, "tenants.plans.basic.rate.per_minute: unknown field" },
  { { plans = { basic = { budgets = { cpu = "fast" } } } }, "tenants.plans.basic.budgets.cpu: a duration" },
  { { plans = { basic = { budgets = { memory = "lots" } } } }, "tenants.plans.basic.budgets.memory: a size" },
  { { plans = { basic = { budgets = { queue_share = 0 } } } }, "tenants.plans.basic.budgets.queue_share: a weight" },
  { { plans = { basic = { colour = "red" } } }, "tenants.plans.basic.colour: unknown field" },
  { { plans = { basic = { quotas = { instances = -1 } } } }, "tenants.plans.basic.quotas.instances: an integer" },
  { { plans = { ["bad plan"] = {} } }, "tenants.plans: a plan name" },
  { { default_plan = "gold", plans = { basic = {} } }, "tenants.default_plan: names no plan in tenants.plans: gold" },
  { { limits = {} }, "tenants.limits: unknown field" },
  { "x", "tenants: a table expected" },
}
for _, c in ipairs(BAD) do
  local v, err = limits.check(c[1])
  t.ok(v == nil and tostring(err):find(c[2], 1, true), "refused: " .. c[2] .. " (" .. tostring(err) .. ")")
end

-- Off until `tenants` is configured: every tenant is admitted, weight 1, own budgets.
limits.configure({ tenants = nil, workers = 1 })
t.ok(not limits.enabled(), "no tenants key: limits are off")
for _ = 1, 1000 do assert(limits.admit("acme")) end
t.pass("1000 requests of acme admitted with limits off")
t.is(limits.queue_share("acme"), 1, "weight 1 with limits off")
local p = { name = "acme.p", tenant = "acme", budget = { name = "acme.p", cpu = 1, memory = 64 * 2 ^ 20 } }
t.is(limits.budget(p), p.budget, "a tenant policy keeps its own budget with limits off")

-- On: the default plan applies to a tenant without a record.
limits.configure({ tenants = assert(limits.check({ default_plan = "basic",
  plans = { basic = { rate = { ingest = 1, burst = 2 }, budgets = { cpu = "20ms", queue_share = 2 } } } })), workers = 1 })
t.ok(limits.enabled(), "a tenants key: limits are on")
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
limits.configure({ tenants = assert(limits.check({ plans = { basic = { rate = { ingest = 10, burst = 4 } } } })), workers = 4 })
t.ok(limits.admit("w"), "one of 4 workers admits 1 of a burst of 4")
ok, retry, l = limits.admit("w")
t.ok(ok == false and l.per_worker.burst == 1 and l.per_worker.ingest == 2.5 and l.workers == 4,
  "and refuses the second: per worker 2.5/s, burst 1")

-- steward.tenants, when it is there, is asked first (the record's override).
package.loaded["steward.tenants"] = { limits = function(id)
  if id == "vip" then return { rate = { ingest = 1000, burst = 1000 }, budgets = { queue_share = 5 } } end
end }
limits.configure({ tenants = assert(limits.check({ plans = { basic = { rate = { ingest = 1, burst = 1 } } } })), workers = 1 })
t.is(limits.queue_share("vip"), 5, "a tenant record's limits win over the plan")
t.is(limits.of("other").rate.ingest, 1, "a tenant steward.tenants does not know gets the default plan")
package.loaded["steward.tenants"] = nil

t.done()
