-- steward.billing.metrics: billable metrics as records in the store (what usage is counted and
-- how: count, sum, max, unique_count, latest, weighted_sum, custom; filters on properties).
-- The aggregation itself is steward.billing.aggregate's; this module keeps the definitions,
-- validates them (aggregate.check where it is installed) and serves them to the plans, the
-- usage intake and the invoices.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local V = require "steward.billing.values"
require "steward.billing.schema"

local type, pairs, ipairs, tostring, error, pcall, require, format =
  type, pairs, ipairs, tostring, error, pcall, require, string.format

local M = {}

M.AGGREGATIONS = { count = true, sum = true, max = true, unique_count = true, latest = true, weighted_sum = true,
                   custom = true }
local KNOWN = { code = true, name = true, description = true, aggregation = true, field = true, recurring = true,
                filters = true, weighted_interval = true, custom = true }

local ready = domain.migrator("billing")
M.ready = ready

-- check(m) -> metric (normalised) | nil, "field: reason"
function M.check(m)
  if type(m) ~= "table" then return nil, "metric: object expected" end
  local err = V.unknown(m, KNOWN)
  if err then return nil, err end
  local out = {}
  out.code, err = V.str(m.code, "code", { required = true, max = 100, pattern = V.CODE, what = V.CODE_WHAT })
  if err then return nil, err end
  out.name, err = V.str(m.name, "name", { max = 200 })
  if err then return nil, err end
  out.name = out.name or out.code
  out.description, err = V.str(m.description, "description", { max = 2000 })
  if err then return nil, err end
  out.aggregation, err = V.str(m.aggregation, "aggregation", { required = true, max = 20 })
  if err then return nil, err end
  if not M.AGGREGATIONS[out.aggregation] then
    return nil, "aggregation: one of count, sum, max, unique_count, latest, weighted_sum, custom expected"
  end
  out.field, err = V.str(m.field, "field", { max = 200 })
  if err then return nil, err end
  if out.aggregation ~= "count" and out.aggregation ~= "custom" and not out.field then
    return nil, "field: required for a " .. out.aggregation .. " metric (the property it reads)"
  end
  out.recurring, err = V.bool(m.recurring, "recurring", false)
  if err then return nil, err end
  if m.filters ~= nil and m.filters ~= V.null then
    if not V.is_object(m.filters) then
      return nil, "filters: an object {property = [values...]} expected"
    end
    out.filters = {}
    for k, vals in pairs(m.filters) do
      local at = "filters." .. tostring(k)
      if type(k) ~= "string" then return nil, "filters: property names expected" end
      if type(vals) ~= "table" or #vals == 0 then return nil, at .. ": a non-empty list of values expected" end
      for i, x in ipairs(vals) do
        if type(x) ~= "string" then return nil, format("%s[%d]: string expected", at, i) end
      end
      out.filters[k] = vals
    end
  end
  out.weighted_interval, err = V.str(m.weighted_interval, "weighted_interval", { max = 20 })
  if err then return nil, err end
  if out.aggregation == "weighted_sum" then
    out.weighted_interval = out.weighted_interval or "seconds"
    if out.weighted_interval ~= "seconds" then return nil, "weighted_interval: \"seconds\" expected" end
  end
  out.custom, err = V.str(m.custom, "custom", { max = 20000 })
  if err then return nil, err end
  if out.aggregation == "custom" and not out.custom then
    return nil, "custom: required for a custom metric (Lua source of function(state, event) return state, units end)"
  end
  -- the aggregation's own rules (h3's steward.billing.aggregate), where installed
  local ok, agg = pcall(require, "steward.billing.aggregate")
  if ok and type(agg) == "table" and type(agg.check) == "function" then
    local good, why = agg.check(out)
    if not good then return nil, tostring(why) end
  end
  return out
end

local function row(r)
  local m = json.decode(r.definition) or {}
  m.created, m.updated = r.created, r.updated
  return m
end

-- get(st, code) -> metric | false | nil, err
function M.get(st, code)
  if type(code) ~= "string" then error("metrics.get: code: string expected, got " .. type(code), 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, row, "SELECT definition, created, updated FROM billing_metrics WHERE code = $1", code)
end

-- list(st) -> metrics by code | nil, err
function M.list(st)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT definition, created, updated FROM billing_metrics ORDER BY code")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- create(st, m [, now]) -> metric, true | the stored metric, false (the same definition again) |
-- nil, "field: reason" | nil, "exists: ..." (another definition under that code)
function M.create(st, m, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local def
  def, err = M.check(m)
  if not def then return nil, err end
  now = util.now(now)
  local text = json.encode(def)
  local res
  res, err = st.db:exec("INSERT INTO billing_metrics (code, name, definition, created, updated) VALUES ($1,$2,$3,$4,$4) " ..
    "ON CONFLICT (code) DO NOTHING", def.code, def.name, text, now)
  if not res then return nil, err end
  if res.changes == 0 then
    local cur = M.get(st, def.code)
    if cur then
      local created, updated = cur.created, cur.updated
      cur.created, cur.updated = nil, nil
      if V.same(cur, json.decode(text)) then cur.created, cur.updated = created, updated; return cur, false end
    end
    return nil, "exists: a metric " .. def.code .. " with another definition exists"
  end
  def.created, def.updated = now, now
  return def, true
end

domain.default_store(M, { "get", "list", "create" })

return M
