-- steward.scaling.quota: quotas on the instances, cpu and memory of supervised services, per
-- service and per tenant (docs/scaling/quotas.md). What holds quota is a set of holders, one
-- per instance id ("api/v2/3") that is starting, running, restarting or stopping; failed and
-- exited instances hold none. The set is one document in the store's kv (the runtime's own
-- namespace), changed only by compare-and-set on its version, so a reservation is atomic
-- across tasks, worker processes and instances sharing PostgreSQL, for every scope at once
-- (a service's and its tenant's). Without a store (a script) the document lives in memory with
-- the same compare-and-set. The supervisor reserves before it starts anything, releases what
-- stops or fails, and reconciles the set with its real instances when it starts supervising,
-- so a daemon killed between a reservation and a start leaks nothing.
local store = require "steward.runtime.store"
local kvs = require "steward.runtime.store.kv"
local time = require "steward.time"
local log = require "steward.log"
local metrics = require "steward.metrics"
local qc = require "steward.scaling.quota_config"

local type, pairs, ipairs, tostring, tonumber, error, pcall = type, pairs, ipairs, tostring, tonumber, error, pcall
local format, floor, sort, huge, random = string.format, math.floor, table.sort, math.huge, math.random

local M = {}

M.NS = "steward:quota"
M.KEY = "holders"
M.CAS_TIMEOUT = 30 -- seconds a reservation keeps retrying a contended compare-and-set

local S = {
  quotas = { services = {}, tenants = {} },
  services = {},
  store = nil,  -- a store of its own (specs); else the process's default one
  mem = nil,    -- {doc, version} without any store
}

local m_used = metrics.gauge("steward_quota_used", "Quota in use by scope (services.NAME, tenants.NAME) and resource",
  { "scope", "resource" })
local m_limit = metrics.gauge("steward_quota_limit", "Quota limit by scope (services.NAME, tenants.NAME) and resource",
  { "scope", "resource" })

-- configure{quotas = cfg.quotas, services = cfg.services [, store = st]}: at start-up and at
-- each reload of either key.
function M.configure(opts)
  if type(opts) ~= "table" then error("quota.configure: opts: table expected", 2) end
  if opts.quotas ~= nil then
    local q, err = qc.check(opts.quotas)
    if not q then error("quota.configure: " .. err, 2) end
    S.quotas = q
  end
  if opts.services ~= nil then S.services = opts.services end
  if opts.store ~= nil then S.store = opts.store or nil end
  if opts.reset then S.mem = nil end
end

-- ---- the holders document ----

local function backend()
  local st = S.store or store.default()
  if st then
    local ns = kvs.ns(st, M.NS)
    return function() return ns:get(M.KEY) end,
      function(doc, version) return ns:put(M.KEY, doc, { version = version or 0 }) end
  end
  return function()
    if not S.mem then return nil end
    return S.mem.doc, S.mem.version
  end, function(doc, version)
    local cur = S.mem and S.mem.version or 0
    if (version or 0) ~= cur then return nil, "conflict" end
    S.mem = { doc = doc, version = cur + 1 }
    return cur + 1
  end
end

local function read()
  local get = backend()
  local doc, version = get()
  if doc == nil and version ~= nil then return nil, "quota: store: " .. tostring(version) end
  return type(doc) == "table" and type(doc.holders) == "table" and doc.holders or {}
end

-- update(fn): fn(holders) -> write, ...; when write is true the changed holders are stored at
-- the version they were read at, and fn runs again on a conflict. Returns what fn returned
-- after `write`, or nil, err (the store, or contention beyond CAS_TIMEOUT).
local function update(fn)
  local get, put = backend()
  local deadline = time.monotonic() + M.CAS_TIMEOUT
  while true do
    local doc, version = get()
    if doc == nil and version ~= nil then return nil, "quota: store: " .. tostring(version) end
    local holders = type(doc) == "table" and type(doc.holders) == "table" and doc.holders or {}
    local res = { fn(holders) }
    if not res[1] then return true, res[2], res[3] end
    local ok, err = put({ holders = holders }, version)
    if ok then
      M.refresh(holders)
      return true, res[2], res[3]
    end
    if err ~= "conflict" then return nil, "quota: store: " .. tostring(err) end
    if time.monotonic() >= deadline then
      return nil, format("quota: the holders document stayed contended for %gs", M.CAS_TIMEOUT)
    end
    -- Another writer won: a short random pause spreads the retries of many waiting callers.
    time.sleep(random() * 0.005)
  end
