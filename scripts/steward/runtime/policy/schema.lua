-- Policy config schemas, in the manner of Kong's plugin schemas: a policy's `config` declares
-- each setting either as a plain default (its type is the default's type) or as a spec
--   threshold = { type = "number", default = 0.05, min = 0, max = 1, description = "..." }
-- with type (string, number, integer, boolean, duration, table, array), default, required,
-- min/max (numbers, or lengths of strings and arrays), one_of (allowed values), check (a
-- function(value) -> true | nil, reason, for what the other keys cannot say: a list of freeze
-- windows whose zones must exist) and description. Overlays merge base < environment <
-- tenant; an overlay that breaks the schema is refused with every failing field listed.
local time = require "steward.time"

local type, pairs, ipairs, tostring, floor = type, pairs, ipairs, tostring, math.floor
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

local TYPES = { string = true, number = true, integer = true, boolean = true, duration = true,
                table = true, array = true }
local SPEC_KEYS = { type = true, default = true, required = true, min = true, max = true,
                    one_of = true, description = true, check = true }

local function is_spec(v)
  return type(v) == "table" and type(v.type) == "string" and TYPES[v.type] ~= nil
end

local function infer(v)
  local t = type(v)
  if t == "table" then return (v[1] ~= nil) and "array" or "table" end
  return t
end

-- compile(decl) -> schema, or nil, {errors}: each field {name, type, default, required, ...}
function M.compile(decl)
  local fields, errors = {}, {}
  if decl == nil then return { fields = {} } end
  if type(decl) ~= "table" then return nil, { { field = "config", reason = "must be a table" } } end
  for name, v in pairs(decl) do
    if type(name) ~= "string" then
      errors[#errors + 1] = { field = "config", reason = "keys must be strings" }
    elseif is_spec(v) then
      for k in pairs(v) do
        if not SPEC_KEYS[k] then errors[#errors + 1] = { field = "config." .. name .. "." .. tostring(k), reason = "unknown schema key" } end
      end
      fields[name] = { name = name, type = v.type, default = v.default, required = v.required == true,
                       min = v.min, max = v.max, one_of = v.one_of, description = v.description }
      if v.check ~= nil and type(v.check) ~= "function" then
        errors[#errors + 1] = { field = "config." .. name .. ".check", reason = "a function(value) -> true | nil, reason expected" }
      else
        fields[name].check = v.check
      end
    else
      local t = infer(v)
      if not TYPES[t] then
        errors[#errors + 1] = { field = "config." .. name, reason = "a default must be a string, number, boolean or table" }
      else
        fields[name] = { name = name, type = t, default = v }
      end
    end
  end
  local schema = { fields = fields }
  -- The defaults themselves must satisfy the schema.
  for name, f in pairs(fields) do
    if f.default ~= nil then
      local ok, reason = M.check_value(f, f.default)
      if ok == nil then errors[#errors + 1] = { field = "config." .. name, reason = "default: " .. reason } end
    end
  end
  if #errors > 0 then
    sort(errors, function(a, b) return a.field < b.field end)
    return nil, errors
  end
  return schema
end

local function size(v)
  if type(v) == "string" then return #v end
  if type(v) == "table" then return #v end
  return v
end

-- check_value(field, v) -> normalized value, or nil, reason
function M.check_value(f, v)
  local t = f.type
  if t == "duration" then
    local secs, err = time.parse_duration(v)
    if not secs then return nil, tostring(err) end
    v = secs
  elseif t == "integer" then
    if type(v) ~= "number" or v ~= floor(v) then return nil, "expected an integer, got " .. tostring(v) end
  elseif t == "array" then
    if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then return nil, "expected an array" end
  elseif type(v) ~= t then
    return nil, format("expected a %s, got %s", t, type(v))
  end
  if f.min ~= nil and size(v) < f.min then
    return nil, format("%s must be at least %s", type(v) == "number" and "value" or "length", tostring(f.min))
  end
  if f.max ~= nil and size(v) > f.max then
    return nil, format("%s must be at most %s", type(v) == "number" and "value" or "length", tostring(f.max))
  end
  if f.one_of then
    local found = false
    for _, allowed in ipairs(f.one_of) do if allowed == v then found = true end end
    if not found then
      local shown = {}
      for i, a in ipairs(f.one_of) do shown[i] = tostring(a) end
      return nil, "expected one of " .. concat(shown, ", ")
    end
  end
  if f.check then
    -- A check that raises refuses the value too (it is the policy's code, run by the loader).
    local ran, ok, reason = pcall(f.check, v)
    if not ran then return nil, "check failed: " .. tostring(ok) end
    if not ok then return nil, tostring(reason or "refused by the setting's check") end
  end
  return v
end

-- merge(schema, layers) -> config, or nil, {errors}. layers = { {name = "environment", values}, ... }
-- applied in order on top of the defaults; every failing field of every layer is listed.
function M.merge(schema, layers)
  local out, errors, refused = {}, {}, {}
  for name, f in pairs(schema.fields) do
    if f.default ~= nil then
      local v = M.check_value(f, f.default)
      out[name] = v
    end
  end
  for _, layer in ipairs(layers) do
    local values = layer.values
    if values ~= nil and type(values) ~= "table" then
      errors[#errors + 1] = { field = layer.name, reason = "must be a table of settings" }
    else
      for name, v in pairs(values or {}) do
        local f = schema.fields[name]
        if not f then
          errors[#errors + 1] = { field = layer.name .. ": config." .. tostring(name), reason = "unknown setting" }
        else
          local nv, reason = M.check_value(f, v)
          if nv == nil then
            refused[name] = true
            errors[#errors + 1] = { field = layer.name .. ": config." .. name, reason = reason }
          else
            out[name] = nv
          end
        end
      end
    end
  end
  for name, f in pairs(schema.fields) do
    if f.required and out[name] == nil and not refused[name] then
      errors[#errors + 1] = { field = "config." .. name, reason = "required, and no layer sets it" }
    end
  end
  if #errors > 0 then
    sort(errors, function(a, b) return a.field < b.field end)
    return nil, errors
  end
  return out
end

local function describe(errors)
  local parts = {}
  for i, e in ipairs(errors) do parts[i] = e.field .. ": " .. e.reason end
  return concat(parts, "; ")
end
M.describe = describe

-- apply(p, overlays) -> true, or nil, "file: field: reason; field: reason"
-- Sets p.config (base < environment) and p.tenant_configs[tenant] (... < tenant).
-- overlays = {env = {[policy] = {...}}, tenants = {[tenant] = {[policy] = {...}}}}
function M.apply(p, overlays)
  overlays = overlays or {}
  local schema, errors = M.compile(p.config_decl)
  if not schema then return nil, p.file .. ": " .. describe(errors) end
  local env_values = (overlays.env or {})[p.name]
  local cfg
  cfg, errors = M.merge(schema, { { name = "environment", values = env_values } })
  if not cfg then return nil, p.file .. ": " .. describe(errors) end
  local per_tenant, all = {}, {}
  for tenant, by_policy in pairs(overlays.tenants or {}) do
    local tv = type(by_policy) == "table" and by_policy[p.name] or nil
    if tv ~= nil then
      local tcfg, terr = M.merge(schema, { { name = "environment", values = env_values },
                                           { name = "tenant " .. tostring(tenant), values = tv } })
      if not tcfg then
        for _, e in ipairs(terr) do all[#all + 1] = e end
      else
        per_tenant[tenant] = tcfg
      end
    end
  end
  if #all > 0 then return nil, p.file .. ": " .. describe(all) end
  p.schema, p.config, p.tenant_configs = schema, cfg, per_tenant
  return true
end

return M
