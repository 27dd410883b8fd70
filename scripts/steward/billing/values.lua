-- steward.billing.values: the checks and conversions the billing records share — a field's
-- refusal names it ("charges[2].properties.amount: ..."), amounts are steward.decimal values
-- in Lua, exact strings in JSON and in the store, times are epoch seconds in Lua and RFC 3339
-- in JSON.
local json = require "steward.json"
local decimal = require "steward.decimal"
local util = require "steward.runtime.store.util"

local type, pairs, ipairs, next, tostring, tonumber, pcall, format, floor =
  type, pairs, ipairs, next, tostring, tonumber, pcall, string.format, math.floor

local M = {}

local null = json.null
M.null = null

local function absent(v) return v == nil or v == null end
M.absent = absent

-- str(v, field, {max=, required=, pattern=, what=}) -> string | nil (absent) | nil, "field: reason"
function M.str(v, field, o)
  o = o or {}
  if absent(v) then
    if o.required then return nil, field .. ": required" end
    return nil
  end
  if type(v) ~= "string" then return nil, field .. ": string expected, got " .. type(v) end
  if o.required and v == "" then return nil, field .. ": must not be empty" end
  if #v > (o.max or 200) then return nil, format("%s: at most %d bytes, got %d", field, o.max or 200, #v) end
  if o.pattern and not v:match(o.pattern) then return nil, field .. ": " .. (o.what or "invalid") end
  return v
end

M.CODE = "^[%w][%w_.:-]*$"
M.CODE_WHAT = "letters, digits, '_', '.', ':' and '-' expected, starting with a letter or digit"

-- dec(v, field, {required=, min=, positive=}) -> decimal | nil (absent) | nil, "field: reason".
-- JSON carries amounts as strings; an integral JSON number is taken too, a fractional one is
-- refused (it went through a double on its way here).
function M.dec(v, field, o)
  o = o or {}
  if absent(v) then
    if o.required then return nil, field .. ": required" end
    return nil
  end
  if type(v) == "number" and v ~= floor(v) then
    return nil, format("%s: %s is a number with a fraction: send the amount as a string (\"%s\")", field, tostring(v), tostring(v))
  end
  if type(v) ~= "string" and type(v) ~= "number" and not decimal.is(v) then
    return nil, field .. ": a decimal string (\"12.50\") expected, got " .. type(v)
  end
  local ok, d = pcall(decimal.new, v)
  if not ok then return nil, field .. ": a decimal string (\"12.50\") expected, got " .. format("%q", tostring(v)) end
  if o.min and d < decimal.new(o.min) then return nil, format("%s: at least %s expected", field, tostring(o.min)) end
  if o.positive and d <= decimal.zero then return nil, field .. ": greater than 0 expected" end
  return d
end

-- int(v, field, {min=, max=, required=}) -> integer | nil | nil, "field: reason"
function M.int(v, field, o)
  o = o or {}
  if absent(v) then
    if o.required then return nil, field .. ": required" end
    return nil
  end
  if type(v) ~= "number" or v ~= floor(v) then return nil, field .. ": integer expected" end
  if o.min and v < o.min then return nil, format("%s: at least %d expected", field, o.min) end
  if o.max and v > o.max then return nil, format("%s: at most %d expected", field, o.max) end
  return v
end

-- bool(v, field, default) -> boolean | nil, "field: reason"
function M.bool(v, field, default)
  if absent(v) then return default end
  if type(v) ~= "boolean" then return nil, field .. ": true or false expected" end
  return v
end

-- time(v, field, {required=}) -> epoch seconds | nil | nil, "field: reason" (a number or RFC 3339)
function M.time(v, field, o)
  o = o or {}
  if absent(v) then
    if o.required then return nil, field .. ": required" end
    return nil
  end
  if type(v) == "number" then
    if v ~= v or v < 0 or v > 253402300799 then return nil, field .. ": a time between 1970 and 9999 expected" end
    return v
  end
  if type(v) ~= "string" then return nil, field .. ": an RFC 3339 time or epoch seconds expected" end
  local t, err = util.parse_rfc3339(v)
  if not t then return nil, field .. ": " .. tostring(err) end
  return t
end

-- unknown(t, known, where) -> nil | "where.k: unknown field (list)"
function M.unknown(t, known, where)
  for k in pairs(t) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      return format("%s%s: unknown field (%s)", where and where ~= "" and (where .. ".") or "", tostring(k),
        table.concat(names, ", "))
    end
  end
end

-- Exact text of a decimal for the store and JSON (a value with no finite decimal form raises:
-- the formula that made it must round it).
function M.text(d)
  if d == nil then return nil end
  return decimal.string(d)
end

-- read(v) -> decimal | nil: a {decimal} column as the store gives it back.
function M.read(v)
  if v == nil or v == null then return nil end
  return decimal.new(type(v) == "number" and format("%.17g", v) or tostring(v))
end

function M.rfc3339(t)
  if t == nil or t == null then return null end
  return util.format_rfc3339(t)
end

-- A deep copy for JSON: decimals as their exact strings, times named in `times` as RFC 3339.
function M.jsonable(v, times)
  if decimal.is(v) then return decimal.string(v) end
  if type(v) ~= "table" or v == null then return v end
  local out = {}
  for k, x in pairs(v) do
    if times and times[k] and type(x) == "number" then out[k] = util.format_rfc3339(x)
    else out[k] = M.jsonable(x, times) end
  end
  if #v > 0 then return json.array(out) end
  return out
end

-- is_object(t) / is_list(t): what a decoded JSON value was (an empty table is either; the
-- decoder marks no array, json.array marks ours)
function M.is_object(t)
  return type(t) == "table" and t ~= null and #t == 0 and not json.is_array(t) and not decimal.is(t)
end

function M.is_list(t)
  if type(t) ~= "table" or t == null then return false end
  return #t > 0 or json.is_array(t) or next(t) == nil
end

-- same(a, b) -> true when two plain values (tables compared deeply) are equal
function M.same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or decimal.is(a) or decimal.is(b) then
    if decimal.is(a) and decimal.is(b) then return a == b end
    return a == b
  end
  for k, x in pairs(a) do if not M.same(x, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- list(t) -> a JSON array of t (empty lists stay arrays)
function M.array(t) return json.array(t) end

return M
