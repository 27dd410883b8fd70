-- steward.billing.plans: plans as versioned records — the subscription fee (amount, interval,
-- currency, paid in advance or in arrears, trial days), the minimum commitment and the usage
-- charges (h2's charge records, each on a stored metric). Changing a plan makes a new version;
-- a subscription keeps the version it was created with, so what it is billed does not change
-- under it. Charge properties keep their decimal strings (as Lago's API carries them); the
-- plan's own amounts are steward.decimal values.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
local bconfig = require "steward.billing.config"
local metrics = require "steward.billing.metrics"
local V = require "steward.billing.values"
require "steward.billing.schema"

local type, pairs, ipairs, tostring, tonumber, next, error, pcall, require, format =
  type, pairs, ipairs, tostring, tonumber, next, error, pcall, require, string.format

local M = {}

M.INTERVALS = { weekly = true, monthly = true, quarterly = true, yearly = true }
M.MODELS = { standard = true, graduated = true, package = true, percentage = true, volume = true,
             graduated_percentage = true }
local KNOWN = { code = true, name = true, description = true, interval = true, amount = true, currency = true,
                pay_in_advance = true, trial_days = true, minimum_commitment = true, charges = true }
local CHARGE = { id = true, metric = true, model = true, properties = true, filters = true, group_by = true,
                 pay_in_advance = true, prorated = true, min_amount = true, invoice_display_name = true }
-- property names whose values are amounts or unit counts: each must be a decimal string
local DECIMAL_PROPS = { amount = true, flat_amount = true, per_unit_amount = true, rate = true, fixed_amount = true,
  package_size = true, free_units = true, from_value = true, to_value = true, free_units_per_total_aggregation = true,
  per_transaction_min_amount = true, per_transaction_max_amount = true }

local ready = domain.migrator("billing")
M.ready = ready

-- Each decimal-like property (at any depth: tiers are lists of tables) must be a decimal; kept
-- as its string.
local function check_props(p, where)
  if type(p) ~= "table" then return nil, where .. ": object expected" end
  for k, v in pairs(p) do
    local at = type(k) == "number" and format("%s[%d]", where, k) or (where .. "." .. tostring(k))
    if type(v) == "table" and v ~= V.null then
      local ok, err = check_props(v, at)
      if not ok then return nil, err end
    elseif DECIMAL_PROPS[k] and v ~= V.null then
      local d, err = V.dec(v, at)
      if not d then return nil, err end
      if d:sign() < 0 then return nil, at .. ": must not be negative" end
      p[k] = V.text(d)
    end
  end
  return true
end

local function check_charge(st, c, i)
  local where = format("charges[%d]", i)
  if not V.is_object(c) then return nil, where .. ": object expected" end
  local err = V.unknown(c, CHARGE, where)
  if err then return nil, err end
  local out = {}
  for k, v in pairs(c) do if v ~= V.null then out[k] = v end end
  out.id, err = V.str(c.id, where .. ".id", { max = 100, pattern = V.CODE, what = V.CODE_WHAT })
  if err then return nil, err end
  out.metric, err = V.str(c.metric, where .. ".metric", { required = true, max = 100 })
  if err then return nil, err end
  if st then
    local m, merr = metrics.get(st, out.metric)
    if m == nil then return nil, merr end
    if not m then return nil, where .. ".metric: no metric " .. out.metric .. " (POST /v1/billing/metrics first)" end
  end
  out.model, err = V.str(c.model, where .. ".model", { required = true, max = 30 })
  if err then return nil, err end
  if not M.MODELS[out.model] then
    return nil, where .. ".model: one of standard, graduated, package, percentage, volume, graduated_percentage expected"
  end
  if c.properties == nil or c.properties == V.null then out.properties = {} end
  local ok
  ok, err = check_props(out.properties, where .. ".properties")
  if not ok then return nil, err end
  for _, b in ipairs({ "pay_in_advance", "prorated" }) do
    out[b], err = V.bool(c[b], where .. "." .. b, false)
    if err then return nil, err end
  end
  local min
  min, err = V.dec(c.min_amount, where .. ".min_amount", { min = 0 })
  if err then return nil, err end
  out.min_amount = V.text(min)
  if c.filters ~= nil and type(c.filters) ~= "table" then return nil, where .. ".filters: a list expected" end
  if c.group_by ~= nil and type(c.group_by) ~= "table" then return nil, where .. ".group_by: a list of property names expected" end
  for j, f in ipairs(out.filters or {}) do
    if type(f) ~= "table" then return nil, format("%s.filters[%d]: object expected", where, j) end
    if f.properties ~= nil then
      ok, err = check_props(f.properties, format("%s.filters[%d].properties", where, j))
      if not ok then return nil, err end
    end
  end
  out.invoice_display_name, err = V.str(c.invoice_display_name, where .. ".invoice_display_name", { max = 200 })
  if err then return nil, err end
  -- the charge model's own rules (h2's steward.billing.charges), where installed
  local okr, charges = pcall(require, "steward.billing.charges")
  if okr and type(charges) == "table" and type(charges.check) == "function" then
    local good, why = charges.check(out)
    if not good then return nil, where .. "." .. tostring(why) end
  end
  return out
end

-- check(p [, st]) -> plan fields | nil, "field: reason". With a store, each charge's metric
-- must exist.
function M.check(p, st)
  if type(p) ~= "table" then return nil, "plan: object expected" end
  local err = V.unknown(p, KNOWN)
  if err then return nil, err end
  local out = {}
  out.code, err = V.str(p.code, "code", { required = true, max = 100, pattern = V.CODE, what = V.CODE_WHAT })
  if err then return nil, err end
  out.name, err = V.str(p.name, "name", { max = 200 })
  if err then return nil, err end
  out.name = out.name or out.code
  out.description, err = V.str(p.description, "description", { max = 2000 })
  if err then return nil, err end
  out.interval, err = V.str(p.interval, "interval", { required = true, max = 20 })
  if err then return nil, err end
  if not M.INTERVALS[out.interval] then return nil, "interval: one of weekly, monthly, quarterly, yearly expected" end
  out.amount, err = V.dec(p.amount, "amount", { required = true, min = 0 })
  if err then return nil, err end
  out.currency, err = V.str(p.currency, "currency", { max = 3 })
  if err then return nil, err end
  out.currency = out.currency or bconfig.current.currency
  local ok
  ok, err = bconfig.currency_known(out.currency)
  if not ok then return nil, "currency: " .. err end
  out.pay_in_advance, err = V.bool(p.pay_in_advance, "pay_in_advance", false)
  if err then return nil, err end
  out.trial_days, err = V.int(p.trial_days, "trial_days", { min = 0, max = 3650 })
  if err then return nil, err end
  out.trial_days = out.trial_days or 0
  out.minimum_commitment, err = V.dec(p.minimum_commitment, "minimum_commitment", { min = 0 })
  if err then return nil, err end
  local cs = p.charges
  if cs == nil or cs == V.null then cs = {} end
  if not V.is_list(cs) then
    return nil, "charges: a list expected"
  end
  if #cs > 100 then return nil, "charges: at most 100 charges" end
  out.charges = {}
  local ids = {}
  for i, c in ipairs(cs) do
    local ch
    ch, err = check_charge(st, c, i)
    if not ch then return nil, err end
    ch.id = ch.id or format("%s-%d", out.code, i)
    if ids[ch.id] then return nil, format("charges[%d].id: %s is taken by charges[%d]", i, ch.id, ids[ch.id]) end
    ids[ch.id] = i
    out.charges[i] = ch
  end
  return out
end

local COLS = "code, version, name, description, plan_interval, CAST(amount AS TEXT) AS amount, currency, pay_in_advance, " ..
  "trial_days, CAST(minimum_commitment AS TEXT) AS minimum_commitment, charges, created"

local function row(r)
  local p = domain.row(r, { "charges" })
  p.interval, p.plan_interval = p.plan_interval, nil
  p.amount = V.read(p.amount)
  p.minimum_commitment = V.read(p.minimum_commitment)
  p.pay_in_advance = p.pay_in_advance == 1 or p.pay_in_advance == true
  p.version = tonumber(p.version)
  p.trial_days = tonumber(p.trial_days)
  p.updated = p.created
  return p
end

-- get(st, code [, version]) -> plan (the latest version, or the one asked) | false | nil, err
function M.get(st, code, version)
  if type(code) ~= "string" then error("plans.get: code: string expected, got " .. type(code), 2) end
  if version ~= nil and type(version) ~= "number" then error("plans.get: version: integer expected", 2) end
  local ok, err = ready(st)
  if not ok then return nil, err end
  if version then
    return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_plans WHERE code = $1 AND version = $2", code, version)
  end
  return domain.one(st, row, "SELECT " .. COLS .. " FROM billing_plans WHERE code = $1 ORDER BY version DESC LIMIT 1", code)
end

-- list(st) -> the latest version of every plan, by code | nil, err
function M.list(st)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_plans p WHERE version = " ..
    "(SELECT MAX(version) FROM billing_plans q WHERE q.code = p.code) ORDER BY code")
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

