-- steward.tenants.config: the `tenants` configuration key (plans with their rate limits, quotas
-- and budgets, the default plan, the PostgreSQL connection where tenants get a schema and a
-- role, the welcome notification) checked at start-up and on reload, and a tenant's limits:
-- its plan merged with its record's override.
local time = require "steward.time"

local type, pairs, tostring, format, floor = type, pairs, tostring, string.format, math.floor

local M = {}

-- What a plan the configuration does not name gets; a named plan's fields merge over these.
M.DEFAULTS = {
  rate = { ingest = 100, burst = 200 },
  quotas = {},
  budgets = { cpu = "50ms", memory = "16MiB", queue_share = 1 },
}

local KEYS = { plans = true, default_plan = true, postgres = true, welcome = true }
local PLAN = { rate = { ingest = true, burst = true }, quotas = { instances = true, cpu = true, memory = true },
  budgets = { cpu = true, memory = true, queue_share = true } }

local function nonneg(v) return type(v) == "number" and v >= 0 and v < math.huge end

local function bytes(v)
  if nonneg(v) then return true end
  if type(v) ~= "string" then return false end
  local n, unit = v:match("^(%d+%.?%d*)%s*(%a*)$")
  return n ~= nil and (unit == "" or unit == "B" or unit == "KiB" or unit == "MiB" or unit == "GiB")
end

-- check_limits(t, where) -> t | nil, "where.field: reason": a plan, or a record's override.
function M.check_limits(t, where)
  if type(t) ~= "table" then return nil, where .. ": table expected" end
  for section, v in pairs(t) do
    local fields = PLAN[section]
    if not fields then return nil, format("%s.%s: unknown field (rate, quotas, budgets)", where, tostring(section)) end
    if type(v) ~= "table" then return nil, format("%s.%s: table expected", where, section) end
    for k, x in pairs(v) do
      local at = format("%s.%s.%s", where, section, tostring(k))
      if not fields[k] then return nil, at .. ": unknown field" end
      if section == "budgets" and k == "cpu" then
        if not (nonneg(x) or (type(x) == "string" and time.parse_duration(x))) then
          return nil, at .. ": a duration expected (\"50ms\")"
        end
      elseif section == "budgets" and k == "memory" or section == "quotas" and k == "memory" then
        if not bytes(x) then return nil, at .. ": bytes expected (a number or \"16MiB\")" end
      elseif not nonneg(x) then
        return nil, at .. ": a number >= 0 expected"
      elseif (k == "instances" or k == "burst") and x ~= floor(x) then
        return nil, at .. ": an integer expected"
      end
    end
  end
  return t
end

-- check(v) -> v | nil, reason: the `tenants` key of steward.lua.
function M.check(v)
  for k in pairs(v) do
    if not KEYS[k] then return nil, format("unknown field '%s' (plans, default_plan, postgres, welcome)", tostring(k)) end
  end
  local plans = v.plans or {}
  if type(plans) ~= "table" then return nil, "plans: table expected" end
  for name, plan in pairs(plans) do
    if type(name) ~= "string" or not name:match("^[%w_-]+$") then return nil, "plans: plan names are words" end
    local ok, err = M.check_limits(plan, "plans." .. name)
    if not ok then return nil, err end
  end
  v.plans = plans
  if v.default_plan == nil then v.default_plan = "basic" end
  if type(v.default_plan) ~= "string" then return nil, "default_plan: string expected" end
  if next(plans) ~= nil and not plans[v.default_plan] then
    return nil, format("default_plan: '%s' is not one of plans", v.default_plan)
  end
  if v.postgres ~= nil and (type(v.postgres) ~= "string" or v.postgres == "") then
    return nil, "postgres: the name of a pg_connections entry expected"
  end
  local w = v.welcome
  if w ~= nil then
    if type(w) ~= "table" then return nil, "welcome: table expected" end
    for k in pairs(w) do
      if k ~= "channel" and k ~= "template" then return nil, format("welcome.%s: unknown field (channel, template)", tostring(k)) end
    end
    local ch = w.channel
    if type(ch) == "table" then
      if type(ch.kind) ~= "string" then return nil, "welcome.channel.kind: a notify kind expected (\"email\", \"log\", ...)" end
    elseif ch ~= nil and type(ch) ~= "string" then
      return nil, "welcome.channel: a notify kind (\"log\") or {kind = ..., options} expected"
    end
    if w.template ~= nil and type(w.template) ~= "table" then
      return nil, "welcome.template: {title = ..., text = ...} expected"
    end
  end
  return v
end

-- The configuration in force (configure sets it; a script without a daemon has the defaults).
M.current = { plans = {}, default_plan = "basic" }

function M.configure(cfg)
  M.current = cfg or { plans = {}, default_plan = "basic" }
end

-- plan_known(plan) -> true | nil, reason
function M.plan_known(plan)
  local plans = M.current.plans or {}
  if next(plans) == nil then
    if plan == (M.current.default_plan or "basic") then return true end
    return nil, format("no plans are configured: only '%s' exists", M.current.default_plan or "basic")
  end
  if plans[plan] then return true end
  local names = {}
  for n in pairs(plans) do names[#names + 1] = n end
  table.sort(names)
  return nil, format("unknown plan '%s' (%s)", tostring(plan), table.concat(names, ", "))
end

local function merge_into(out, t)
  for section, v in pairs(t or {}) do
    out[section] = out[section] or {}
    for k, x in pairs(v) do out[section][k] = x end
  end
end

-- limits(plan, override) -> {rate, quotas, budgets}: defaults < the plan < the record's override.
function M.limits(plan, override)
  local out = {}
  merge_into(out, M.DEFAULTS)
  merge_into(out, (M.current.plans or {})[plan])
  merge_into(out, override)
  return out
end

return M
