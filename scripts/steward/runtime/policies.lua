-- Finds and loads policy files: each file under the policy directory returns
-- {name, on, key, handle}. Names default to the path (dots for slashes); `on` holds event
-- type patterns ("alert.firing", "alert.*", "*"); `key` orders events (default: tenant).
-- The policies issue adds sandboxing, config schemas, versions and hot reload on top.
-- A policy's version digests its source, every policies/lib module it required and its
-- effective configuration, so the decision log tells any change of behaviour apart.
local fs = require "steward.fs"
local crypto = require "steward.crypto"
local sandbox = require "steward.runtime.policy.sandbox"
local capabilities = require "steward.runtime.policy.capabilities"
local time = require "steward.time"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format, sort, concat = string.format, table.sort, table.concat

local M = {}

-- Compiles a type pattern into a predicate. "a.*" matches "a.b" and "a.b.c"; "*" all.
function M.pattern(p)
  if p == "*" then return function() return true end end
  if p:sub(-2) == ".*" then
    local prefix = p:sub(1, -2)
    local n = #prefix
    return function(t) return t:sub(1, n) == prefix end
  end
  return function(t) return t == p end
end

local function matcher(patterns)
  local preds = {}
  for i, p in ipairs(patterns) do preds[i] = M.pattern(p) end
  if #preds == 1 then return preds[1] end
  return function(t)
    for i = 1, #preds do if preds[i](t) then return true end end
    return false
  end
end

local function default_key(ev) return ev.tenant or "" end

-- The source of the file being checked, so an error can name the line of its field.
local checking_src