end

-- ---- scopes and usage ----

local function tenant_of(service, holder)
  local svc = S.services[service]
  if svc then return svc.tenant end
  return holder and holder.tenant
end

-- tenant_plan_quotas(tenant) -> limits | nil: a tenant the config's quotas.tenants does not
-- name is bounded by its plan's quotas (steward.tenants.limits, docs/tenants.md), normalised.
function M.tenant_plan_quotas(tenant)
  local ok, lim = pcall(function() return require("steward.tenants").limits(tenant) end)
  if not ok or type(lim) ~= "table" or type(lim.quotas) ~= "table" or next(lim.quotas) == nil then return nil end
  local q = {}
  for k, v in pairs(lim.quotas) do q[k] = k == "memory" and qc.memory(v) or v end
  return q
end

-- The quotas that bound a service: its own (exact name or pattern) and its tenant's.
local function scopes_of(service)
  local out = {}
  local key, lim = qc.service_quota(S.quotas, service)
  if lim then
    out[#out + 1] = { label = "services." .. key, metric = "services." .. service, limits = lim,
      note = key ~= service and format(" (service %s)", service) or "",
      holds = function(id, h) return h.service == service end }
  end
  local tenant = tenant_of(service)
  local tlim = tenant and (S.quotas.tenants[tenant] or M.tenant_plan_quotas(tenant))
  if tlim then
    out[#out + 1] = { label = "tenants." .. tenant, metric = "tenants." .. tenant, limits = tlim,
      note = "", holds = function(id, h) return tenant_of(h.service, h) == tenant end }
  end
  return out
end

local function usage(holders, scope)
  local u = { instances = 0, cpu = 0, memory = 0 }
  for id, h in pairs(holders) do
    if scope.holds(id, h) then
      u.instances = u.instances + 1
      u.cpu = u.cpu + (h.cpu or 0)
      u.memory = u.memory + (h.memory or 0)
    end
  end
  return u
end

local function per_instance(service, resource)
  if resource == "instances" then return 1 end
  local res = (S.services[service] or {}).resources or {}
  return res[resource] or 0
end

local function show(resource, v)
  if resource == "memory" then
    for _, u in ipairs({ { 2 ^ 40, "TiB" }, { 2 ^ 30, "GiB" }, { 2 ^ 20, "MiB" }, { 2 ^ 10, "KiB" } }) do
      if v >= u[1] then return format("%g%s", floor(v / u[1] * 100 + 0.5) / 100, u[2]) end
    end
    return format("%dB", v)
  end
  return format("%g", v)
end

-- The first limit that k more instances of the service would break, or nil.
local function over(holders, service, k)
  for _, scope in ipairs(scopes_of(service)) do
    local used = usage(holders, scope)
    for _, r in ipairs(qc.RESOURCES) do
      local limit = scope.limits[r]
      if limit then
        local want = k * per_instance(service, r)
        if used[r] + want > limit + 1e-9 then
          return { quota = scope.label .. "." .. r, note = scope.note, resource = r, limit = limit,
            in_use = used[r], requested = want, service = service, tenant = tenant_of(service) }
        end
      end
    end
  end
  return nil
end

