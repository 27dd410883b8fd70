-- The policy sandbox: a fresh environment per policy, holding only what policy code may use,
-- and the compiler that binds a chunk to it (text only, JIT off so the CPU guard's hook can
-- stop its loops). What a policy gets, and why, is listed in docs/policies.md ("Sandbox and
-- limits"); tests/lua/sandbox_spec.lua tries every escape we know of.
--
-- Isolation rests on three rules: nothing shared is handed out writable (library tables are
-- copies; runtime modules and foreign metatables are read-only views), no function that
-- reaches outside the environment is present (load, setfenv/getfenv, debug, package, io,
-- ffi, jit), and coroutines the policy did not create cannot be resumed by it (a task's
-- coroutine belongs to the scheduler).
local guard = require "steward.runtime.guard"
local effects = require "steward.runtime.effects"
local emit = require "steward.runtime.policy.emit"
local guards = require "steward.runtime.policy.guards"
local is_store = require("steward.runtime.store").is_store
local log = require "steward.log"
local fs = require "steward.fs"

local type, pairs, ipairs, next, select, error, tostring = type, pairs, ipairs, next, select, error, tostring
local setmetatable, getmetatable, rawget, setfenv, loadstring = setmetatable, getmetatable, rawget, setfenv, loadstring
local unpack, concat, format, floor = unpack, table.concat, string.format, math.floor
local os_time, os_date = os.time, os.date
local co_create, co_resume = coroutine.create, coroutine.resume
local adopt, preempted, pause = guard.adopt, guard.preempted, guard.pause
local jit_off = jit.off

local M = {}

-- The public library: the only modules a policy may require besides its own under
-- policies/lib (docs/lua-api.md lists them). Everything else — the runtime's internals under
-- steward.runtime.*, bindings for scripts such as steward.signal — is refused, and a module
-- added later stays private until it is listed here. `hide`: functions that configure the
-- runtime and are not for policies. The capability checks in front of the powerful
-- functions are steward.runtime.policy.guards'.
M.PUBLIC = {
  ["steward.json"] = {}, ["steward.time"] = {}, ["steward.log"] = {}, ["steward.metrics"] = {},
  ["steward.crypto"] = {}, ["steward.task"] = {}, ["steward.pretty"] = {},
  ["steward.kv"] = {}, ["steward.events"] = {},
  ["steward.http"] = {}, ["steward.proc"] = {}, ["steward.fs"] = {}, ["steward.pg"] = {},
  ["steward.notify"] = { hide = { set_store = true, purge = true } },
  ["steward.slo"] = {},
  ["steward.deploy"] = {}, -- rollout policies; its parts are public one by one (below)
  ["steward.alerting.engine"] = { hide = { cleanup = true } },
  ["steward.alerting.escalation"] = {}, ["steward.alerting.slo_alerts"] = {},
  ["steward.alerting.incidents"] = { hide = { ready = true, refresh_gauge = true } },
  ["steward.alerting.route"] = {}, ["steward.alerting.matchers"] = {}, ["steward.alerting.tz"] = {},
  ["steward.alerting.timeintervals"] = {}, ["steward.alerting.fingerprint"] = {},
  ["steward.alerting.oncall"] = {}, ["steward.alerting.silences"] = {}, ["steward.alerting.inhibit"] = {},
  -- issue 15, h3: analysis, Flagger's schedule, metric providers
  ["steward.deploy.analysis"] = {}, ["steward.deploy.flagger"] = {},
  ["steward.deploy.metrics.prometheus"] = {}, ["steward.deploy.metrics.events"] = {},
  ["steward.deploy.metrics.slo"] = {},
  -- h5: approvals (a policy asks; people decide), change freezes, environments
  ["steward.deploy.approvals"] = { hide = { ready = true, decide = true, expire = true, expire_due = true, sign = true,
                                            link = true } },
  ["steward.deploy.freeze"] = {}, ["steward.deploy.environments"] = {},
  ["steward.deploy.haproxy"] = { hide = { configure = true } },
  ["steward.deploy.kubernetes"] = { hide = { configure = true } },
  ["steward.deploy.metrics.haproxy"] = {},
  -- issue 16, h6: archival (the `archive` capability)
  ["steward.archive"] = { hide = { configure = true } },
  ["steward.deploy.supervisor_alerts"] = {},
  ["steward.deploy.supervisor"] = { hide = { configure = true, supervise = true, release = true, status = true } },
  ["steward.sqlparse"] = {}, ["steward.deploy.migrations"] = {}, -- measure: `pg` (guards.lua)
  -- issue 16, h5: capacity history and reports, cost, deferred jobs (the daemon's duties hidden)
  ["steward.capacity"] = { hide = { configure = true, start = true, flush = true } },
  -- issue 16, h1: Kubernetes HPA v2 (pure)
  ["steward.scaling.hpa"] = {},
  -- issue 16, h3: the autoscaler policy and its metric sources (the loop and views are runtime-side)
  ["steward.scaling"] = { hide = { optional = true } }, ["steward.scaling.sources"] = {},
  -- issue 16, h4: quotas; policies read them (a reservation is the supervisor's, with its instance)
  ["steward.scaling.quota"] = { hide = { configure = true, reserve = true, release = true, release_ids = true,
                                         reconcile = true, refresh = true } },
  -- issue 16, h2: KEDA's activation, scheduled and predictive scaling, forecasting (pure)
  ["steward.scaling.keda"] = {}, ["steward.scaling.schedule"] = {}, ["steward.scaling.predict"] = {},
  ["steward.capacity.forecast"] = {},
  -- issue 17, h11: customer success (guarded by the `success` capability)
  ["steward.success.tickets"] = { hide = { ready = true, csat_verify = true } },
  ["steward.success.health"] = {}, ["steward.success.onboarding"] = {},
  -- issue 18, h1: exact money (pure; the module is callable: decimal("12.50"))
  ["steward.decimal"] = {},
  -- issue 18, h4: plans, subscriptions, usage, coupons, wallets (the `billing` capability guards them;
  -- steward.billing itself loads parts with the unguarded require, so policies require the parts)
  ["steward.billing.config"] = { hide = { configure = true } },
  ["steward.billing.subscriptions"] = { hide = { ready = true } }, ["steward.billing.usage"] = { hide = { ready = true } },
  ["steward.billing.plans"] = { hide = { ready = true } }, ["steward.billing.metrics"] = { hide = { ready = true } },
  ["steward.billing.coupons"] = { hide = { ready = true } }, ["steward.billing.wallets"] = { hide = { ready = true } },
  -- issue 18, h3: billable metrics and billing periods (pure formulas)
  ["steward.billing.aggregate"] = {}, ["steward.billing.periods"] = {},
  ["steward.billing.charges"] = {}, -- issue 18, h2: charge models (pure)
  -- issue 18, h5: invoices and credit notes (the `billing` capability guards them); taxes are pure
  ["steward.billing.invoices"] = { hide = { ready = true } }, ["steward.billing.credit_notes"] = { hide = { use_statements = true } },
  ["steward.billing.taxes"] = {},
}

-- Why a module is refused (for the error): the runtime's internals, or not listed.
local function refusal(name)
  if name:match("^steward%.runtime%.") or name == "steward.runtime" then
    return "it is part of the runtime's internals, not the public library"
  end
  if name:match("%.native$") then return "it is the internal half of a module; require the module itself" end
  return "it is not in the public library (docs/lua-api.md)"
end

-- Functions of allowed modules whose function arguments run later, in a task of their own:
-- those callbacks are run under the policy's budgets too.
M.CALLBACKS = {
  ["steward.task"] = { spawn = true },
  ["steward.time"] = { after = true, every = true },
}

M.DEFAULT_LIB_DIR = "policies/lib"

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then c[k] = v end
  end
  return c
end

-- Read-only views: an empty table whose __index reads the target (wrapping nested tables
-- in views too) and whose __newindex refuses. One cache per policy, so a policy that
-- rawsets into a view changes only its own view.
local function make_views(box)
  local views = setmetatable({}, { __mode = "k" })  -- target -> view
  local targets = setmetatable({}, { __mode = "k" }) -- view -> target
  local function view(t, overrides)
    local v = views[t]
    if v then return v end
    local mt = getmetatable(t)
    v = setmetatable({}, {
      -- a callable module (steward.decimal) stays callable through its view
      __call = type(mt) == "table" and mt.__call and function(_, ...) return t(...) end or nil,
      __index = function(_, k)
        if overrides then
          local o = overrides[k]
          if o ~= nil then return o end
        end
        local x = t[k]
        if type(x) == "table" then
          -- Defence in depth: no field of the public library leads to the store itself.
          if is_store(x) then
            error(format("field '%s' is internal to the runtime and not available to policies", tostring(k)), 2)
          end
          return view(x)
        end
        return x
      end,
      __newindex = function(_, k)
        error(format("attempt to modify a read-only table (field '%s'): it is shared with the runtime",
          tostring(k)), 2)
      end,
      __metatable = "read-only",
    })
    views[t], targets[v] = v, t
    return v
  end
  box.view, box.targets = view, targets
end

-- next/pairs/ipairs that see through read-only views.
local function make_iterators(box)
  local targets, view = box.targets, box.view
  local function wrap(k, v)
    if type(v) == "table" then v = view(v) end
    return k, v
  end
  local function vnext(t, k)
    local target = targets[t]
    if not target then return next(t, k) end
    local nk, nv = next(target, k)
    if nk == nil then return nil end
    return wrap(nk, nv)
  end
  local function vpairs(t)
    if targets[t] then return vnext, t, nil end
    return pairs(t)
  end
  local function vipairs(t)
    local target = targets[t]
    if not target then return ipairs(t) end
    return function(_, i)
      i = i + 1
      local v = target[i]
      if v == nil then return nil end
      return wrap(i, v)
    end, t, 0
  end
  return vnext, vpairs, vipairs
end

local function pack(...) return { n = select("#", ...), ... } end

-- The policy's budgets also hold for a callback run later in a task of its own, and so does
-- the cause depth of the run that handed it over (steward.runtime.policy.emit).
local function guarded(box, fn)
  if type(fn) ~= "function" then return fn end
  local continues = emit.inherit()
  local function run(...)
    continues()
    return fn(...)
  end
  return function(...)
    if guard.covered() then return fn(...) end
    local r = pack(guard.run(box.budget, run, ...))
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

local function callback_overrides(box, name, mod)
  local list = M.CALLBACKS[name]
  if not list then return nil end
  local o = {}
  for fname in pairs(list) do
    local f = mod[fname]
    if type(f) == "function" then
      o[fname] = function(...)
        local n, args = select("#", ...), { ... }
        for i = 1, n do args[i] = guarded(box, args[i]) end
        return f(unpack(args, 1, n))
      end
    end
  end
  return o
end

local new_env

-- Loads policies/lib/<a>/<b>.lua (or <a>/<b>/init.lua) into a sandbox of its own that shares
-- the policy's budgets, views and module cache: each policy gets its own instance.
local function load_lib(box, name)
  if not name:match("^[%w_-]+[%w_.-]*$") or name:find("..", 1, true) or name:sub(-1) == "." then
    return nil
  end
  local rel = name:gsub("%.", "/")
  local tried = {}
  for _, suffix in ipairs({ ".lua", "/init.lua" }) do
    local path = box.lib_dir .. "/" .. rel .. suffix
    local src, err = fs.read(path)
    if src then
      -- The loader records what each policy required (its version covers their digests).
      if box.on_lib then box.on_lib(name, path, src) end
      local fn, cerr = M.compile(new_env(box), src, "@" .. path)
      if not fn then error(cerr, 0) end
      return fn, path
    end
    if not (err and err:match("^ENOENT")) then error(format("require '%s': %s", name, err), 0) end
    tried[#tried + 1] = path
  end
  return nil, tried
end

local function make_require(box)
  local loaded, loading = box.loaded, {}
  return function(name)
    if type(name) ~= "string" then
      error("require: module name (string) expected, got " .. type(name), 2)
    end
    local m = loaded[name]
    if m ~= nil then return m end
    if loading[name] then error(format("require '%s': circular require", name), 2) end
    if name:match("^steward%.") then
      local spec = M.PUBLIC[name]
      if not spec and not box.allow[name] then
        error(format("require '%s': not available to policies (%s)", name, refusal(name)), 2)
      end
      local mod = require(name)
      if type(mod) == "table" then
        -- Callbacks run under the policy's budgets; what it emits is bounded
        -- (steward.runtime.policy.emit) and, like its other side effects, recorded
        -- (steward.runtime.effects); capability checks come first (steward.runtime.policy.guards).
        local o = effects.overrides(name, mod, emit.overrides(name, mod, callback_overrides(box, name, mod)))
        o = guards.overrides(box, name, mod, o)
        for fname in pairs(spec and spec.hide or {}) do
          o = o or {}
          o[fname] = function() error(format("%s.%s is not available to policies", name, fname), 2) end
        end
        m = box.view(mod, o)
      else
        m = mod
      end
    else
      loading[name] = true
      local fn, where = load_lib(box, name)
      if not fn then
        loading[name] = nil
        error(format("require '%s': not available to policies: a policy may require steward.* " ..
          "modules and its own modules under %s%s", name, box.lib_dir,
          where and (" (tried " .. concat(where, ", ") .. ")") or ""), 2)
      end
      local ok, r = pcall(fn, name)
      loading[name] = nil
      if not ok then error(r, 0) end
      m = r == nil and true or r
    end
    loaded[name] = m
    return m
  end
end

local function make_box(opts)
  opts = opts or {}
  local name = opts.name or "policy"
  local box = {
    name = name,
    lib_dir = opts.lib_dir or M.DEFAULT_LIB_DIR,
    budget = { name = name, cpu = opts.cpu or guard.DEFAULT_CPU, memory = opts.memory or guard.DEFAULT_MEMORY },
    loaded = {},
    allow = {},
    own_mt = setmetatable({}, { __mode = "k" }),
    own_co = setmetatable({}, { __mode = "k" }),
    log = opts.log,
    on_lib = opts.on_lib,
  }
  for _, n in ipairs(opts.allow or {}) do box.allow[n] = true end
  make_views(box)
  box.next, box.pairs, box.ipairs = make_iterators(box)
  box.require = make_require(box)
  for n, m in pairs(opts.modules or {}) do box.loaded[n] = m end
  return box
end

local STRING_EXCEPT = { dump = true }

-- The daemon's own STEWARD_* variables configure it (the admin token, the store's DSN with its
-- password): a policy reads every other variable, never those.
local function policy_getenv(name)
  if type(name) == "string" and name:upper():match("^STEWARD_") then return nil end
  return os.getenv(name)
end

-- A fresh global table on box (the policy's, or a lib module's sharing it).
function new_env(box)
  local view, own_mt, own_co = box.view, box.own_mt, box.own_co
  local env = {
    assert = assert, error = error, pcall = pcall, xpcall = xpcall, select = select,
    tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    rawequal = rawequal, rawget = rawget, rawset = rawset, rawlen = rawget(_G, "rawlen"),
    next = box.next, pairs = box.pairs, ipairs = box.ipairs,
    require = box.require,
    _VERSION = _VERSION,
  }
  env.setmetatable = function(t, mt)
    if type(mt) == "table" then own_mt[mt] = true end
    return setmetatable(t, mt)
  end
  -- A metatable the policy did not set (strings', the runtime's objects') is seen read-only.
  env.getmetatable = function(v)
    local mt = getmetatable(v)
    if type(mt) ~= "table" or own_mt[mt] then return mt end
    return view(mt)
  end
  env.collectgarbage = function(opt)
    if opt == "count" then return collectgarbage("count") end
    error("collectgarbage: only collectgarbage(\"count\") is available to policies", 2)
  end
  local logf = box.log or function(msg) log.info(msg, { policy = box.name }) end
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    logf(concat(parts, "\t"))
  end
  env.string = copy(string, STRING_EXCEPT)
  env.table = copy(table)
  env.math = copy(math)
  env.bit = copy(bit)
  -- os.time() and os.date(fmt) read the clock the policy's steward.time reads, so under
  -- `steward test` they follow the fake clock as time.now() does; given a time (or a date
  -- table) they are the plain conversions.
  local function now() return floor(box.require("steward.time").now()) end
  env.os = {
    time = function(t) if t == nil then return now() end return os_time(t) end,
    date = function(fmt, t) if t == nil then t = now() end return os_date(fmt, t) end,
    clock = os.clock, difftime = os.difftime, getenv = policy_getenv,
  }
  local co = copy(coroutine)
  -- Every coroutine a policy makes is adopted by the guard, which may yield it to slice a
  -- long computation; resume passes that turn up to the task and then goes on, so a loop in a
  -- policy's coroutine shares the loop like one in its handler (steward.runtime.guard's header).
  local function resume(c, ...)
    local r = pack(co_resume(c, ...))
    while r[1] and r.n == 1 and preempted(c) do
      pause()
      r = pack(co_resume(c))
    end
    return unpack(r, 1, r.n)
  end
  co.create = function(f)
    local c = co_create(f)
    own_co[c] = true
    return adopt(c)
  end
  -- A task's coroutine belongs to the scheduler: resuming it by hand would run it while its
  -- operation is still pending.
  co.resume = function(c, ...)
    if not own_co[c] then
      error("coroutine.resume: not a coroutine this policy created with coroutine.create", 2)
    end
    return resume(c, ...)
  end
  co.wrap = function(f)
    if type(f) ~= "function" then error("bad argument #1 to 'wrap' (function expected)", 2) end
    local c = co.create(f)
    return function(...)
      local r = pack(resume(c, ...))
      if not r[1] then error(r[2], type(r[2]) == "string" and 2 or 0) end
      return unpack(r, 2, r.n)
    end
  end
  env.coroutine = co
  env._G = env
  return env
end

-- new_env{name, cpu, memory, lib_dir, log, allow, modules} -> env, box
--   cpu, memory: the budgets for callbacks the policy hands to task.spawn/time.after/every
--   (defaults guard.DEFAULT_CPU, guard.DEFAULT_MEMORY); box.budget is the table to pass to
--   guard.run for the policy's handle/decide. lib_dir: where require finds the policy's own
--   modules (default "policies/lib"). log(msg): where print goes (default log.info tagged
--   with the policy). allow: internal module names to allow anyway (the test harness).
--   modules: name -> value preloaded into the policy's require cache. on_lib(name, path, src):
--   called for each module under lib_dir the policy requires, when it is read.
function M.new_env(opts)
  local box = make_box(opts)
  return new_env(box), box
end

-- compile(env, src, chunkname) -> fn | nil, err: text only, bound to env, never JIT-compiled
-- (nor any function defined in it), so the guard's hook sees every loop it runs.
function M.compile(env, src, chunkname)
  if type(src) ~= "string" then return nil, "source: string expected" end
  if src:byte(1) == 27 then
    return nil, (chunkname or "?"):gsub("^[@=]", "") .. ": precompiled bytecode is not accepted"
  end
  local fn, err = loadstring(src, chunkname)
  if not fn then return nil, err end
  setfenv(fn, env)
  jit_off(fn, true)
  return fn
end

-- run(box, fn, ...) -> true, results... | false, err [, "cpu"|"memory"]
function M.run(box, fn, ...)
  return guard.run(box.budget, fn, ...)
end

return M