-- versions(st, code) -> every version of a plan, oldest first | nil, err
function M.versions(st, code)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM billing_plans WHERE code = $1 ORDER BY version", code)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = row(r) end
  return rows
end

local function insert(st, p, version, now)
  local charges = json.encode(V.jsonable(p.charges))
  if #p.charges == 0 then charges = "[]" end
  return st.db:exec("INSERT INTO billing_plans (code, version, name, description, plan_interval, amount, currency, " ..
    "pay_in_advance, trial_days, minimum_commitment, charges, created) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) " ..
    "ON CONFLICT (code, version) DO NOTHING",
    p.code, version, p.name, util.nullable(p.description), p.interval, V.text(p.amount), p.currency,
    p.pay_in_advance and 1 or 0, p.trial_days, util.nullable(V.text(p.minimum_commitment)), charges, now)
end

-- create(st, p [, now]) -> plan (version 1) | nil, "field: reason" | nil, "exists: ..."
function M.create(st, p, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local plan
  plan, err = M.check(p, st)
  if not plan then return nil, err end
  now = util.now(now)
  local res
  res, err = insert(st, plan, 1, now)
  if not res then return nil, err end
  if res.changes == 0 then return nil, "exists: a plan " .. plan.code .. " exists (PUT /v1/billing/plans/" .. plan.code .. " makes a new version)" end
  return M.get(st, plan.code, 1)
end

-- update(st, code, p [, now]) -> plan (a new version) | nil, err. p is the whole plan (its code,
-- when given, must be code); subscriptions on older versions keep theirs.
function M.update(st, code, p, now)
  if type(code) ~= "string" then error("plans.update: code: string expected", 2) end
  if type(p) ~= "table" then return nil, "plan: object expected" end
  if p.code ~= nil and p.code ~= code then return nil, "code: " .. tostring(p.code) .. " is not the plan's code " .. code end
  local q = {}
  for k, v in pairs(p) do q[k] = v end
  q.code = code
  local ok, err = ready(st)
  if not ok then return nil, err end
  local plan
  plan, err = M.check(q, st)
  if not plan then return nil, err end
  now = util.now(now)
  for _ = 1, 5 do
    local cur
    cur, err = M.get(st, code)
    if cur == nil then return nil, err end
    if not cur then return nil, "not found: no plan " .. code end
    local res
    res, err = insert(st, plan, cur.version + 1, now)
    if not res then return nil, err end
    if res.changes == 1 then return M.get(st, code, cur.version + 1) end
    -- another update took that version meanwhile: take the next
  end
  return nil, "conflict: the plan " .. code .. " keeps changing"
end

-- view(plan) -> the plan as JSON carries it (amounts as strings, times RFC 3339)
function M.view(p)
  local o = V.jsonable(p, { created = true, updated = true })
  o.minimum_commitment = o.minimum_commitment or V.null
  o.description = o.description or V.null
  o.charges = json.array(o.charges or {})
  return o
end

domain.default_store(M, { "get", "list", "versions", "create", "update" })

return M