local function emit_exceeded(refusal, revision)
  local data = { quota = refusal.quota, limit = refusal.limit, in_use = refusal.in_use, requested = refusal.requested,
    service = refusal.service, tenant = refusal.tenant, revision = revision }
  local ok, err = pcall(function()
    if not (S.store or store.default()) then return true end -- a script without a store: no event log
    return assert(require("steward.events").emit({ type = "quota.exceeded", source = "steward.scaling.quota",
      tenant = refusal.tenant, data = data }))
  end)
  if not ok then log.warn("quota: event not emitted", { type = "quota.exceeded", error = tostring(err) }) end
end

-- ---- the verbs ----

local function check_args(fname, service, revision)
  if type(service) ~= "string" or not service:match(qc.NAME_PATTERN) then
    error(format("quota.%s: service: a service name expected, got %s", fname, tostring(service)), 3)
  end
  if type(revision) ~= "string" or not revision:match("^[%w._-]+$") then
    error(format("quota.%s: revision: a revision id (letters, digits, . _ -) expected, got %s", fname, tostring(revision)), 3)
  end
end

local function check_n(fname, n)
  if type(n) ~= "number" or n ~= floor(n) or n < 0 or n > 1000 then
    error(format("quota.%s: n: an integer from 0 to 1000 expected, got %s", fname, tostring(n)), 3)
  end
end

