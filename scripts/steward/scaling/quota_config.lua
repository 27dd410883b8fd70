-- steward.scaling.quota_config: the `quotas` config key and the services' `tenant` and
-- `resources` fields (docs/scaling/quotas.md). Checks return a normalised copy (memory in
-- bytes, cpu in cores) or nil, "<field path>: <reason>"; the result passes the check again
-- unchanged, so an environment overlay merged over it is checked once more.
local type, pairs, ipairs, next, tostring, tonumber = type, pairs, ipairs, next, tostring, tonumber
local format, concat, sort, floor = string.format, table.concat, table.sort, math.floor

local M = {}

M.RESOURCES = { "instances", "cpu", "memory" }
M.NAME_PATTERN = "^[%w_.-]+$"
-- A service quota's key: a service name, or a pattern with * (any run of name characters).
M.KEY_PATTERN = "^[%w_.*-]+$"

local UNITS = { B = 1, KiB = 2 ^ 10, MiB = 2 ^ 20, GiB = 2 ^ 30, TiB = 2 ^ 40 }

local function fail(where, msg, ...) return nil, where .. ": " .. format(msg, ...) end

-- memory(v) -> bytes | nil, reason: a number of bytes or "512MiB" (B, KiB, MiB, GiB, TiB).
function M.memory(v)
  local n, unit
  if type(v) == "number" then
    n, unit = v, "B"
  elseif type(v) == "string" then
    local num, u = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
    n, unit = tonumber(num), u ~= "" and u or "B"
  end
  if not n or not UNITS[unit] then
    return nil, format("a size with a unit (\"512MiB\", \"4GiB\"; B, KiB, MiB, GiB, TiB) expected, got %s", tostring(v))
  end
  local bytes = floor(n * UNITS[unit] + 0.5)
  if bytes <= 0 then return nil, format("must be greater than 0, got %s", tostring(v)) end
  return bytes
end

local function cpu(v)
  if type(v) ~= "number" or v <= 0 or v ~= v or v == math.huge then
    return nil, format("a number of cores greater than 0 expected (0.5, 2), got %s", tostring(v))
  end
  return v
end

local function only(t, allowed, where)
  if type(t) ~= "table" then return fail(where, "a table expected, got %s", type(t)) end
  for k in pairs(t) do
    if not allowed[k] then
      local names = {}
      for a in pairs(allowed) do names[#names + 1] = a end
      sort(names)
      return fail(where, "unknown field '%s' (known: %s)", tostring(k), concat(names, ", "))
    end
  end
  return true
end

-- resources(v, where) -> {cpu =, memory =} | nil, err: a service's per-instance requests.
function M.resources(v, where)
  local ok, err = only(v, { cpu = true, memory = true }, where)
  if not ok then return nil, err end
  local out = {}
  if v.cpu ~= nil then
    out.cpu, err = cpu(v.cpu)
    if not out.cpu then return fail(where .. ".cpu", "%s", err) end
  end
  if v.memory ~= nil then
    out.memory, err = M.memory(v.memory)
    if not out.memory then return fail(where .. ".memory", "%s", err) end
  end
  return out
end

-- tenant(v, where) -> v | nil, err
function M.tenant(v, where)
  if type(v) ~= "string" or not v:match(M.NAME_PATTERN) then
    return fail(where, "a tenant name (letters, digits, _ . -) expected, got %s", tostring(v))
  end
  return v
end

local function limits(v, where)
  local ok, err = only(v, { instances = true, cpu = true, memory = true }, where)
  if not ok then return nil, err end
  local out = {}
  if v.instances ~= nil then
    if type(v.instances) ~= "number" or v.instances ~= floor(v.instances) or v.instances < 0 then
      return fail(where .. ".instances", "a non-negative integer expected, got %s", tostring(v.instances))
    end
    out.instances = v.instances
  end
  if v.cpu ~= nil then
    if type(v.cpu) ~= "number" or v.cpu < 0 or v.cpu ~= v.cpu then
      return fail(where .. ".cpu", "a non-negative number of cores expected, got %s", tostring(v.cpu))
    end
    out.cpu = v.cpu
  end
  if v.memory ~= nil then
    out.memory, err = M.memory(v.memory)
    if not out.memory then return fail(where .. ".memory", "%s", err) end
  end
  if next(out) == nil then return fail(where, "at least one of instances, cpu, memory expected") end
  return out
end

-- check(quotas) -> normalised copy | nil, err
function M.check(q)
  local ok, err = only(q, { services = true, tenants = true }, "quotas")
  if not ok then return nil, err end
  local out = { services = {}, tenants = {} }
  for _, kind in ipairs({ "services", "tenants" }) do
    local t = q[kind]
    if t ~= nil then
      if type(t) ~= "table" then return fail("quotas." .. kind, "a table { [name] = { instances, cpu, memory } } expected") end
      local pat = kind == "services" and M.KEY_PATTERN or M.NAME_PATTERN
      for name, v in pairs(t) do
        if type(name) ~= "string" or not name:match(pat) then
          return nil, format("quotas.%s[%s]: a %s expected", kind, tostring(name),
            kind == "services" and "service name or pattern (letters, digits, _ . - and *)" or "tenant name (letters, digits, _ . -)")
        end
        out[kind][name], err = limits(v, "quotas." .. kind .. "." .. name)
        if not out[kind][name] then return nil, err end
      end
    end
  end
  return out
end

local function glob(pattern, name)
  local lp = "^" .. pattern:gsub("[%.%-]", "%%%0"):gsub("%*", "[%%w_.-]*") .. "$"
  return name:match(lp) ~= nil
end

-- service_quota(quotas, service) -> key, limits: the exact entry, else the longest pattern
-- that matches (ties by name, so the choice never depends on table order).
function M.service_quota(q, service)
  local list = q and q.services
  if not list then return nil end
  if list[service] then return service, list[service] end
  local best
  for key in pairs(list) do
    if key:find("*", 1, true) and glob(key, service) then
      if not best or #key > #best or (#key == #best and key < best) then best = key end
    end
  end
  if best then return best, list[best] end
  return nil
end

-- against(quotas, services) -> true | nil, err: a cpu or memory quota that applies to a
-- service without that request in its `resources` cannot be counted: a config error.
function M.against(q, services)
  local names = {}
  for name in pairs(services or {}) do names[#names + 1] = name end
  sort(names)
  for _, name in ipairs(names) do
    local svc = services[name]
    local res = svc.resources or {}
    local scopes = {}
    local key, lim = M.service_quota(q, name)
    if lim then scopes[#scopes + 1] = { "quotas.services." .. key, lim } end
    if svc.tenant and q.tenants and q.tenants[svc.tenant] then
      scopes[#scopes + 1] = { "quotas.tenants." .. svc.tenant, q.tenants[svc.tenant] }
    end
    for _, s in ipairs(scopes) do
      for _, r in ipairs({ "cpu", "memory" }) do
        if s[2][r] and not res[r] then
          return nil, format("services.%s.resources.%s: required: %s.%s limits it", name, r, s[1], r)
        end
      end
    end
  end
  return true
end

return M
