-- steward.scaling.quota and its config (steward.scaling.quota_config): the `quotas` key and
-- the services' tenant/resources fields with errors naming the field; reserve, release,
-- headroom and reconcile per service, per pattern and per tenant on instances, cpu and
-- memory; 50 concurrent reservations on a real store (SQLite, or STEWARD_TEST_STORE) never
-- exceed the quota.
local t = require "steward.tap"
local qc = require "steward.scaling.quota_config"
local quota = require "steward.scaling.quota"
local cfgmod = require "steward.deploy.supervisor_config"
local config = require "steward.runtime.config"
local store = require "steward.runtime.store"
local task = require "steward.task"
local proc = require "steward.proc"
local fs = require "steward.fs"

-- ---- config ----
t.is(qc.memory("512MiB"), 512 * 2 ^ 20, "memory: 512MiB in bytes")
t.is(qc.memory("4GiB"), 4 * 2 ^ 30, "memory: 4GiB in bytes")
t.is(qc.memory("1.5KiB"), 1536, "memory: fractional with a unit")
t.is(qc.memory(1000), 1000, "memory: a number is bytes")
t.like(select(2, qc.memory("4GB")), "a size with a unit", "memory: GB is refused (binary units only)")

local q, err = qc.check({ services = { api = { instances = 10, cpu = 4, memory = "4GiB" }, ["batch-*"] = { instances = 2 } },
  tenants = { acme = { instances = 5 } } })
t.ok(q, "a valid quotas table passes: " .. tostring(err))
t.is(q and q.services.api.memory, 4 * 2 ^ 30, "its memory is normalised to bytes")
t.ok(qc.check(q), "the normalised table passes again (an overlay is checked once more)")
local bad = {
  { { service = {} }, "quotas: unknown field 'service'" },
  { { services = { api = { instances = -1 } } }, "quotas.services.api.instances: a non%-negative integer expected" },
  { { services = { api = { instances = 1.5 } } }, "quotas.services.api.instances: a non%-negative integer" },
  { { services = { api = { memory = "lots" } } }, "quotas.services.api.memory: a size with a unit" },
  { { services = { api = { cpu = "2" } } }, "quotas.services.api.cpu: a non%-negative number of cores" },
  { { services = { api = { pods = 2 } } }, "quotas.services.api: unknown field 'pods'" },
  { { services = { api = {} } }, "quotas.services.api: at least one of instances, cpu, memory" },
  { { tenants = { ["a*"] = { instances = 1 } } }, "quotas.tenants%[a%*%]: a tenant name" },
  { { tenants = 3 }, "quotas.tenants: a table" },
}
for _, c in ipairs(bad) do
  local ok, e = qc.check(c[1])
  t.ok(not ok and tostring(e):match(c[2]), "refused: " .. tostring(e))
end

local svcs, serr = cfgmod.check({ api = { tenant = "acme", resources = { cpu = 0.5, memory = "512MiB" } } })
t.ok(svcs and svcs.api.tenant == "acme" and svcs.api.resources.memory == 512 * 2 ^ 20,
  "services: tenant and resources are accepted and normalised: " .. tostring(serr))
t.ok(cfgmod.check(svcs), "the normalised services pass again")
for _, c in ipairs({
  { { api = { tenant = "a b" } }, "services.api.tenant: a tenant name" },
  { { api = { resources = { cpu = 0 } } }, "services.api.resources.cpu: a number of cores greater than 0" },
  { { api = { resources = { memory = "x" } } }, "services.api.resources.memory: a size with a unit" },
  { { api = { resources = { gpu = 1 } } }, "services.api.resources: unknown field 'gpu'" },
}) do
  local ok, e = cfgmod.check(c[1])
  t.ok(not ok and tostring(e):match(c[2]), "services refused: " .. tostring(e))
end

t.ok(qc.against({ services = { api = { instances = 2 } } }, { api = {} }), "an instance quota needs no resources")
local ok, aerr = qc.against(qc.check({ services = { api = { cpu = 2 } } }), { api = {} })
t.ok(not ok and aerr:match("^services%.api%.resources%.cpu: required: quotas%.services%.api%.cpu limits it"),
  "a cpu quota on a service without resources.cpu is an error naming the field: " .. tostring(aerr))
ok, aerr = qc.against(qc.check({ tenants = { acme = { memory = "1GiB" } } }), { web = { tenant = "acme", resources = { cpu = 1 } } })
t.ok(not ok and aerr:match("^services%.web%.resources%.memory: required: quotas%.tenants%.acme%.memory"),
  "a tenant's memory quota needs every one of its services' resources.memory: " .. tostring(aerr))

