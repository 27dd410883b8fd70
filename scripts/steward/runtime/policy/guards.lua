-- The capability checks in front of the public library's powerful functions, per policy
-- (steward.runtime.policy.sandbox builds a module's view with them). Each guarded function
-- looks at box.caps — the policy's effective capabilities, set by the loader once the grants
-- are resolved (nil while the file's top level runs: no I/O at load time) — and answers
-- nil, "capability 'x' not granted to <policy>" (counted in steward_capability_denied_total
-- and logged; the daemon's hook writes it to the audit log) when the call is outside them.
local caps = require "steward.runtime.policy.capabilities"
local metrics = require "steward.metrics"
local log = require "steward.log"

local type, ipairs, pairs, tostring, format = type, ipairs, pairs, tostring, string.format
local setmetatable, getmetatable, select, unpack = setmetatable, getmetatable, select, unpack

local M = {}

local m_denied = metrics.counter("steward_capability_denied_total",
  "Calls a policy made outside its granted capabilities", { "policy", "capability" })

-- on_denied(policy, capability, detail): set by the daemon (the audit log).
M.on_denied = nil

-- pg_connections: name -> connection string (the config's pg_connections)
M.pg_connections = {}

local function deny(box, cap, detail)
  local msg = format("capability '%s' not granted to %s", cap, box.name)
  if detail then msg = msg .. " (" .. detail .. ")" end
  m_denied:inc(1, box.name, cap)
  log.warn("capability denied", { policy = box.name, capability = cap, detail = detail })
  if M.on_denied then pcall(M.on_denied, box.name, cap, detail) end
  return nil, msg
end

local function scope_of(box, cap)
  local c = box.caps
  return c and c[cap]
end

-- realpath of the longest existing ancestor, with the rest appended (symbolic links inside a
-- granted directory must not lead outside it).
local ffi = require "ffi"
pcall(ffi.cdef, "char *realpath(const char *path, char *resolved_path); void free(void *ptr);")
function M.resolve(path)
  local rest = ""
  local p = path
  while p and p ~= "" do
    local r = ffi.C.realpath(p, nil)
    if r ~= nil then
      local s = ffi.string(r)
      ffi.C.free(r)
      if s == "/" and rest ~= "" then return rest end
      return s .. rest
    end
    local parent, leaf = p:match("^(.*)/([^/]*)$")
    if not parent then break end
    rest = "/" .. leaf .. rest
    p = parent
  end
  return path
end

local function fs_check(box, cap, path, what)
  local scope = scope_of(box, cap)
  if not scope then return deny(box, cap, what .. " " .. tostring(path)) end
  if type(path) ~= "string" then return true end -- the binding raises its own argument error
  local ok, why = caps.path_in(scope, path, M.resolve)
  if not ok then return deny(box, cap, why or ("outside the granted paths: " .. path)) end
  return true
end

local FS_READ = { read = true, stat = true, lstat = true, exists = true, list = true }
local FS_WRITE = { write = true, write_atomic = true, mkdir = true, remove = true }

local function guard_fs(box, mod, o)
  for fname in pairs(FS_READ) do
    local f = o[fname] or mod[fname]
    if type(f) == "function" then
      o[fname] = function(path, ...)
        local ok, err = fs_check(box, "fs.read", path, fname)
        if not ok then return nil, err end
        return f(path, ...)
      end
    end
  end
  for fname in pairs(FS_WRITE) do
    local f = o[fname] or mod[fname]
    if type(f) == "function" then
      o[fname] = function(path, ...)
        local ok, err = fs_check(box, "fs.write", path, fname)
        if not ok then return nil, err end
        return f(path, ...)
      end
    end
  end
  local rename = o.rename or mod.rename
  o.rename = function(from, to, ...)
    local ok, err = fs_check(box, "fs.write", from, "rename")
    if ok then ok, err = fs_check(box, "fs.write", to, "rename") end
    if not ok then return nil, err end
    return rename(from, to, ...)
  end
end

local function guard_http(box, mod, o)
  for _, fname in ipairs({ "request", "send_mail" }) do
    local f = o[fname] or mod[fname]
    if type(f) == "function" then
      o[fname] = function(opts, ...)
        local scope = scope_of(box, "http")
        local url = type(opts) == "table" and opts.url or nil
        if not scope then return deny(box, "http", fname .. " " .. tostring(url)) end
        if type(url) == "string" and not caps.url_in(scope, url) then
          return deny(box, "http", "outside the granted URLs: " .. url)
        end
        return f(opts, ...)
      end
    end
  end
end

-- A policy's process gets a clean environment (only the variables its grant names), so the
-- daemon's own (tokens, DSNs) never reach it, and the program must be one the grant names.
local function guard_proc(box, mod, o)
  local function wrap(fname)
    local f = o[fname] or mod[fname]
    return function(opts, ...)
      local scope = scope_of(box, "proc")
      if type(opts) ~= "table" or type(opts.cmd) ~= "table" then return f(opts, ...) end
      if not scope then return deny(box, "proc", tostring(opts.cmd[1])) end
      local item, why = caps.proc_in(scope, opts.cmd)
      if not item then return deny(box, "proc", why or ("not a granted program or arguments: " .. tostring(opts.cmd[1]))) end
      local copy = {}
      for k, v in pairs(opts) do copy[k] = v end
      local env = {}
      for _, name in ipairs(item.env or {}) do env[name] = os.getenv(name) end
      for k, v in pairs(opts.env or {}) do env[k] = v end
      copy.env = env
      return f(copy, ...)
    end
  end
  o.run = wrap("run")
  -- A spawned child outlives the run: its pid is remembered so the policy may signal it
  -- (proc.kill), and no other process of the daemon's user.
  local spawn = wrap("spawn")
  box.spawned = box.spawned or {}
  o.spawn = function(...)
    local h, err, code = spawn(...)
    if h then box.spawned[h.pid] = true end
    return h, err, code
  end
  local kill, watch, info = o.kill or mod.kill, o.watch or mod.watch, o.info or mod.info
  o.kill = function(pid, ...)
    if not scope_of(box, "proc") then return deny(box, "proc", "kill " .. tostring(pid)) end
    if type(pid) == "number" and not box.spawned[pid] then
      return deny(box, "proc", "kill of a process the policy did not spawn: " .. tostring(pid))
    end
    return kill(pid, ...)
  end
  o.watch = function(pid, ...)
    if not scope_of(box, "proc") then return deny(box, "proc", "watch " .. tostring(pid)) end
    return watch(pid, ...)
  end
  o.info = function(pid, ...)
    if not scope_of(box, "proc") then return deny(box, "proc", "info " .. tostring(pid)) end
    return info(pid, ...)
  end
end

local function pg_target(box, target)
  local scope = scope_of(box, "pg")
  if not scope then return nil, select(2, deny(box, "pg", tostring(target))) end
  if type(target) ~= "string" then return target end
  local named = M.pg_connections[target]
  if named then
    if not caps.item_in(scope, target) then return nil, select(2, deny(box, "pg", "connection " .. target)) end
    return named
  end
  for _, name in ipairs(scope == true and {} or scope) do
    if M.pg_connections[name] == target then return target end
  end
  if scope == true then return target end
  return nil, select(2, deny(box, "pg", "not a granted connection name"))
end

local function guard_pg(box, mod, o)
  for _, fname in ipairs({ "connect", "pool" }) do
    local f = o[fname] or mod[fname]
    if type(f) == "function" then
      o[fname] = function(target, ...)
        local dsn, err = pg_target(box, target)
        if not dsn then return nil, err end
        return f(dsn, ...)
      end
    end
  end
end

-- steward.deploy.migrations.measure connects to the database it measures: a granted `pg`
-- connection (its name, or a URL the grant allows), as steward.pg.connect would.
local function guard_migrations(box, mod, o)
  local measure = o.measure or mod.measure
  o.measure = function(target, ...)
    local dsn, err = pg_target(box, target)
    if not dsn then return nil, err end
    return measure(dsn, ...)
  end
end

-- Events: a policy emits the types its `events.emit` scope allows, else its own namespace
-- (types `<name>` and `<name>.*`); a tenant's policy emits and reads its tenant's only.
local function emit_allowed(box, t)
  local scope = scope_of(box, "events.emit")
  if scope then return caps.type_in(scope, t) end
  return t == box.name or t:sub(1, #box.name + 1) == box.name .. "."
end

local function guard_events(box, mod, o)
  local emit = o.emit or mod.emit
  o.emit = function(evs, ...)
    if type(evs) ~= "table" then return emit(evs, ...) end
    local list = evs[1] ~= nil and evs or { evs }
    local copy = {}
    for i, ev in ipairs(list) do
      if type(ev) == "table" then
        if type(ev.type) == "string" and not emit_allowed(box, ev.type) then
          return deny(box, "events.emit", "type " .. ev.type)
        end
        if box.tenant then
          if ev.tenant ~= nil and ev.tenant ~= box.tenant then
            return nil, format("events.emit: event %d: tenant: a policy of tenant %s emits only its tenant's events", i, box.tenant)
          end
          local e = {}
          for k, v in pairs(ev) do e[k] = v end
          e.tenant = box.tenant
          ev = e
        end
      end
      copy[i] = ev
    end
    return emit(copy, ...)
  end
  -- (box.tenant is known once the file has loaded: checked at each call.)
  local query, replay, get = o.query or mod.query, o.replay or mod.replay, o.get or mod.get
  local function confined(f)
    if not box.tenant then return f end
    local c = {}
    for k, v in pairs(type(f) == "table" and f or {}) do c[k] = v end
    c.tenant = box.tenant
    return c
  end
  o.query = function(f) return query(confined(f)) end
  o.replay = function(f) return replay(confined(f)) end
  o.get = function(id)
    local ev, err = get(id)
    if ev and box.tenant and ev.tenant ~= box.tenant then return nil end
    return ev, err
  end
end

-- Namespaces "steward:*" are the runtime's own (the supervisor's forwarded calls): a policy
-- writing there could act outside its capabilities.
local function guard_kv(box, mod, o)
  local ns = o.ns or mod.ns
  o.ns = function(name, ...)
    if type(name) == "string" and name:sub(1, 8) == "steward:" then
      error("kv.ns: namespace '" .. name .. "': names beginning with 'steward:' are reserved for the runtime", 2)
    end
    if not box.tenant or type(name) ~= "string" or name == "" then return ns(name) end
    return ns("tenant:" .. box.tenant .. ":" .. name)
  end
end

local function guard_notify(box, mod, o)
  local channel = o.channel or mod.channel
  o.channel = function(kind, ...)
    local scope = scope_of(box, "notify")
    if not scope then return error(select(2, deny(box, "notify", tostring(kind))), 2) end
    if not caps.item_in(scope, kind) then return error(select(2, deny(box, "notify", "channel kind " .. tostring(kind))), 2) end
    return channel(kind, ...)
  end
end

local function guard_slo(box, mod, o)
  local prom = o.prometheus or mod.prometheus
  o.prometheus = function(opts, ...)
    local scope = scope_of(box, "http")
    local url = type(opts) == "table" and opts.url or nil
    if not scope or (type(url) == "string" and not caps.url_in(scope, url)) then
      return error(select(2, deny(box, "http", "Prometheus at " .. tostring(url))), 2)
    end
    return prom(opts, ...)
  end
end

-- Analysis metric providers (issue 15, h3) are built at a policy's top level, before its
-- capabilities are known: the checks run when the metric is measured, and a denial is that
-- measurement's error (the analysis counts it), not a raise.
local function checked(provider, opts, ...)
  local ok, fn = pcall(provider, opts, ...)
  if not ok then error((tostring(fn):gsub("^[^:]*:%d+: ", "")), 3) end -- at the policy's line
  return fn
end

local function guard_deploy_prometheus(box, mod, o)
  local provider = o.provider or mod.provider
  o.provider = function(opts, ...)
    local fn = checked(provider, opts, ...)
    local url = opts.url
    return function()
      local scope = scope_of(box, "http")
      if not scope or not caps.url_in(scope, url) then return deny(box, "http", "Prometheus at " .. tostring(url)) end
      return fn()
    end
  end
  o.new = o.provider
end

local function guard_deploy_events(box, mod, o)
  local provider = o.provider or mod.provider
  o.provider = function(opts, ...)
    checked(provider, opts, ...) -- the fields are checked now, when the policy builds the metric
    local fn
    return function()
      if not fn then
        local c = {}
        for k, v in pairs(opts) do c[k] = v end
        if box.tenant then
          if c.tenant ~= nil and c.tenant ~= box.tenant then
            return nil, format("metrics.events: tenant: a policy of tenant %s reads only its tenant's events", box.tenant)
          end
          c.tenant = box.tenant
        end
        fn = provider(c)
      end
      return fn()
    end
  end
  o.new = o.provider
end

-- Modules that act on the alerting state (alerts, silences, incidents, notifications): the
-- `alerting` capability. Their compile functions are pure and run at a policy file's top
-- level (before its capabilities are known); what they return — engines, escalations — acts
-- later, so each of its methods checks the capability when called.
local function pack(...) return { n = select("#", ...), ... } end

local function proxy(box, cap, obj)
  local cache = {}
  return setmetatable({}, {
    __index = function(self, k)
      local v = obj[k]
      if type(v) ~= "function" then return v end
      local w = cache[k]
      if not w then
        w = function(this, ...)
          if not scope_of(box, cap) then return error(select(2, deny(box, cap, tostring(k))), 2) end
          if this == self then this = obj end
          return v(this, ...)
        end
        cache[k] = w
      end
      return w
    end,
    __newindex = function(_, k, v) obj[k] = v end,
    __metatable = "guarded by the '" .. cap .. "' capability",
  })
end

local function guard_all(cap)
  return function(box, mod, o)
    for fname, f in pairs(mod) do
      if type(f) == "function" and fname:sub(1, 1) ~= "_" then
        local inner = o[fname] or f
        o[fname] = function(...)
          -- At run time the capability is needed; at load time (caps not known yet) only
          -- what the call returns is guarded.
          if box.caps and not scope_of(box, cap) then return error(select(2, deny(box, cap, fname)), 2) end
          local r = pack(inner(...))
          for i = 1, r.n do
            -- objects (a table with a class metatable) act later: guard their methods
            if type(r[i]) == "table" and getmetatable(r[i]) ~= nil then r[i] = proxy(box, cap, r[i]) end
          end
          return unpack(r, 1, r.n)
        end
      end
    end
  end
end

-- steward.deploy drivers: the `deploy` capability scoped by service name (the first argument,
-- or args.service of a metric provider). Pure helpers (no service) pass.
local function guard_deploy(service_of, pure)
  return function(box, mod, o)
    for fname, f in pairs(mod) do
      if type(f) == "function" and not (pure and pure[fname]) and fname:sub(1, 1) ~= "_" then
        local inner = o[fname] or f
        o[fname] = function(...)
          local service = service_of(...)
          local scope = scope_of(box, "deploy")
          if not scope then return deny(box, "deploy", "service " .. tostring(service)) end
          if type(service) == "string" and not caps.service_in(scope, service) then
            return deny(box, "deploy", "service " .. service)
          end
          return inner(...)
        end
      end
    end
  end
end
-- steward.capacity.defer fires its event later, as events.emit would now: the same rule on its
-- type (the events.emit capability) and its tenant (a tenant's policy defers its tenant's only).
local function guard_capacity(box, mod, o)
  local defer = o.defer or mod.defer
  o.defer = function(opts, ...)
    if type(opts) ~= "table" or type(opts.event) ~= "table" then return defer(opts, ...) end
    local ev = opts.event
    if type(ev.type) == "string" and not emit_allowed(box, ev.type) then
      return deny(box, "events.emit", "type " .. ev.type)
    end
    if box.tenant then
      if ev.tenant ~= nil and ev.tenant ~= box.tenant then
        return nil, format("capacity.defer: event.tenant: a policy of tenant %s defers only its tenant's events", box.tenant)
      end
      local c, e = {}, {}
      for k, v in pairs(opts) do c[k] = v end
      for k, v in pairs(ev) do e[k] = v end
      e.tenant, c.event = box.tenant, e
      opts = c
    end
    return defer(opts, ...)
  end
end

local function first_arg(service) return service end
local function args_service(args) return type(args) == "table" and args.service or nil end

M.BY_MODULE = {
  ["steward.fs"] = guard_fs,
  ["steward.http"] = guard_http,
  ["steward.proc"] = guard_proc,
  ["steward.pg"] = guard_pg,
  ["steward.deploy.migrations"] = guard_migrations,
  ["steward.events"] = guard_events,
  ["steward.kv"] = guard_kv,
  ["steward.notify"] = guard_notify,
  ["steward.slo"] = guard_slo,
  ["steward.alerting.engine"] = guard_all("alerting"),
  ["steward.alerting.escalation"] = guard_all("alerting"),
  ["steward.alerting.incidents"] = guard_all("alerting"),
  ["steward.alerting.slo_alerts"] = guard_all("alerting"),
  ["steward.deploy.metrics.prometheus"] = guard_deploy_prometheus,
  ["steward.deploy.metrics.events"] = guard_deploy_events,
  ["steward.deploy.haproxy"] = guard_deploy(first_arg, { weights = true }),
  ["steward.deploy.kubernetes"] = guard_deploy(first_arg),
  ["steward.deploy.metrics.haproxy"] = guard_deploy(args_service),
  ["steward.deploy.supervisor"] = guard_deploy(first_arg),
  ["steward.deploy.supervisor_alerts"] = guard_all("alerting"),
  ["steward.capacity"] = guard_capacity, -- h5: a deferred job's event, as events.emit
  ["steward.archive"] = guard_all("archive"), -- issue 16, h6
  -- customer success (h11): every ticket, score and milestone is every tenant's
  ["steward.success.tickets"] = guard_all("success"), ["steward.success.health"] = guard_all("success"),
  ["steward.success.onboarding"] = guard_all("success"),
  -- issue 18: billing (every tenant's subscriptions and money); one line per part
  ["steward.billing.subscriptions"] = guard_all("billing"), ["steward.billing.usage"] = guard_all("billing"), -- h4
  ["steward.billing.plans"] = guard_all("billing"), ["steward.billing.metrics"] = guard_all("billing"), -- h4
  ["steward.billing.coupons"] = guard_all("billing"), ["steward.billing.wallets"] = guard_all("billing"), -- h4
  ["steward.billing.invoices"] = guard_all("billing"), ["steward.billing.credit_notes"] = guard_all("billing"), -- h5
}

-- overrides(box, name, mod, o) -> o with the capability checks in front (outermost)
function M.overrides(box, name, mod, o)
  local g = M.BY_MODULE[name]
  if not g then return o end
  o = o or {}
  g(box, mod, o)
  return o
end

-- steward.deploy re-exports its parts (deploy.supervisor, deploy.haproxy, ...): a policy gets
-- each as its own require would give it — public or refused, with that part's checks in front.
local function guard_deploy_parts(box, mod, o)
  setmetatable(o, { __index = function(_, k)
    if type(mod.PARTS) == "table" and mod.PARTS[k] and box.require then return box.require("steward.deploy." .. k) end
    return nil
  end })
end
M.BY_MODULE["steward.deploy"] = guard_deploy_parts

-- issue 16, h3: an autoscaler's metric sources read a service's HAProxy stats, its instances'
-- /proc or a Prometheus URL when sampled: the policy that built one needs `deploy` for the
-- service sampled (and `http` for a Prometheus URL), whoever calls sample — the loop, which
-- checks too, or the policy itself. steward.scaling re-exports them (scaling.source.<kind>).
local function guard_scaling_sources(box, mod, o)
  for kind in pairs(mod.KINDS or {}) do
    local build = mod[kind]
    o[kind] = function(opts)
      local ok, src = pcall(build, opts)
      if not ok then error((tostring(src):gsub("^[^:]*:%d+: ", "")), 2) end
      local sample, url = src.sample, src.needs and src.needs.http
      local copy = {}
      for k, v in pairs(src) do copy[k] = v end
      copy.sample = function(ctx, memo)
        local service = type(ctx) == "table" and ctx.service or nil
        local scope = scope_of(box, "deploy")
        if not scope or type(service) ~= "string" or not caps.service_in(scope, service) then
          local _, msg = deny(box, "deploy", "service " .. tostring(service))
          return { error = msg }
        end
        if url then
          local h = scope_of(box, "http")
          if not h or not caps.url_in(h, url) then
            local _, msg = deny(box, "http", "Prometheus at " .. url)
            return { error = msg }
          end
        end
        return sample(ctx, memo)
      end
      return copy
    end
  end
end
M.BY_MODULE["steward.scaling.sources"] = guard_scaling_sources
M.BY_MODULE["steward.scaling"] = function(box, _, o)
  o.source = setmetatable({}, { __index = function(_, k)
    local sources = box.require and box.require("steward.scaling.sources")
    local f = sources and sources[k]
    if type(f) ~= "function" then error(format("scaling.source.%s: unknown source (haproxy, prometheus, events, proc)", tostring(k)), 2) end
    return f
  end })
end

return M