-- Line of the first `field =` in the source (the top-level key of the policy table), if any.
local function line_of(field)
  if not checking_src then return nil end
  local key = field:match("^([%a_][%w_]*)")
  if not key then return nil end
  local n = 0
  for line in (checking_src .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find("^%s*" .. key .. "%s*=") or line:find("[{,]%s*" .. key .. "%s*=") then return n end
  end
  return nil
end

local function fail(file, field, reason)
  local line = line_of(field)
  if line then return nil, format("%s:%d: %s: %s", file, line, field, reason) end
  return nil, format("%s: %s: %s", file, field, reason)
end

-- Validates what a policy file returned; fills defaults.
function M.check(def, file, name)
  if type(def) ~= "table" then return fail(file, "return", "a policy file must return a table") end
  for k in pairs(def) do
    if not ({ name = 1, on = 1, key = 1, handle = 1, decide = 1, config = 1, when = 1, timeout = 1, schedule = 1,
              capabilities = 1, tenant = 1, decision_log = 1, handle_batch = 1, batch_max = 1, autoscaler = 1 })[k] then
      return fail(file, tostring(k), "unknown field")
    end
  end
  local p = { file = file }
  p.name = def.name or name
  if type(p.name) ~= "string" or not p.name:match("^[%w_.-]+$") then
    return fail(file, "name", "must be a string of letters, digits, '.', '_' or '-'")
  end
  local on = def.on
  if type(on) == "string" then on = { on } end
  if on ~= nil then
    if type(on) ~= "table" or #on == 0 then
      return fail(file, "on", "must be an event type pattern or a list of them")
    end
    for i, pat in ipairs(on) do
      if type(pat) ~= "string" or not (pat == "*" or pat:match("^[a-z0-9_-]+[a-z0-9_.-]*%*?$")) then
        return fail(file, format("on[%d]", i), "must be a dotted event type, optionally ending in .*")
      end
    end
  end
  p.on = on or {}
  -- schedule: a cron expression; the daemon keeps a durable schedule "policy:<name>" whose
  -- slots are policy.schedule events for this policy alone (steward.runtime.dispatch checks the name).
  if def.schedule ~= nil then
    local cron = require "steward.runtime.store.cron"
    local sched, cerr
    if type(def.schedule) == "string" then sched, cerr = cron.parse(def.schedule) end
    if not sched then
      return fail(file, "schedule", type(def.schedule) == "string" and tostring(cerr) or "must be a cron expression such as \"*/5 * * * *\"")
    end
    if not def.handle then return fail(file, "handle", "a policy with a `schedule` needs a handle function") end
    p.schedule = def.schedule
    local list = { "policy.schedule" }
    for _, pat in ipairs(p.on) do list[#list + 1] = pat end
    p.matches = matcher(list)
  else
    p.matches = matcher(p.on)
  end
  if def.key ~= nil and type(def.key) ~= "function" then
    return fail(file, "key", "must be a function(event) returning the ordering key")
  end
  p.key = def.key or default_key
  if def.handle ~= nil and type(def.handle) ~= "function" then
    return fail(file, "handle", "must be a function(event, ctx)")
  end
  -- handle_batch(events, ctx): the queued events of one key in one run (steward.runtime.dispatch);
  -- `handle` still runs them one at a time when a batch run fails.
  if def.handle_batch ~= nil then
    if type(def.handle_batch) ~= "function" then
      return fail(file, "handle_batch", "must be a function(events, ctx)")
    end
    if not def.handle then return fail(file, "handle", "a policy with `handle_batch` needs a handle function") end
  end
  if def.batch_max ~= nil and (type(def.batch_max) ~= "number" or def.batch_max < 1 or def.batch_max % 1 ~= 0
      or def.batch_max > 10000) then
    return fail(file, "batch_max", "must be an integer from 1 to 10000 (events per batch run)")
  end
  p.handle_batch, p.batch_max = def.handle_batch, def.batch_max or 500
  if def.timeout ~= nil then
    local secs = (type(def.timeout) == "number" or type(def.timeout) == "string") and time.parse_duration(def.timeout)
    if not secs or secs <= 0 then
      return fail(file, "timeout", "must be a duration greater than 0 (seconds or a string such as \"30s\")")
    end
    p.timeout = secs -- the whole run, waits included (the daemon's limits.handler_timeout otherwise)
  end
  if def.when ~= nil and type(def.when) ~= "function" then
    return fail(file, "when", "must be a function(event) returning true to handle the event")
  end
  p.when = def.when
  if def.decide ~= nil and type(def.decide) ~= "function" then
    return fail(file, "decide", "must be a function(input, ctx)")
  end
  if #p.on > 0 and not def.handle then
    return fail(file, "handle", "a policy with `on` needs a handle function")
  end
  p.handle, p.decide, p.config_decl = def.handle, def.decide, def.config
  -- autoscaler: the spec scaling.autoscaler{} checked; the runtime's control loop ticks it
  -- (steward.scaling.loop). Checked again here: the field is not for hand-written tables.
  if def.autoscaler ~= nil then
    if type(def.autoscaler) ~= "table" or type(def.autoscaler.service) ~= "string" or type(def.autoscaler.metrics) ~= "table" then
      return fail(file, "autoscaler", "set by steward.scaling's autoscaler{...}, not by hand")
    end
    p.autoscaler = def.autoscaler
  end
  -- decision_log = "durable": a decision's answer waits for the commit of its log row.
  if def.decision_log ~= nil then
    if def.decision_log ~= "async" and def.decision_log ~= "durable" then
      return fail(file, "decision_log", "must be \"async\" or \"durable\"")
    end
    if not def.decide then return fail(file, "decision_log", "applies to decide: the policy has no decide function") end
    p.decision_log = def.decision_log
  end
  -- tenant: a tenant's policy sees that tenant's events only, never gets host capabilities.
  if def.tenant ~= nil then
    if type(def.tenant) ~= "string" or def.tenant == "" or #def.tenant > 200 then
      return fail(file, "tenant", "must be a tenant name (a string of 1 to 200 bytes)")
    end
    p.tenant = def.tenant
  end
  -- capabilities: what it needs beyond computation, kv, log, metrics and its own events
  -- (steward.runtime.policy.capabilities); the operator's grants decide at load.
  local declared, cerr = capabilities.parse(def.capabilities, "capabilities")
  if not declared then return fail(file, "capabilities", (cerr:gsub("^capabilities:?%s*", ""))) end
  p.declared = declared
  -- The config schema (steward.runtime.policy.schema): defaults now, overlays when the daemon loads it.
  local schema = require "steward.runtime.policy.schema"
  local compiled, serr = schema.compile(def.config)
  if not compiled then return nil, file .. ": " .. schema.describe(serr) end
  p.schema = compiled
  p.config = schema.merge(compiled, {}) or {}
  p.tenant_configs = {}
  return p
end

-- The 16-hex-digit digest used for sources, lib modules and versions.
function M.digest(text)
  return crypto.hex(crypto.sha256(text)):sub(1, 16)
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- A canonical text of a config value (keys sorted), so equal configurations digest equally.
-- A table nested deeper than 32 levels (a cycle) ends there.
local function canon(v, out, depth)
  depth = depth or 0
  local t = type(v)
  if t == "table" and depth > 32 then
    out[#out + 1] = "<too deep>"
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys, key_order)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      canon(k, out, depth + 1); out[#out + 1] = "="; canon(v[k], out, depth + 1); out[#out + 1] = ";"
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = format("%q", v)
  elseif t == "number" then
    out[#out + 1] = format("%.17g", v)
  elseif t == "boolean" or t == "nil" then
    out[#out + 1] = tostring(v)
  else
    out[#out + 1] = t -- a function's address changes at every load; its source is digested
  end
  return out
end

-- version(p) -> digest of the source, the lib modules (name and digest) and the effective
-- configuration (base and per tenant). The registry calls it again once overlays are applied.
function M.version(p)
  local parts = { "source ", p.source_digest, "\n" }
  local names = {}
  for name in pairs(p.libs or {}) do names[#names + 1] = name end
  sort(names)
  for _, name in ipairs(names) do
    parts[#parts + 1] = format("lib %s %s\n", name, p.libs[name].digest)
  end
  parts[#parts + 1] = "config "
  canon(p.config, parts)
  parts[#parts + 1] = "\ntenants "
  canon(p.tenant_configs, parts)
  -- What it may do is part of what it does: a changed grant makes a new version.
  parts[#parts + 1] = "\ncapabilities "
  canon(p.capabilities or {}, parts)
  return M.digest(concat(parts))
end

-- Loads one file into a sandbox of its own (steward.runtime.policy.sandbox); the file's top-level
-- code runs under the policy's CPU and memory budgets. opts: {lib_dir, cpu, memory} are the
-- defaults; a policy may set its own with `limits = {cpu = "500ms", memory = 16 * 2^20}`.
-- The result carries p.budget, the opts for guard.run(p.budget, p.handle, ev, ctx), and p.env.
function M.load_file(path, name, opts)
  opts = opts or {}
  local src, err = opts.source, nil
  if not src then
    src, err = fs.read(path)
    if not src then return nil, err end
  end
  -- Every lib module the policy requires, now or later from a handler: name -> {file, digest}.
  local libs = {}
  local function on_lib(mod, file, text) libs[mod] = { file = file, digest = M.digest(text) } end
  local env, box = sandbox.new_env({ name = name, lib_dir = opts.lib_dir, cpu = opts.cpu, memory = opts.memory,
    modules = opts.modules, on_lib = on_lib })
  local fn
  fn, err = sandbox.compile(env, src, "@" .. path)
  if not fn then return nil, err end
  local ok, def = sandbox.run(box, fn)
  if not ok then return nil, tostring(def) end
  if type(def) == "table" and def.limits ~= nil then
    local limits = def.limits
    if type(limits) ~= "table" then return fail(path, "limits", "must be a table {cpu = duration, memory = bytes}") end
    for k, v in pairs(limits) do
      if k == "cpu" then
        local okd, secs = pcall(time.parse_duration, v)
        if not okd or type(secs) ~= "number" or secs <= 0 then
          return fail(path, "limits.cpu", "must be a duration greater than 0 (seconds or a string such as \"500ms\")")
        end
        box.budget.cpu = secs
      elseif k == "memory" then
        if type(v) ~= "number" or v <= 0 then return fail(path, "limits.memory", "must be a number of bytes greater than 0") end
        box.budget.memory = v
      else
        return fail(path, "limits." .. tostring(k), "unknown field (cpu, memory)")
      end
    end
    local copy = {}
    for k, v in pairs(def) do if k ~= "limits" then copy[k] = v end end
    def = copy
  end
  local p
  checking_src = src
  p, err = M.check(def, path, name)
  checking_src = nil
  if not p then return nil, err end
  -- A tenant's policy, by field or by directory (policies/tenants/<tenant>/...).
  if not p.tenant and opts.tenant then p.tenant = opts.tenant end
  local effective, gerr = capabilities.resolve(p, p.declared, opts.grants, { trust = opts.trust })
  if not effective then return nil, path .. ": " .. gerr end
  p.capabilities, p.granted = effective, capabilities.granted(opts.grants, p.name)
  box.caps, box.tenant = effective, p.tenant
  p.box = box -- the registry narrows a kept version's capabilities when a grant is withdrawn
  box.name, box.budget.name = p.name, p.name
  p.budget, p.env = box.budget, env
  p.source = src -- kept for the version history (rollback)
  p.source_digest, p.libs = M.digest(src), libs
  p.version = M.version(p)
  return p
end

-- Every *.lua under dir except lib/ and *_spec.lua, sorted by path.
local function walk(dir, rel, out)
  local entries, err = fs.list(dir)
  if not entries then return nil, err end
  for _, e in ipairs(entries) do
    local path, r = dir .. "/" .. e.name, rel and (rel .. "/" .. e.name) or e.name
    if e.type == "directory" and not (rel == nil and e.name == "lib") and e.name:sub(1, 1) ~= "." then
      local ok, werr = walk(path, r, out)
      if not ok then return nil, werr end
    elseif e.type == "file" and e.name:match("%.lua$") and not e.name:match("_spec%.lua$") then
      out[#out + 1] = { path = path, rel = r }
    end
  end
  return out
end

-- load_dir(dir [, {grants, trust}]) -> {policies by name}, {errors}. grants: the config's
-- (nothing beyond the defaults when absent); trust: a declaration is its own grant (steward
-- test, where every side effect is captured).
function M.load_dir(dir, opts)
  opts = opts or {}
  local files, err = walk(dir, nil, {})
  if not files then
    if err and err:match("^ENOENT") then return {}, {} end
    return nil, err
  end
  sort(files, function(a, b) return a.path < b.path end)
  -- Read every file at once (each read is a thread-pool round trip), then compile in order.
  local sources, readers = {}, {}
  local task = require "steward.task"
  for i, f in ipairs(files) do
    readers[i] = task.spawn(function() sources[i] = fs.read(f.path) end)
  end
  for i = 1, #readers do readers[i]:join() end
  local loaded, errors = {}, {}
  for i, f in ipairs(files) do
    local name = f.rel:gsub("%.lua$", ""):gsub("/", ".")
    local p, perr = M.load_file(f.path, name, { lib_dir = dir .. "/lib", source = sources[i],
      grants = opts.grants, trust = opts.trust, tenant = f.rel:match("^tenants/([^/]+)/") })
    if not p then
      errors[#errors + 1] = { file = f.path, error = perr }
    elseif loaded[p.name] then
      errors[#errors + 1] = { file = f.path, error = format("%s: name: '%s' is also used by %s", f.path, p.name, loaded[p.name].file) }
    else
      loaded[p.name] = p
    end
  end
  return loaded, errors
end

return M