-- The whole config: the key is known, checked, and crossed with services.
local dir = assert(proc.run { cmd = { "mktemp", "-d" } }).stdout:gsub("%s+$", "")
local function load(text)
  assert(fs.write(dir .. "/steward.lua", text))
  return config.load({ file = dir .. "/steward.lua", required = true, getenv = function() return nil end })
end
local c, cerr = load([[return { services = { api = { tenant = "acme", resources = { cpu = 0.5 } } },
  quotas = { tenants = { acme = { cpu = 2 } } } }]])
t.ok(c and c.quotas.tenants.acme.cpu == 2, "config: quotas load: " .. tostring(cerr))
c, cerr = load([[return { services = { api = { tenant = "acme" } }, quotas = { tenants = { acme = { cpu = 2 } } } }]])
t.ok(not c and tostring(cerr):match("services%.api%.resources%.cpu: required"), "config: cross-check fails the load: " .. tostring(cerr))
c, cerr = load([[return { quotas = { services = { api = { instances = "ten" } } } }]])
t.ok(not c and tostring(cerr):match("quotas%.services%.api%.instances"), "config: a bad quota names the field: " .. tostring(cerr))
t.ok(config.RELOADABLE.quotas, "quotas is reloadable")

-- ---- the verbs, in memory (no store) ----
local function setup(quotas, services)
  quota.configure({ quotas = quotas, services = assert(cfgmod.check(services)), reset = true })
end

