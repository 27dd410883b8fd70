-- steward.tenants: tenants as records with a lifecycle (docs/tenants.md) — requested →
-- provisioning → active → suspended → offboarding → removed, or failed naming the step that
-- failed. create() stores the record and starts its provisioning saga (steward.tenants.provision);
-- suspend/resume/offboard move the state, announce it (tenant.* events) and call the modules
-- that do the work (steward.tenants.suspension, steward.tenants.offboard) when they exist.
-- state() and limits() read an in-process cache: the hot path (auth, ingest) calls them.
local time = require "steward.time"
local task = require "steward.task"
local log = require "steward.log"
local runtime_store = require "steward.runtime.store"
local record = require "steward.tenants.record"
local tconfig = require "steward.tenants.config"

local type, pairs, tostring, error, pcall, format = type, pairs, tostring, error, pcall, string.format

local M = {}

M.STATES = record.STATES

-- The store the functions use: the daemon's, or one a script or spec sets with use(st).
local chosen
function M.use(st) chosen = st; record.forget() end
local function st()
  local s = chosen or runtime_store.default()
  if not s then error("steward.tenants: no store (inside the daemon, or after tenants.use(store))", 3) end
  return s
end

local function id_arg(fn, id)
  if type(id) ~= "string" then error(format("tenants.%s: id: string expected, got %s", fn, type(id)), 3) end
end

-- get(id) -> record | nil, "not found" | nil, err
function M.get(id)
  id_arg("get", id)
  local r, err = record.get(st(), id)
  if r == false then return nil, "not found" end
  return r, err
end

-- list{state=, plan=, limit=} -> records (by id) | nil, err
function M.list(f)
  if f ~= nil and type(f) ~= "table" then error("tenants.list: filter: table expected", 2) end
  f = f or {}
  for k in pairs(f) do
    if k ~= "state" and k ~= "plan" and k ~= "limit" then error("tenants.list: " .. tostring(k) .. ": unknown field", 2) end
  end
  if f.state ~= nil and not M.STATES[f.state] then
    error("tenants.list: state: one of requested, provisioning, active, suspended, offboarding, removed, failed expected", 2)
  end
  if f.plan ~= nil and type(f.plan) ~= "string" then error("tenants.list: plan: string expected", 2) end
  return record.list(st(), f)
end

