-- steward.tenants.limits: what one tenant may use — its ingest rate, its policies' CPU and
-- memory budgets, its share of the dispatcher — read on hot paths (ingest, dispatch), so the
-- answer is cached for a second. The source is steward.tenants.limits(id) (the tenant's plan
-- merged with its record's override) when that module is there; otherwise the config key
-- `tenants` (its default plan). Also the check of the config key `tenants`.
local time = require "steward.time"
local quota_config = require "steward.scaling.quota_config"
local ratelimit = require "steward.tenants.ratelimit"

local type, pairs, tostring, pcall, next = type, pairs, tostring, pcall, next
local format, floor = string.format, math.floor

local M = {}

-- What a plan that says nothing gets (docs/tenants.md#isolation-and-limits).
M.DEFAULT = {
  rate = { ingest = 100, burst = 200 },
  budgets = { cpu = "50ms", memory = "16MiB", queue_share = 1 },
}
M.DEFAULT_PLAN = "basic"

local function fail(where, msg, ...) return nil, "tenants." .. where .. ": " .. format(msg, ...) end

local function positive(v)
  return type(v) == "number" and v == v and v > 0 and v ~= math.huge
end

local function check_rate(v, where)
  if type(v) ~= "table" then return fail(where, "a table {ingest = events/s, burst = events} expected") end
  local out = {}
  for k, x in pairs(v) do
    if k ~= "ingest" and k ~= "burst" then return fail(where .. "." .. tostring(k), "unknown field (ingest, burst)") end
    if not positive(x) then return fail(where .. "." .. k, "a number greater than 0 expected, got %s", tostring(x)) end
    out[k] = x
  end
  if out.burst and out.burst < 1 then return fail(where .. ".burst", "at least 1 expected, got %s", tostring(out.burst)) end
  return out
end

local function check_budgets(v, where)
  if type(v) ~= "table" then return fail(where, "a table {cpu = duration, memory = size, queue_share = weight} expected") end
  local out = {}
  for k, x in pairs(v) do
    local w = where .. "." .. tostring(k)
    if k == "cpu" then
      local ok, secs = pcall(time.parse_duration, x)
      if not ok or type(secs) ~= "number" or secs <= 0 then
        return fail(w, "a duration greater than 0 expected (\"50ms\", 0.05), got %s", tostring(x))
      end
      out.cpu = secs
    elseif k == "memory" then
      local bytes, err = quota_config.memory(x)
      if not bytes then return fail(w, "%s", err) end
      out.memory = bytes
    elseif k == "queue_share" then
      if not positive(x) or x > 1000 then return fail(w, "a weight from above 0 to 1000 expected, got %s", tostring(x)) end
      out.queue_share = x
    else
      return fail(w, "unknown field (cpu, memory, queue_share)")
    end
  end
  return out
end

local function check_quotas(v, where)
  if type(v) ~= "table" then return fail(where, "a table {instances =, cpu =, memory =} expected") end
  local out = {}
  for k, x in pairs(v) do
    local w = where .. "." .. tostring(k)
    if k == "instances" then
      if type(x) ~= "number" or x < 0 or x ~= floor(x) then return fail(w, "an integer of at least 0 expected, got %s", tostring(x)) end
      out.instances = x
    elseif k == "cpu" then
      if not positive(x) then return fail(w, "a number of cores greater than 0 expected, got %s", tostring(x)) end
      out.cpu = x
    elseif k == "memory" then
      local bytes, err = quota_config.memory(x)
      if not bytes then return fail(w, "%s", err) end
      out.memory = bytes
    else
      return fail(w, "unknown field (instances, cpu, memory)")
    end
  end
  return out
end

-- check_plan(v, where) -> a normalised copy (cpu in seconds, memory in bytes) or nil, reason;
-- also the check of a tenant record's `limits` override.
function M.check_plan(v, where)
  if type(v) ~= "table" then return fail(where, "a table {rate =, quotas =, budgets =} expected") end
  local out, err = {}, nil
  for k, x in pairs(v) do
    local w = where .. "." .. tostring(k)
    if k == "rate" then out.rate, err = check_rate(x, w)
    elseif k == "budgets" then out.budgets, err = check_budgets(x, w)
    elseif k == "quotas" then out.quotas, err = check_quotas(x, w)
    else return fail(w, "unknown field (rate, quotas, budgets)") end
    if err then return nil, err end
  end
  return out
end

-- check(v) -> the `tenants` config key normalised, or nil, "tenants.<field>: <reason>".
-- {plans = {<plan> = {rate, quotas, budgets}}, default_plan, postgres, welcome}
function M.check(v)
  if type(v) ~= "table" then return nil, "tenants: a table expected" end
  local out = {}
  for k, x in pairs(v) do
    if k == "plans" then
      if type(x) ~= "table" then return fail("plans", "a table {<plan> = {rate, quotas, budgets}} expected") end
      out.plans = {}
      for name, plan in pairs(x) do
        if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
          return fail("plans", "a plan name of letters, digits, _ . - expected, got %s", tostring(name))
        end
        local p, err = M.check_plan(plan, "plans." .. name)
        if not p then return nil, err end
        out.plans[name] = p
      end
    elseif k == "default_plan" or k == "postgres" then
      if type(x) ~= "string" or x == "" then return fail(k, "a non-empty string expected") end
      out[k] = x
    elseif k == "welcome" then
      if type(x) ~= "table" then return fail(k, "a table {channel =, template =} expected") end
      out[k] = x
    else
      return fail(tostring(k), "unknown field (plans, default_plan, postgres, welcome)")
    end
  end
  if out.default_plan and not (out.plans and out.plans[out.default_plan]) then
    return fail("default_plan", "names no plan in tenants.plans: %s", out.default_plan)
  end
  return out
end

-- ---- the hot path ----

local conf = { tenants = nil, workers = 1 }
local cache = {} -- tenant -> {at, rate, burst, cpu, memory, share}
local CACHE_TTL = 1

-- configure{tenants, workers}: at start and when the config is reloaded.
function M.configure(c)
  conf.tenants = c.tenants
  conf.workers = c.workers or 1
  cache = {}
end

-- enabled() -> whether tenant limits are on: the `tenants` key is configured.
function M.enabled()
  return conf.tenants ~= nil and next(conf.tenants) ~= nil
end

local function merge(base, over)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over or {}) do out[k] = v end
  return out
end

-- The plan from the config: the tenant's record is not known here.
local function from_config()
  local t = conf.tenants or {}
  local plan = (t.plans or {})[t.default_plan or M.DEFAULT_PLAN] or {}
  return { rate = merge(M.DEFAULT.rate, plan.rate), budgets = merge(M.DEFAULT.budgets, plan.budgets), quotas = plan.quotas or {} }
end

-- of(id) -> {rate = {ingest, burst}, budgets = {cpu, memory, queue_share}, quotas}: the
-- tenant's limits from steward.tenants when it knows them, else the config's default plan.
function M.of(id)
  local okm, tenants = pcall(require, "steward.tenants")
  if okm and type(tenants) == "table" and type(tenants.limits) == "function" then
    local ok, lim = pcall(tenants.limits, id)
    if ok and type(lim) == "table" then
      return { rate = merge(M.DEFAULT.rate, lim.rate), budgets = merge(M.DEFAULT.budgets, lim.budgets), quotas = lim.quotas or {} }
    end
  end
  return from_config()
end

local function cached(id, now)
  local c = cache[id]
  if c and now - c.at < CACHE_TTL then return c end
  local lim = M.of(id)
  local rate = lim.rate.ingest
  local burst = lim.rate.burst or (lim.rate.ingest and 2 * lim.rate.ingest)
  local cpu = lim.budgets.cpu
  if type(cpu) ~= "number" then cpu = time.parse_duration(cpu) end
  local memory = lim.budgets.memory
  if type(memory) ~= "number" then memory = quota_config.memory(memory) end
  c = { at = now, share = lim.budgets.queue_share or 1, cpu = cpu, memory = memory }
  c.rate, c.burst = ratelimit.share(rate, burst, conf.workers)
  c.full_rate, c.full_burst = rate, burst
  cache[id] = c
  return c
end

local limiter = ratelimit.limiter()

-- admit(tenant) -> true, or false, retry_after (whole seconds), limit: whether this worker
-- process admits one more ingest request of the tenant now; an admitted request is charged
-- one event at once and the rest with charge() when its size is known. limit: {ingest,
-- burst, workers, per_worker = {ingest, burst}} for the 429's body.
function M.admit(tenant)
  if not M.enabled() or tenant == nil then return true end
  local now = time.monotonic()
  local c = cached(tenant, now)
  local ok, retry = limiter:take(tenant, 1, now, c.rate, c.burst)
  if ok then return true end
  return false, retry, { ingest = c.full_rate, burst = c.full_burst, workers = conf.workers,
                         per_worker = { ingest = c.rate, burst = c.burst } }
end

-- charge(tenant, events): the rest of an admitted request, once its size is known (events - 1).
function M.charge(tenant, extra)
  if not M.enabled() or tenant == nil or not extra or extra <= 0 then return end
  local now = time.monotonic()
  local c = cached(tenant, now)
  limiter:charge(tenant, extra, now, c.rate, c.burst)
end

-- queue_share(tenant) -> the tenant's dispatcher weight (1 when limits are off).
function M.queue_share(tenant)
  if not M.enabled() or tenant == nil then return 1 end
  return cached(tenant, time.monotonic()).share
end

-- budget(p) -> the budget table for guard.run of a tenant's policy: its own budgets capped
-- at its tenant's (a tenant's plan bounds what its policies may spend, whatever they ask
-- for); p.budget as it is for a policy of no tenant. Kept per policy version and tenant
-- limits, so guard.run keeps getting the same table.
function M.budget(p)
  local own = p.budget or { name = p.name }
  if not p.tenant or not M.enabled() then return own end
  local c = cached(p.tenant, time.monotonic())
  local b = p.tenant_budget
  if b and b.src_cpu == c.cpu and b.src_memory == c.memory and b.own == own then return b end
  local cpu, memory = own.cpu, own.memory
  if c.cpu and (not cpu or c.cpu < cpu) then cpu = c.cpu end
  if c.memory and (not memory or c.memory < memory) then memory = c.memory end
  b = { name = own.name or p.name, cpu = cpu, memory = memory, src_cpu = c.cpu, src_memory = c.memory, own = own }
  p.tenant_budget = b
  return b
end

return M