-- reserve(service, revision, n) -> true, ids | nil, err: instances 1..n of the revision hold
-- quota from now on. Those already held count as held (a retry reserves nothing twice);
-- `requested` in a refusal is the others. ids: the instance ids held anew. A refusal names the
-- quota ("quota exceeded: tenants.acme.instances = 10: 9 in use, 2 requested"), changes
-- nothing and emits quota.exceeded.
function M.reserve(service, revision, n)
  check_args("reserve", service, revision)
  check_n("reserve", n)
  local res = (S.services[service] or {}).resources or {}
  local refusal
  local ok, new, err = update(function(holders)
    refusal = nil
    local fresh = {}
    for i = 1, n do
      local id = service .. "/" .. revision .. "/" .. i
      if not holders[id] then fresh[#fresh + 1] = id end
    end
    if #fresh == 0 then return false, fresh end
    refusal = over(holders, service, #fresh)
    if refusal then return false end
    local now = time.now()
    for _, id in ipairs(fresh) do
      holders[id] = { service = service, revision = revision, tenant = tenant_of(service), cpu = res.cpu,
        memory = res.memory, at = now }
    end
    return true, fresh
  end)
  if not ok then
    -- No quota bounds this service: a store that does not answer must not stop its start.
    -- The supervisor's next reconciliation gives the instance its entry.
    if #scopes_of(service) == 0 then
      log.warn("quota: reservation not recorded (no quota applies)", { service = service, revision = revision, error = new })
      return true, {}
    end
    return nil, new
  end
  if refusal then
    emit_exceeded(refusal, revision)
    local msg = format("quota exceeded: %s = %s%s: %s in use, %s requested", refusal.quota,
      show(refusal.resource, refusal.limit), refusal.note, show(refusal.resource, refusal.in_use),
      show(refusal.resource, refusal.requested))
    log.warn("quota exceeded", { quota = refusal.quota, service = service, revision = revision,
      limit = refusal.limit, in_use = refusal.in_use, requested = refusal.requested })
    return nil, msg
  end
  return true, new or err
end

-- release_ids({id, ...}) -> true | nil, err: those instances hold no quota any more.
function M.release_ids(ids)
  if type(ids) ~= "table" then error("quota.release_ids: ids: a list of instance ids expected", 2) end
  if #ids == 0 then return true end
  local ok, err = update(function(holders)
    local changed = false
    for _, id in ipairs(ids) do
      if holders[id] then holders[id], changed = nil, true end
    end
    return changed
  end)
  if not ok then return nil, err end
  return true
end

-- release(service, revision [, keep]) -> true | nil, err: instances above index `keep`
-- (default 0: all of the revision) hold no quota any more.
function M.release(service, revision, keep)
  check_args("release", service, revision)
  keep = keep or 0
  check_n("release", keep)
  local ok, err = update(function(holders)
    local changed = false
    for id, h in pairs(holders) do
      local idx = tonumber(id:match("/(%d+)$"))
      if h.service == service and h.revision == revision and idx and idx > keep then
        holders[id], changed = nil, true
      end
    end
    return changed
  end)
  if not ok then return nil, err end
  return true
end

-- reconcile(live) -> released count | nil, err. live(id) -> {service, revision} of an instance
-- the supervisor holds (or is reserving for), else nil. Holders without one are released
-- (their instance is gone: a crash between a reservation and its start); live instances
-- without a holder get one (adopted from an older daemon).
function M.reconcile(live, ids)
  if type(live) ~= "function" then error("quota.reconcile: live: function expected", 2) end
  local released = 0
  local ok, err = update(function(holders)
    released = 0
    local changed = false
    for id in pairs(holders) do
      if not live(id) then holders[id], released, changed = nil, released + 1, true end
    end
    for _, id in ipairs(ids or {}) do
      local inst = live(id)
      if type(inst) == "table" and not holders[id] then
        local res = (S.services[inst.service] or {}).resources or {}
        holders[id] = { service = inst.service, revision = inst.revision, tenant = tenant_of(inst.service),
          cpu = res.cpu, memory = res.memory, at = time.now() }
        changed = true
      end
    end
    return changed
  end)
  if not ok then return nil, err end
  if released > 0 then log.info("quota: reservations of instances that are gone released", { count = released }) end
  return released
end

-- headroom(service) -> n, quota: how many more instances of the service may start now
-- (math.huge when no quota bounds it) and the quota that bounds it ("tenants.acme.instances").
function M.headroom(service)
  if type(service) ~= "string" then error("quota.headroom: service: string expected, got " .. type(service), 2) end
  local scopes = scopes_of(service)
  if #scopes == 0 then return huge end
  local holders, err = read()
  if not holders then return nil, err end
  local best, which = huge, nil
  for _, scope in ipairs(scopes) do
    local used = usage(holders, scope)
    for _, r in ipairs(qc.RESOURCES) do
      local limit, per = scope.limits[r], per_instance(service, r)
      if limit and per > 0 then
        local room = floor((limit - used[r]) / per + 1e-9)
        if room < 0 then room = 0 end
        if room < best then best, which = room, scope.label .. "." .. r end
      end
    end
  end
  return best, which
end

-- The scopes the config declares with their usage, for GET /v1/quotas and the metrics.
local function scope_list(holders)
  local list, seen = {}, {}
  local names = {}
  for name in pairs(S.services) do names[#names + 1] = name end
  sort(names)
  for _, name in ipairs(names) do
    for _, scope in ipairs(scopes_of(name)) do
      if not seen[scope.metric] then
        seen[scope.metric] = true
        list[#list + 1] = { scope = scope.metric, quota = scope.label, limits = scope.limits, used = usage(holders, scope) }
      end
    end
  end
  for tenant, lim in pairs(S.quotas.tenants) do
    if not seen["tenants." .. tenant] then
      list[#list + 1] = { scope = "tenants." .. tenant, quota = "tenants." .. tenant, limits = lim,
        used = { instances = 0, cpu = 0, memory = 0 } }
    end
  end
  sort(list, function(a, b) return a.scope < b.scope end)
  return list
end

-- refresh([holders]): the gauges, from the holders this process last wrote (or read).
function M.refresh(holders)
  for _, s in ipairs(scope_list(holders or {})) do
    for _, r in ipairs(qc.RESOURCES) do
      if s.limits[r] then
        m_used:set(s.used[r], s.scope, r)
        m_limit:set(s.limits[r], s.scope, r)
      end
    end
  end
end

-- usage() -> { {scope, quota, limits, used}, ... } | nil, err (limits and used: instances, cpu, memory)
function M.usage()
  local holders, err = read()
  if not holders then return nil, err end
  M.refresh(holders)
  return scope_list(holders)
end

-- holders() -> { [instance id] = {service, revision, tenant, cpu, memory, at} } | nil, err
function M.holders() return read() end

return M
