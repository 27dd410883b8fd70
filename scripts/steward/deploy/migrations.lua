-- steward.deploy.migrations: migration safety before a rollout. check() lints SQL with
-- squawk's rules (same ids, same default set, same --pg-version and "-- squawk-ignore"
-- behaviour as squawk-cli 2.66) on PostgreSQL's own parser; compatible() says whether the
-- release before the migration still works against the migrated schema (the rollout engine
-- refuses to roll back past one that is not); measure() applies a migration to a scratch
-- copy of a real database's schema and reports the locks each statement takes.
local src_util = require "steward.deploy.migrations_source"

local M = {}

local FAMILIES = {
  require "steward.deploy.migrations_rules_locks",
  require "steward.deploy.migrations_rules_schema",
  require "steward.deploy.migrations_rules_tx",
}

-- Every rule id, in the order they are documented; all are on by default.
M.RULES = {}
local KNOWN = {}
for _, fam in ipairs(FAMILIES) do
  for _, entry in ipairs(fam) do
    for _, id in ipairs(entry.ids) do
      M.RULES[#M.RULES + 1] = id
      KNOWN[id] = true
    end
  end
end
M.RULES[#M.RULES + 1] = "unused-ignore" -- a squawk-ignore comment naming no rule we know
KNOWN["unused-ignore"] = true
table.sort(M.RULES)

-- Names squawk accepts for one or several rules.
local ALIASES = {
  ["require-timeout-settings"] = { "require-lock-timeout", "require-statement-timeout" },
  ["prefer-timestamptz"] = { "prefer-timestamp-tz" },
}

-- A rule name as the user may write it -> its ids, or nil when unknown.
function M.resolve(name)
  if ALIASES[name] then return ALIASES[name] end
  if KNOWN[name] then return { name } end
  return nil
end

-- "13", "13.2", "13.2.1" -> {13, 2, 1} (missing parts nil, which sort before any number,
-- as squawk's versions do: "11" is not after 11, "11.0" is).
local function parse_version(v)
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then return nil end
  local parts = {}
  for piece in (v .. "."):gmatch("([^.]*)%.") do
    if not piece:match("^%d+$") then return nil end
    parts[#parts + 1] = tonumber(piece)
  end
  if #parts < 1 or #parts > 3 then return nil end
  return parts
end

local function version_cmp(a, b)
  for i = 1, 3 do
    local x, y = a[i], b[i]
    if x == nil and y ~= nil then return -1 end
    if x ~= nil and y == nil then return 1 end
    if x ~= nil and x ~= y then return x < y and -1 or 1 end
  end
  return 0
end

local function name_list(v, field)
  if v == nil then return {} end
  if type(v) == "string" then
    local out = {}
    for item in v:gmatch("[^,%s]+") do out[#out + 1] = item end
    return out
  end
  if type(v) ~= "table" then error(("migrations.check: opts.%s: list of rule ids expected"):format(field), 3) end
  return v
end

local function tx_kind(st, kinds)
  return st.kind == "TransactionStmt" and kinds[st.n.kind] == true
end
local BEGIN = { TRANS_STMT_BEGIN = true, TRANS_STMT_START = true }
local COMMIT = { TRANS_STMT_COMMIT = true }
local ROLLBACK = { TRANS_STMT_ROLLBACK = true }

-- check(sql [, opts]) -> violations | nil, err, {position, line, column}
--   opts.exclude: rule ids (list or "a,b") not to report; opts.pg_version ("13", "11.0");
--   opts.assume_in_transaction: the migration tool wraps the file in a transaction.
-- A violation: {rule =, line =, column =, message =} (1-based line and column), sorted by place.
function M.check(sql, opts)
  if type(sql) ~= "string" then error("migrations.check: sql: string expected", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("migrations.check: opts: table expected", 2) end
  local pg = { 15, 0, 0 }
  if opts.pg_version ~= nil then
    pg = parse_version(opts.pg_version)
    if not pg then
      error(("migrations.check: opts.pg_version: %q is not a version like 13 or 13.2"):format(tostring(opts.pg_version)), 2)
    end
  end
  local enabled = {}
  for _, id in ipairs(M.RULES) do enabled[id] = true end
  enabled["unused-ignore"] = true
  for _, name in ipairs(name_list(opts.exclude, "exclude")) do
    local ids = M.resolve(name)
    if not ids then error(("migrations.check: opts.exclude: unknown rule %q"):format(tostring(name)), 2) end
    for _, id in ipairs(ids) do enabled[id] = nil end
  end

  local src, err, info = src_util.parse(sql)
  if not src then return nil, err, info end

  local found = {}
  local function report(id, offset, message)
    if enabled[id] then
      found[#found + 1] = { rule = id, offset = offset, message = message }
    end
  end
  local ignores = src_util.ignores(src, M.resolve, function(name, offset)
    report("unused-ignore", offset, ("unknown rule %q in a squawk-ignore comment"):format(name))
  end)
  local assume_tx = opts.assume_in_transaction == true and not ignores.disable_assume

  local ctx = {
    src = src, stmts = src.stmts, enabled = enabled, report = report, assume_tx = assume_tx,
    is_begin = function(st) return tx_kind(st, BEGIN) end,
    is_commit = function(st) return tx_kind(st, COMMIT) end,
    is_rollback = function(st) return tx_kind(st, ROLLBACK) end,
    pg_after = function(major) return version_cmp(pg, { major }) > 0 end,
    pg_at_least = function(major) return version_cmp(pg, { major }) >= 0 end,
  }
  for _, fam in ipairs(FAMILIES) do
    for _, entry in ipairs(fam) do
      local on = false
      for _, id in ipairs(entry.ids) do if enabled[id] then on = true end end
      if on then entry.check(ctx) end
    end
  end

  local out = {}
  for _, v in ipairs(found) do
    local line, col = src.line_col(v.offset)
    local ignored = ignores.file_all or ignores.file[v.rule]
    for _, l in ipairs({ line, line - 1 }) do
      local set = ignores.lines[l]
      if set and set[v.rule] then ignored = true end
    end
    if not ignored then
      out[#out + 1] = { rule = v.rule, line = line, column = col, message = v.message, offset = v.offset }
    end
  end
  table.sort(out, function(a, b)
    if a.offset ~= b.offset then return a.offset < b.offset end
    return a.rule < b.rule
  end)
  for _, v in ipairs(out) do v.offset = nil end
  return out
end

-- compatible(sql) -> true | false, reasons: can the release before this migration still run
-- against the migrated schema? (see steward.deploy.migrations_compat)
function M.compatible(sql)
  if type(sql) ~= "string" then error("migrations.compatible: sql: string expected", 2) end
  return require("steward.deploy.migrations_compat").compatible(sql)
end

-- measure(conn, sql [, opts]) -> report | nil, err (see steward.deploy.migrations_measure)
function M.measure(conn, sql, opts)
  if type(conn) ~= "string" then error("migrations.measure: conn: connection URL or name expected", 2) end
  if type(sql) ~= "string" then error("migrations.measure: sql: string expected", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("migrations.measure: opts: table expected", 2) end
  return require("steward.deploy.migrations_measure").measure(conn, sql, opts or {})
end

return M