task.spawn(function()
  setup({ services = { api = { instances = 3 } } }, { api = {} })
  t.ok(quota.reserve("api", "v1", 2), "reserve 2 of 3")
  t.ok(quota.reserve("api", "v1", 2), "reserving the same instances again holds nothing more")
  t.is(quota.headroom("api"), 1, "headroom 1")
  local r, e = quota.reserve("api", "v2", 2)
  t.ok(not r and e == "quota exceeded: services.api.instances = 3: 2 in use, 2 requested",
    "a third and fourth refused, naming the quota: " .. tostring(e))
  t.is(quota.headroom("api"), 1, "a refusal changes nothing")
  t.ok(quota.reserve("api", "v2", 1), "one more fits")
  local n, which = quota.headroom("api")
  t.ok(n == 0 and which == "services.api.instances", "headroom 0, bounded by services.api.instances")
  t.ok(quota.release("api", "v1", 1), "release v1 above index 1")
  t.is(quota.headroom("api"), 1, "one instance of room again")
  t.ok(quota.release_ids({ "api/v2/1" }), "release by id")
  t.is(quota.headroom("api"), 2, "two")
  t.is(quota.headroom("other"), math.huge, "a service without quota: unlimited")
  t.ok(quota.reserve("other", "v1", 100), "and reserves anything")
  t.raises(function() quota.reserve("api", "v 1", 1) end, "quota.reserve: revision:", "a bad revision raises, naming it")
  t.raises(function() quota.reserve("api", "v1", -1) end, "quota.reserve: n:", "a bad n raises, naming it")

  -- A tenant across services, cpu and memory, a pattern.
  setup({ tenants = { acme = { instances = 4, cpu = 1.5, memory = "1GiB" } }, services = { ["batch-*"] = { instances = 1 } } },
    { api = { tenant = "acme", resources = { cpu = 0.5, memory = "256MiB" } },
      web = { tenant = "acme", resources = { cpu = 0.25, memory = "512MiB" } },
      ["batch-1"] = {}, ["batch-2"] = {} })
  t.ok(quota.reserve("api", "v1", 2), "acme: api 2 x 0.5 cpu")
  n, which = quota.headroom("web")
  t.ok(n == 1 and which == "tenants.acme.memory", "web's headroom: 1, by the tenant's memory (" .. tostring(n) .. " " .. tostring(which) .. ")")
  r, e = quota.reserve("web", "v1", 2)
  t.is(e, "quota exceeded: tenants.acme.memory = 1GiB: 512MiB in use, 1GiB requested", "memory refusal, in units")
  t.ok(quota.reserve("web", "v1", 1), "one web fits")
  r, e = quota.reserve("api", "v1", 3)
  t.is(e, "quota exceeded: tenants.acme.cpu = 1.5: 1.25 in use, 0.5 requested", "cpu refusal")
  t.ok(quota.reserve("batch-1", "a", 1) and quota.reserve("batch-2", "a", 1), "a pattern quota is per service")
  r, e = quota.reserve("batch-1", "b", 1)
  t.is(e, "quota exceeded: services.batch-*.instances = 1 (service batch-1): 1 in use, 1 requested",
    "a pattern's refusal names the pattern and the service")

  -- reconcile: holders whose instance is gone are released, live ones without a holder added.
  local live = { ["api/v1/1"] = { service = "api", revision = "v1" }, ["web/v9/1"] = { service = "web", revision = "v9" } }
  local released = quota.reconcile(function(id) return live[id] end, { "api/v1/1", "web/v9/1" })
  local h = quota.holders()
  local ids = {}
  for id in pairs(h) do ids[#ids + 1] = id end
  table.sort(ids)
  t.is(table.concat(ids, " "), "api/v1/1 web/v9/1", "reconcile keeps exactly the live instances (" .. tostring(released) .. " released)")
  t.is(released, 4, "four released")

  -- ---- a real store: 50 concurrent reservations ----
  local st = assert(store.open(os.getenv("STEWARD_TEST_STORE") or ("sqlite:" .. dir .. "/t.db")))
  store.set_default(st)
  setup({ services = { api = { instances = 7 } }, tenants = { acme = { instances = 9 } } },
    { api = { tenant = "acme" }, web = { tenant = "acme" } })
  quota.reconcile(function() return nil end)
  local tasks, won, refused, other = {}, 0, 0, {}
  for i = 1, 50 do
    tasks[i] = task.spawn(function()
      local svc = i % 2 == 0 and "api" or "web"
      return quota.reserve(svc, "r" .. i, 1)
    end)
  end
  for _, tk in ipairs(tasks) do
    local okj, res, rerr = tk:join()
    if okj and res then won = won + 1
    elseif okj and tostring(rerr):match("^quota exceeded: ") then refused = refused + 1
    else other[#other + 1] = tostring(res) .. " " .. tostring(rerr) end
  end
  t.is(won, 9, "50 concurrent reservations on the store: exactly the tenant's 9 succeed")
  t.is(refused, 41, "the 41 others are refused naming a quota (" .. table.concat(other, "; ") .. ")")
  local api_n = 0
  for id in pairs(assert(quota.holders())) do if id:match("^api/") then api_n = api_n + 1 end end
  t.ok(api_n <= 7, "api holds no more than its own quota of 7 (" .. api_n .. ")")
  local u = assert(quota.usage())
  local by = {}
  for _, s in ipairs(u) do by[s.scope] = s end
  t.is(by["tenants.acme"] and by["tenants.acme"].used.instances, 9, "usage: tenants.acme 9 used")
  local text = require("steward.metrics").render()
  t.like(text, 'steward_quota_used{scope="tenants.acme",resource="instances"} 9', "metric steward_quota_used")
  t.like(text, 'steward_quota_limit{scope="services.api",resource="instances"} 7', "metric steward_quota_limit")
  -- A store that does not answer: a bounded service's start is refused, an unbounded one's not.
  local down = function() return nil, "connection refused" end
  quota.configure({ store = setmetatable({ db = { query = down, exec = down } }, getmetatable(st)) })
  local okc, rr, re = pcall(quota.reserve, "api", "late", 1)
  t.ok(okc and rr == nil and tostring(re):match("^quota: store: "), "store down: a quota'd service's reservation fails: " .. tostring(re))
  okc, rr = pcall(quota.reserve, "nobody", "v1", 1)
  t.ok(okc and rr == true, "store down: a service without quota still starts")
  quota.configure({ store = false })
  -- A policy reads quotas (headroom, usage); reserving is the supervisor's, with its instance.
  local sandbox = require "steward.runtime.policy.sandbox"
  local guard = require "steward.runtime.guard"
  local env, box = sandbox.new_env({ name = "probe", log = function() end })
  box.caps = {}
  local fn = assert(sandbox.compile(env, [[local q = require "steward.scaling.quota"
    local refused = {}
    for _, f in ipairs({ "reserve", "release", "release_ids", "reconcile", "configure" }) do
      local ok, e = pcall(q[f], "api", "v1", 1)
      refused[#refused + 1] = not ok and tostring(e):match("is not available to policies") and f or nil
    end
    return q.headroom("api"), #q.usage(), table.concat(refused, " ")]], "=probe"))
  local okp, h, u, refused = guard.run(box.budget, fn)
  t.ok(okp and h == 0 and u == 2, "a policy reads headroom (0: the tenant is full) and usage (" .. tostring(h) .. ", " .. tostring(u) .. ")")
  t.is(refused, "reserve release release_ids reconcile configure", "but may not reserve, release, reconcile or configure")
  st:close()
  store.set_default(nil)
  proc.run { cmd = { "rm", "-rf", dir } }
  t.done()
end)
