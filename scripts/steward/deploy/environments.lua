-- steward.deploy.environments: the environments a release goes through, in order (staging,
-- then production), and the settings of a release in each: a schema (declared as a policy's
-- config is: steward.runtime.policy.schema), base values, and one overlay per environment,
-- merged base < environment. Every overlay is checked against the schema when compiled, so a
-- typo in production's overlay is an error at load naming the environment and the field,
-- not a surprise at promotion time.
local schema = require "steward.runtime.policy.schema"

local type, pairs, ipairs, tostring, error, setmetatable, getmetatable, next =
  type, pairs, ipairs, tostring, error, setmetatable, getmetatable, next
local format, concat = string.format, table.concat

local M = {}

local KNOWN = { order = true, settings = true, base = true, overlays = true }

local Envs = {}
Envs.__index = Envs

local function describe(errors)
  local parts = {}
  for i, e in ipairs(errors) do parts[i] = e.field .. ": " .. e.reason end
  return concat(parts, "; ")
end

-- compile{order = {names}, settings = {schema}, base = {values}, overlays = {[env] = {values}}}
-- -> environments, or nil, err naming the field ("overlays.production: config.replicas: ...").
function M.compile(spec)
  if getmetatable(spec) == Envs then return spec end
  if type(spec) ~= "table" then return nil, "environments: a table expected, got " .. type(spec) end
  for k in pairs(spec) do
    if not KNOWN[k] then return nil, "environments." .. tostring(k) .. ": unknown field" end
  end
  local order = spec.order
  if type(order) ~= "table" or order[1] == nil then
    return nil, "environments.order: a non-empty list of environment names expected (\"staging\", \"production\")"
  end
  local index = {}
  for i, name in ipairs(order) do
    if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
      return nil, format("environments.order[%d]: a name of letters, digits, '.', '_' or '-' expected", i)
    end
    if index[name] then return nil, format("environments.order[%d]: %q is listed twice", i, name) end
    index[name] = i
  end
  local compiled, errs = schema.compile(spec.settings or {})
  if not compiled then return nil, "environments.settings: " .. describe(errs) end
  if spec.base ~= nil and type(spec.base) ~= "table" then return nil, "environments.base: a table of settings expected" end
  local overlays = spec.overlays or {}
  if type(overlays) ~= "table" then return nil, "environments.overlays: a table {[environment] = settings} expected" end
  for name in pairs(overlays) do
    if not index[name] then
      return nil, format("environments.overlays.%s: not an environment of order (%s)", tostring(name), concat(order, ", "))
    end
  end
  local merged = {}
  for _, name in ipairs(order) do
    local cfg, merrs = schema.merge(compiled, { { name = "base", values = spec.base },
                                                { name = "overlays." .. name, values = overlays[name] } })
    if not cfg then return nil, "environments: " .. describe(merrs) end
    merged[name] = cfg
  end
  local o = {}
  for i, n in ipairs(order) do o[i] = n end
  return setmetatable({ order = o, index = index, schema = compiled, merged = merged }, Envs)
end

-- validate(spec) -> true | nil, err: for config schemas (`check`).
function M.validate(spec)
  local e, err = M.compile(spec)
  if not e then return nil, err end
  return true
end

local function known(self, env, what)
  if type(env) ~= "string" then error(what .. ": environment: string expected, got " .. type(env), 3) end
  if not self.index[env] then
    return nil, format("unknown environment %q (%s)", env, concat(self.order, ", "))
  end
  return true
end

-- next(env) -> the environment after env, or false when env is the last | nil, err
function Envs:next(env)
  local ok, err = known(self, env, "environments:next")
  if not ok then return nil, err end
  return self.order[self.index[env] + 1] or false
end

-- previous(env) -> the environment before env, or false for the first | nil, err
function Envs:previous(env)
  local ok, err = known(self, env, "environments:previous")
  if not ok then return nil, err end
  return self.order[self.index[env] - 1] or false
end

-- first() -> the first environment
function Envs:first() return self.order[1] end

-- settings(env [, release]) -> the settings of a release in env (base < env's overlay <
-- the release's own values), or nil, err naming the field.
function Envs:settings(env, release)
  local ok, err = known(self, env, "environments:settings")
  if not ok then return nil, err end
  local base = self.merged[env]
  if release == nil or next(release) == nil then
    local copy = {}
    for k, v in pairs(base) do copy[k] = v end
    return copy
  end
  if type(release) ~= "table" then error("environments:settings: release: table of settings expected", 2) end
  local out, errs = schema.merge(self.schema, { { name = "environment " .. env, values = base },
                                                { name = "release", values = release } })
  if not out then return nil, describe(errs) end
  return out
end

return M
