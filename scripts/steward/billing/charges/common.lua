-- steward.billing.charges.common: what the charge models share — reading a property as an exact
-- decimal with an error naming its path, the range lists of the tiered models, and the units a
-- model prices. Errors are raised as "path: reason" strings (level 0) so that charges.check can
-- hand them back as `nil, err` and charges.amount can raise them as they are.
local decimal = require "steward.decimal"

local type, pairs, ipairs, error, pcall, tostring, format = type, pairs, ipairs, error, pcall, tostring, string.format
local sort = table.sort

local M = {}

function M.fail(path, reason) error(path .. ": " .. reason, 0) end

local function describe(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

-- dec(v, path) -> decimal: a decimal, a decimal string ("12.5") or an integral Lua number. A
-- Lua number with a fraction is refused, as decimal.new refuses it: Lago too reads amounts
-- only from strings, so that no binary fraction ever becomes money.
function M.dec(v, path)
  if decimal.is(v) then return v end
  local t = type(v)
  if t ~= "string" and t ~= "number" then
    M.fail(path, "a decimal string expected (such as \"12.5\"), got " .. t)
  end
  local ok, d = pcall(decimal.new, v)
  if not ok then
    if t == "number" then M.fail(path, describe(v) .. " is a Lua number with a fraction: pass a string") end
    M.fail(path, "not a decimal: " .. describe(v))
  end
  return d
end

function M.nonneg(v, path)
  local d = M.dec(v, path)
  if d:sign() < 0 then M.fail(path, "must be zero or more, got " .. tostring(d)) end
  return d
end

-- optional(v, path): nil stays nil (the property is unset), anything else must be >= 0.
function M.optional(v, path)
  if v == nil then return nil end
  return M.nonneg(v, path)
end

function M.integer(v, path, min)
  local d = M.dec(v, path)
  if not d:is_integer() then M.fail(path, "a whole number expected, got " .. tostring(d)) end
  if d < decimal.new(min) then M.fail(path, format("must be %d or more, got %s", min, tostring(d))) end
  return d
end

-- Refuses a property the model does not read: a typo ("package_szie") would otherwise bill
-- with a default nobody chose.
function M.known(props, allowed, path, model)
  local names = {}
  for k in pairs(props) do names[#names + 1] = tostring(k) end
  sort(names)
  for _, k in ipairs(names) do
    if not allowed[k] then M.fail(path .. "." .. k, "unknown property for the " .. model .. " model") end
  end
end

-- ranges(list, path, name, fields) -> normalized list: Lago's bounds rule — the first range starts
-- at 0 (or 1), each next one starts at the previous to_value or one above it, every to_value
-- but the last is above its from_value, and only the last is open (to_value nil).
function M.ranges(list, path, name, fields)
  path = path .. "." .. name
  if type(list) ~= "table" or list[1] == nil then M.fail(path, "a non-empty list of ranges expected") end
  local n = #list
  for k in pairs(list) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then M.fail(path, "a list expected (key " .. describe(k) .. ")") end
  end
  local out, next_from = {}, decimal.zero
  for i, r in ipairs(list) do
    local p = format("%s[%d]", path, i)
    if type(r) ~= "table" then M.fail(p, "a range table expected, got " .. type(r)) end
    local allowed = { from_value = true, to_value = true }
    for _, f in ipairs(fields) do allowed[f] = true end
    for k in pairs(r) do
      if not allowed[k] then M.fail(p .. "." .. tostring(k), "unknown field of a range") end
    end
    local from = M.nonneg(r.from_value, p .. ".from_value")
    if not (from == next_from or from == next_from + 1) then
      M.fail(p .. ".from_value", format("must be %s or %s (the previous range's to_value or one above it), got %s",
        tostring(next_from), tostring(next_from + 1), tostring(from)))
    end
    local to
    if r.to_value ~= nil then
      to = M.nonneg(r.to_value, p .. ".to_value")
      if i == n then M.fail(p .. ".to_value", "the last range must be open (to_value nil)") end
      if to <= from then M.fail(p .. ".to_value", "must be above from_value " .. tostring(from) .. ", got " .. tostring(to)) end
    elseif i < n then
      M.fail(p .. ".to_value", "only the last range may be open: a bound expected")
    end
    local range = { from_value = from, to_value = to }
    for _, f in ipairs(fields) do
      range[f] = M.nonneg(r[f], p .. "." .. f)
    end
    out[i] = range
    next_from = to
  end
  return out
end

-- ranges_check(model, name, fields) -> check(props, path): the check of a model priced by one
-- list of ranges (graduated, volume, graduated_percentage): props holds that list only.
function M.ranges_check(model, name, fields)
  return function(props, path)
    M.known(props, { [name] = true }, path, model)
    return { [name] = M.ranges(props[name], path, name, fields) }
  end
end

-- units(agg, path) -> decimal: the aggregation's units (h3's result), refused when missing.
function M.units(agg)
  if type(agg) ~= "table" then M.fail("agg", "an aggregation result table expected, got " .. type(agg)) end
  return M.dec(agg.units == nil and "0" or agg.units, "agg.units")
end

function M.count(agg)
  local c = agg.count
  if c == nil then return agg.per_event and #agg.per_event or 0 end
  if type(c) ~= "number" or c < 0 or c % 1 ~= 0 then M.fail("agg.count", "a whole number of events expected, got " .. describe(c)) end
  return c
end

-- Reported figures that come out of a division (a unit amount, prorated units, a per-unit
-- detail) are shown to at most 15 fraction digits, half-up — Lago's precision for a fee's
-- precise_unit_amount (numeric(30,15)) — so that every one has a decimal form (1/3 has none) and
-- can be stored and sent as a string. Only what is shown is rounded: amounts are computed from
-- the exact values, and precise_amount stays exact.
M.SHOWN_SCALE = 15

function M.shown(v)
  if decimal.is(v) then return v:round(M.SHOWN_SCALE, "half_up") end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = M.shown(x) end
  end
  return v
end

-- unit_amount: what one unit cost on average (exact; Lago divides by the full units of a prorated
-- charge so that the shown unit price is the plan's, not the prorated one).
function M.per_unit(amount, units)
  if units:is_zero() then return decimal.zero end
  return amount / units
end

return M
