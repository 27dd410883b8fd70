-- Schema migrations: each module registers numbered steps; a store applies the missing ones
-- in order, each step and its schema_version row in one atomic batch.
local time = require "steward.time"

local type, ipairs, pairs, error, tostring, floor = type, ipairs, pairs, error, tostring, math.floor
local sort = table.sort

local M = {}

local registry = {} -- module name -> sorted list of {version =, sql =}
local order = {}    -- module names in registration order

local BOOTSTRAP = [[CREATE TABLE IF NOT EXISTS schema_version (
  module TEXT NOT NULL, version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (module, version))]]

-- Splits a script on semicolons outside quotes and comments: migrations are usually several
-- statements, and a prepared statement holds one. (A trigger body needs the list form.)
local function split(sql)
  local out, start, i, n = {}, 1, 1, #sql
  while i <= n do
    local c = sql:sub(i, i)
    if c == "'" or c == '"' then
      local j = i + 1
      while j <= n do
        if sql:sub(j, j) == c then
          if sql:sub(j + 1, j + 1) == c then j = j + 1 else break end
        end
        j = j + 1
      end
      i = j
    elseif c == "-" and sql:sub(i + 1, i + 1) == "-" then
      local j = sql:find("\n", i, true)
      i = j or n
    elseif c == ";" then
      out[#out + 1] = sql:sub(start, i - 1)
      start = i + 1
    end
    i = i + 1
  end
  out[#out + 1] = sql:sub(start)
  local stmts = {}
  for _, s in ipairs(out) do
    local body = s:gsub("%-%-[^\n]*", ""):match("^%s*(.-)%s*$")
    if body ~= "" then stmts[#stmts + 1] = s:match("^%s*(.-)%s*$") end
  end
  return stmts
end
M.split = split

local function check_sql(v, what)
  if type(v) == "string" then return end
  if type(v) == "table" and #v > 0 then
    for i, s in ipairs(v) do
      if type(s) ~= "string" then error(what .. "[" .. i .. "]: string expected", 4) end
    end
    return
  end
  error(what .. ": SQL string or list of statements expected", 4)
end

function M.register(module, list)
  if type(module) ~= "string" or module == "" then
    error("store.register_migrations: module: non-empty string expected", 2)
  end
  if type(list) ~= "table" or #list == 0 then
    error("store.register_migrations: migrations: non-empty list expected", 2)
  end
  local steps, seen = {}, {}
  for i, m in ipairs(list) do
    local what = "store.register_migrations: migrations[" .. i .. "]"
    if type(m) ~= "table" then error(what .. ": table expected", 2) end
    local v = m.version
    if type(v) ~= "number" or v ~= floor(v) or v < 1 then
      error(what .. ".version: positive integer expected", 2)
    end
    if seen[v] then error(what .. ".version: " .. v .. " given twice", 2) end
    seen[v] = true
    if type(m.sql) == "table" and #m.sql == 0 then
      if m.sql.sqlite == nil and m.sql.postgres == nil then
        error(what .. ".sql: {sqlite =, postgres =} or a statement list expected", 2)
      end
      for k, s in pairs(m.sql) do
        if k ~= "sqlite" and k ~= "postgres" then error(what .. ".sql: unknown backend " .. tostring(k), 2) end
        check_sql(s, what .. ".sql." .. k)
      end
    else
      check_sql(m.sql, what .. ".sql")
    end
    steps[#steps + 1] = { version = v, sql = m.sql }
  end
  sort(steps, function(a, b) return a.version < b.version end)
  if not registry[module] then order[#order + 1] = module end
  registry[module] = steps
end

function M.registered(module)
  return registry[module]
end

local function statements(sql, backend)
  if type(sql) == "table" and #sql == 0 then sql = sql[backend] end
  if sql == nil then return nil end
  if type(sql) == "string" then return split(sql) end
  return sql
end

local function current(db, module)
  local rows, err = db:query("SELECT MAX(version) AS v FROM schema_version WHERE module = $1", module)
  if not rows then return nil, err end
  return rows[1] and rows[1].v or 0
end

-- PostgreSQL: every migration transaction first takes this advisory lock (held until its
-- COMMIT), so instances starting together apply steps one at a time; the step's schema_version
-- row goes in before its DDL, so a second instance, once it holds the lock, fails on that row
-- (unique_violation) without touching the schema, reads the versions again and goes on.
local PG_LOCK = "SELECT pg_advisory_xact_lock(1937012580)" -- "stwd"

-- Brings one module up to date. Two processes opening the same database may race: the loser's
-- batch fails (the table exists, or the version row does), so the recorded version is read
-- again before giving up.
local function apply(db, module, steps)
  local backend = db:backend()
  local have, err = current(db, module)
  if not have then return nil, "store: reading schema_version: " .. tostring(err) end
  local newest = steps[#steps].version
  if have > newest then
    return nil, "store: the database has " .. module .. " schema version " .. have ..
      " but this code knows only up to version " .. newest
  end
  for _, step in ipairs(steps) do
    if step.version > have then
      local stmts = statements(step.sql, backend)
      if not stmts then
        return nil, "store: " .. module .. " migration " .. step.version .. " has no SQL for " .. backend
      end
      local list = {}
      local record = { "INSERT INTO schema_version (module, version, applied_at) VALUES ($1, $2, $3)",
        module, step.version, time.now() }
      if backend == "postgres" then list[1] = { PG_LOCK }; list[2] = record end
      for _, s in ipairs(stmts) do list[#list + 1] = { s } end
      if backend ~= "postgres" then list[#list + 1] = record end
      local ok, berr = db:batch(list)
      if not ok then
        local now_have = current(db, module)
        if not now_have or now_have < step.version then
          return nil, "store: " .. module .. " migration " .. step.version .. " failed: " .. tostring(berr)
        end
      end
      have = step.version
    end
  end
  return true
end

function M.run(db)
  local ok, err
  if db:backend() == "postgres" then -- CREATE TABLE IF NOT EXISTS races without the lock
    ok, err = db:batch({ { PG_LOCK }, { BOOTSTRAP } })
  else
    ok, err = db:exec(BOOTSTRAP)
  end
  if not ok then return nil, "store: creating schema_version: " .. tostring(err) end
  for _, module in ipairs(order) do
    local applied, aerr = apply(db, module, registry[module])
    if not applied then return nil, aerr end
  end
  return true
end

-- The recorded version of every module: {module = version}.
function M.versions(db)
  local rows, err = db:query("SELECT module, MAX(version) AS v FROM schema_version GROUP BY module")
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do out[r.module] = r.v end
  return out
end

return M
