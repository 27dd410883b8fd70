-- A tenant's plan bounds its policies' CPU: a tenant policy that asks for 1 s per run and spins
-- is stopped at its plan's budgets.cpu (20 ms) when the dispatcher runs it, and parked as a
-- dead letter naming that budget; a policy of no tenant keeps its own budget.
local t = require "steward.tap"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local dispatch = require "steward.runtime.dispatch"
local policies = require "steward.runtime.policies"
local limits = require "steward.tenants.limits"
local tconfig = require "steward.tenants.config"
local time = require "steward.time"
require("steward.log").set_level("error")

local path = os.tmpname()
local st = assert(store.open("sqlite:" .. path))
assert(st:migrate())
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0)
local f = assert(io.open(dir .. "/spin.lua", "w"))
f:write([[return { on = { "spin.*" }, limits = { cpu = "1s" },
  handle = function(ev) local x = 0; while true do x = x + 1 end end }]])
f:close()

local c = assert(tconfig.check({ plans = { basic = { budgets = { cpu = "20ms" } } } }))
tconfig.configure(c)
limits.configure({ tenants = c, workers = 1 })

local p = assert(policies.load_file(dir .. "/spin.lua", "tenants.acme.spin", { tenant = "acme" }))
t.is(p.budget.cpu, 1, "the policy asks for 1 s per run")
t.is(limits.budget(p).cpu, 0.02, "its tenant's plan caps it at 20 ms")

local d = dispatch.new({ store = st, concurrency = 2, retry_attempts = 1, tenant_budget = limits.budget })
d:set_policies({ [p.name] = p })
local list = { { type = "spin.go", tenant = "acme" } }
local res = assert(events.append(st, list))
list[1].seq, list[1].id = res.seqs[1], res.ids[1]
local t0 = time.monotonic()
d:notify(list)
local deadline = time.monotonic() + 30
while d.depth > 0 and time.monotonic() < deadline do time.sleep(0.01) end
local took = time.monotonic() - t0
local rows = assert(st:sql("SELECT error FROM dead_letters WHERE policy = $1", p.name))
t.ok(rows[1] and rows[1].error:find("cpu budget exceeded (0.02 s)", 1, true),
  "the spinning handler is stopped at its plan's budget: " .. tostring(rows[1] and rows[1].error))
t.diag(string.format("stopped and parked in %.3f s", took))
d:drain(2)
st:close()
os.remove(path)
os.remove(dir .. "/spin.lua")
os.remove(dir)
t.done()
