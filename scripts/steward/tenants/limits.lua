-- steward.tenants.limits: what one tenant may use — its ingest rate, its policies' CPU and
-- memory budgets, its share of the dispatcher — read on hot paths (ingest, dispatch), so the
-- answer is cached for a second. A tenant with a record (steward.tenants) is held to its plan
-- under its record's override; a tenant known only from its tokens gets the default plan once
-- `tenants.plans` names a plan, and is not limited before (steward.tenants.config checks the
-- key and holds the plans).
local time = require "steward.time"
local quota_config = require "steward.scaling.quota_config"
local tconfig = require "steward.tenants.config"
local ratelimit = require "steward.tenants.ratelimit"

local type, pcall, next = type, pcall, next

local M = {}

local conf = { tenants = nil, workers = 1 }
local cache = {} -- tenant -> {at, rate, burst, cpu, memory, share}
local CACHE_TTL = 1

-- configure{tenants, workers}: at start and when the config is reloaded.
function M.configure(c)
  conf.tenants = c.tenants
  conf.workers = c.workers or 1
  cache = {}
end

-- plans() -> whether `tenants.plans` names a plan: then a tenant without a record gets the
-- default plan's limits; before, only tenants with a record are limited.
local function plans()
  local t = conf.tenants
  return t ~= nil and type(t.plans) == "table" and next(t.plans) ~= nil
end

-- of(id) -> {rate = {ingest, burst}, budgets = {cpu, memory, queue_share}, quotas}, or nil when
-- the tenant is not limited: its record's limits (steward.tenants.limits), else the default
-- plan's when plans are configured.
function M.of(id)
  local okm, tenants = pcall(require, "steward.tenants")
  if okm and type(tenants) == "table" and type(tenants.limits) == "function" then
    local ok, lim = pcall(tenants.limits, id)
    if ok and type(lim) == "table" then return lim end
  end
  if not plans() then return nil end
  return tconfig.limits(conf.tenants.default_plan or "basic")
end

-- Retry-After for a tenant whose plan takes no events (ingest = 0): a plan change is what
-- lets it in, and a reload applies that within a second; a minute keeps clients from spinning.
local CLOSED_RETRY = 60

local function cached(id, now)
  local c = cache[id]
  if c and now - c.at < CACHE_TTL then return c end
  local lim = M.of(id)
  if not lim then
    c = { at = now, off = true, share = 1 }
    cache[id] = c
    return c
  end
  local rate = lim.rate.ingest
  local burst = lim.rate.burst or (lim.rate.ingest and 2 * lim.rate.ingest)
  local cpu = lim.budgets.cpu
  if type(cpu) ~= "number" then cpu = time.parse_duration(cpu) end
  local memory = lim.budgets.memory
  if type(memory) ~= "number" then memory = quota_config.memory(memory) end
  c = { at = now, share = lim.budgets.queue_share or 1, cpu = cpu, memory = memory, full_rate = rate, full_burst = burst }
  if rate <= 0 then
    c.closed = true -- a plan with ingest = 0 takes no events
  else
    c.rate, c.burst = ratelimit.share(rate, burst, conf.workers)
  end
  cache[id] = c
  return c
end

local limiter = ratelimit.limiter()

-- admit(tenant) -> true, or false, retry_after (whole seconds), limit: whether this worker
-- process admits one more ingest request of the tenant now; an admitted request is charged
-- one event at once and the rest with charge() when its size is known. limit: {ingest,
-- burst, workers, per_worker = {ingest, burst}} for the 429's body.
function M.admit(tenant)
  if tenant == nil then return true end
  local now = time.monotonic()
  local c = cached(tenant, now)
  if c.off then return true end
  if c.closed then
    return false, CLOSED_RETRY, { ingest = 0, burst = c.full_burst, workers = conf.workers, per_worker = { ingest = 0, burst = 0 } }
  end
  local ok, retry = limiter:take(tenant, 1, now, c.rate, c.burst)
  if ok then return true end
  return false, retry, { ingest = c.full_rate, burst = c.full_burst, workers = conf.workers,
                         per_worker = { ingest = c.rate, burst = c.burst } }
end

-- charge(tenant, events): the rest of an admitted request, once its size is known (events - 1).
function M.charge(tenant, extra)
  if tenant == nil or not extra or extra <= 0 then return end
  local now = time.monotonic()
  local c = cached(tenant, now)
  if c.off or c.closed then return end
  limiter:charge(tenant, extra, now, c.rate, c.burst)
end

-- queue_share(tenant) -> the tenant's dispatcher weight (1 when limits are off).
function M.queue_share(tenant)
  if tenant == nil or tenant == "" then return 1 end
  return cached(tenant, time.monotonic()).share
end

-- budget(p) -> the budget table for guard.run of a tenant's policy: its own budgets capped
-- at its tenant's (a tenant's plan bounds what its policies may spend, whatever they ask
-- for); p.budget as it is for a policy of no tenant. Kept per policy version and tenant
-- limits, so guard.run keeps getting the same table.
function M.budget(p)
  local own = p.budget or { name = p.name }
  if not p.tenant then return own end
  local c = cached(p.tenant, time.monotonic())
  if c.off then return own end
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
