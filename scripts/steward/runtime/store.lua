-- steward.runtime.store: the durable store. Opens the native SQLite/PostgreSQL connection, applies
-- every registered module's schema migrations, and gives modules and policies one handle.
local native = require "steward.runtime.store.native"
local migrate = require "steward.runtime.store.migrate"

local type, error, setmetatable, getmetatable, tostring = type, error, setmetatable, getmetatable, tostring

local M = {}

local Store = {}
Store.__index = Store

local default_store

-- Statements that read: everything else goes down the (group-committed) write path.
local READS = { select = true, with = true, values = true, explain = true, show = true, pragma = true }

function Store:sql(query, ...)
  if type(query) ~= "string" then error("store:sql: query: string expected, got " .. type(query), 2) end
  local word = (query:match("^%s*(%a+)") or ""):lower()
  if READS[word] then return self.db:query(query, ...) end
  return self.db:exec(query, ...)
end

function Store:query(query, ...) return self.db:query(query, ...) end
function Store:exec(query, ...) return self.db:exec(query, ...) end

function Store:batch(list)
  if type(list) ~= "table" then error("store:batch: list: table expected, got " .. type(list), 2) end
  for i = 1, #list do
    if type(list[i]) ~= "table" or type(list[i][1]) ~= "string" then
      error("store:batch: list[" .. i .. "]: {sql, params...} expected", 2)
    end
  end
  return self.db:batch(list)
end

function Store:backend() return self.db:backend() end
function Store:stats() return self.db:stats() end
function Store:migrate() return migrate.run(self.db) end
function Store:versions() return migrate.versions(self.db) end

function Store:close()
  if default_store == self then default_store = nil end
  if self.db then
    self.db:close()
    self.closed = true
  end
end

function Store:__tostring() return "store (" .. tostring(self.url) .. ")" end

-- The built-in tables (events, kv, timers, schedules, jobs, decisions) register here, on first
-- open, so that requiring steward.runtime.store alone does not load every module.
local function load_builtin()
  require "steward.runtime.store.schema"
end

function M.open(url)
  if type(url) ~= "string" then error("store.open: url: string expected, got " .. type(url), 2) end
  load_builtin()
  local db, err = native.open(url)
  if not db then return nil, err end
  local ok, merr = migrate.run(db)
  if not ok then
    db:close()
    return nil, merr
  end
  return setmetatable({ db = db, url = url }, Store)
end

-- dialects(template) -> {sqlite = DDL, postgres = DDL}: migrations' DDL differs between the
-- backends only in the generated key ({serial}: AUTOINCREMENT vs BIGSERIAL) and the text
-- collation ({text}: keys compare bytewise, "C", on PostgreSQL as they do in SQLite), and exact
-- money ({decimal}: NUMERIC on PostgreSQL, TEXT on SQLite, whose NUMERIC affinity would turn
-- "12.50" into a double; bind decimal.string(d), read back with decimal.new(text)).
function M.dialects(template)
  return {
    sqlite = template:gsub("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"):gsub("{text}", "TEXT")
      :gsub("{decimal}", "TEXT"),
    postgres = template:gsub("{serial}", "BIGSERIAL PRIMARY KEY"):gsub("{text}", 'TEXT COLLATE "C"')
      :gsub("{decimal}", "NUMERIC"),
  }
end

function M.register_migrations(module, list)
  return migrate.register(module, list)
end

function M.set_default(st)
  if st ~= nil and (type(st) ~= "table" or getmetatable(st) ~= Store) then
    error("store.set_default: store expected", 2)
  end
  default_store = st
end

function M.default() return default_store end

-- store.is_store(v): true for an object store.open returned.
function M.is_store(v) return type(v) == "table" and getmetatable(v) == Store end

M.blob = native.blob
return M