-- create{id, name, plan, contact, branding, config, limits} -> record (state requested, with
-- admin_token = {id, token}: the tenant's admin token, shown this once) | nil, "exists" | nil, err.
-- The provisioning saga runs in a task of its own; watch the record or the tenant.* events.
function M.create(spec)
  local s, field, reason = record.check_new(spec)
  if not s then error(format("tenants.create: %s: %s", field, reason), 2) end
  local provision = require "steward.tenants.provision"
  local saga = require "steward.tenants.saga"
  local steps = require "steward.tenants.steps"
  local store = st()
  local secret, hash = provision.new_token()
  local now = time.now()
  local r, err = record.insert(store, s, now,
    { saga.insert_statement(provision.KIND, provision.saga_id(s.id), s.id, { token_hash = hash }, now) })
  if not r then return nil, err end
  provision.kick(store, s.id)
  r.admin_token = { id = steps.token_id(s.id), token = secret,
    note = "shown once; it works once the tenant is active" }
  return r
end

-- update(id, patch) -> record | nil, "not found" | nil, "conflict", current | nil, err.
-- patch.version, when given, must be the record's version (optimistic concurrency).
function M.update(id, patch)
  id_arg("update", id)
  local p, field, reason = record.check_patch(patch)
  if not p then error(format("tenants.update: %s: %s", field, reason), 2) end
  local steps = require "steward.tenants.steps"
  local merged
  if p.config ~= nil then
    local err
    merged, err = steps.check_config(id, p.config)
    if not merged then return nil, err end
  end
  local r, err, cur = record.change(st(), id, function(r)
    if r.state == "removed" or r.state == "offboarding" then return nil, "invalid state: " .. r.state end
    local changed = {}
    for k, v in pairs(p) do
      if k ~= "version" then r[k] = v; changed[#changed + 1] = k end
    end
    table.sort(changed)
    return { changed = changed }
  end, "updated", { version = p.version })
  if not r then return nil, err, cur end
  if r.state == "active" or r.state == "suspended" then
    local kv = require("steward.runtime.store.kv").ns(st(), steps.KV)
    if p.plan or p.limits then kv:put(id .. "/limits", tconfig.limits(r.plan, r.limits)) end
    if merged then
      kv:put(id .. "/config", r.config)
      steps.apply_config(id, merged)
    end
  end
  return r
end

-- A hook of the module that does the work, when it is there (h9's suspension and offboarding).
local function hook(modname, fname, ...)
  local ok, mod = pcall(require, modname)
  if not ok then
    if not tostring(mod):find("module '" .. modname .. "' not found", 1, true) then
      log.error("tenants: cannot load " .. modname, { err = tostring(mod) })
    end
    return nil
  end
  local hok, res, err = pcall(mod[fname], ...)
  if not hok or res == nil and err ~= nil then
    log.error("tenants: " .. modname .. "." .. fname .. " failed", { err = tostring(hok and err or res) })
    return nil, hok and err or res
  end
  return true
end

local function transition(fn, id, from, to, kind, extra)
  id_arg(fn, id)
  return record.change(st(), id, function(r)
    if not from[r.state] then
      local names = {}
      for s in pairs(from) do names[#names + 1] = s end
      table.sort(names)
      return nil, format("invalid state: %s (%s needs %s)", r.state, fn, table.concat(names, " or "))
    end
    r.state = to
    if extra then for k, v in pairs(extra) do r[k] = v end end
    return extra and { reason = extra.reason } or true
  end, kind)
end

-- suspend(id, reason) -> record | nil, err: active → suspended (tokens answer 403 suspended,
-- ingest is refused, the tenant's policies pause: steward.tenants.suspension).
function M.suspend(id, reason)
  if reason ~= nil and type(reason) ~= "string" then error("tenants.suspend: reason: string expected", 2) end
  local r, err = transition("suspend", id, { active = true }, "suspended", "suspended", { reason = reason or "suspended" })
  if not r then return nil, err end
  hook("steward.tenants.suspension", "apply", id, true)
  return r
end

-- resume(id) -> record | nil, err: suspended → active, everything restored.
function M.resume(id)
  local r, err = transition("resume", id, { suspended = true }, "active", "resumed", { reason = false })
  if not r then return nil, err end
  hook("steward.tenants.suspension", "apply", id, false)
  return r
end

-- offboard(id) -> record | nil, err: → offboarding; steward.tenants.offboard exports the data,
-- erases it and moves the tenant to removed (in a task of its own).
function M.offboard(id)
  local r, err = transition("offboard", id, { active = true, suspended = true, failed = true }, "offboarding", "offboarding")
  if not r then return nil, err end
  task.spawn({ name = "tenant.offboard " .. id }, function() hook("steward.tenants.offboard", "run", id) end)
  return r
end

-- state(id) -> state | nil (no such tenant): from the cache, read again within a second of a
-- change made by another process, at once in the process that made it.
function M.state(id)
  local c = record.cached(chosen or runtime_store.default(), id)
  return c and c.state or nil
end

-- limits(id) -> {rate = {ingest, burst}, quotas = {instances, cpu, memory}, budgets = {cpu,
-- memory, queue_share}}: the tenant's plan (config tenants.plans) under its record's override
-- | nil, "not found"
function M.limits(id)
  local c = record.cached(chosen or runtime_store.default(), id)
  if not c then return nil, "not found" end
  return tconfig.limits(c.plan, c.limits)
end

-- overlay(tenant_config) -> steward.lua's tenant_config with each live tenant's own config
-- merged over it (the record's config wins for the policies it names): what a policy reload
-- checks against the policies' schemas and merges (steward.runtime.policy_reload).
function M.overlay(static)
  local out = {}
  for t, by_policy in pairs(static or {}) do
    out[t] = {}
    for p, v in pairs(by_policy) do out[t][p] = v end
  end
  local ok, configs = pcall(record.configs, chosen or runtime_store.default())
  if not ok then
    log.warn("tenants: configs not merged into tenant_config", { err = tostring(configs) })
    return out
  end
  for t, by_policy in pairs(configs) do
    out[t] = out[t] or {}
    for p, v in pairs(by_policy) do out[t][p] = v end
  end
  return out
end

-- saga(id) -> the provisioning saga with each step's status, runs, result or error
function M.saga(id)
  id_arg("saga", id)
  local s, err = require("steward.tenants.saga").get(st(), require("steward.tenants.provision").saga_id(id))
  if s == false then return nil, "not found" end
  return s, err
end

return M
