-- steward.pg: query other PostgreSQL databases from policies. The connections, pools and the
-- conversion of results are bindings/pg.c (steward.pg.native); this file adds what is plain
-- Lua on top: parameters that are tables (sent as json), json columns (decoded), date and
-- timestamp columns (seconds since the epoch), transactions, LISTEN/NOTIFY, and a pool's
-- per-call methods.
local native = require "steward.pg.native"
local json = require "steward.json"
local days_from_civil = require("steward.runtime.store.util").days_from_civil

local M = { null = json.null }
native.setup(json.null)

local DB = native.db_methods
local POOL = native.pool_methods
local unpack = unpack or table.unpack

local function pack(...)
  return { n = select("#", ...), ... }
end

-- The parameters as native._query takes them: tables as json text, pg.null as NULL.
local function params(fname, ...)
  local n = select("#", ...)
  local out = { n = n }
  for i = 1, n do
    local v = select(i, ...)
    if v == json.null then
      v = nil
    elseif type(v) == "table" then
      local ok, s = pcall(json.encode, v)
      if not ok then
        error(("%s: parameter %d: cannot encode the table as json: %s"):format(fname, i, s), 3)
      end
      v = s
    end
    out[i] = v
  end
  return out
end

-- Replaces each string cell of the named columns with conv(cell), when that is not nil.
local function convert_columns(rows, cols, conv)
  for r = 1, rows.n do
    local row = rows[r]
    for _, name in ipairs(cols) do
      local v = row[name]
      if type(v) == "string" then
        local c = conv(v)
        if c ~= nil then row[name] = c end
      end
    end
  end
end

local function json_value(s)
  local ok, d = pcall(json.decode, s)
  if ok then return d end
end

-- An ISO date or timestamp (DateStyle ISO, which every connection sets) as seconds since the
-- epoch, a timestamp without a zone read as UTC; nil when s is not in that form.
local function iso_seconds(s)
  if s == "infinity" then return math.huge end
  if s == "-infinity" then return -math.huge end
  local y, mo, d, rest = s:match("^(%d%d%d%d+)%-(%d%d+)%-(%d%d+)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local h, mi, sec, frac, off = 0, 0, 0, 0, 0
  local hh, mm, ss, after = rest:match("^ (%d%d+):(%d%d+):(%d%d+)(.*)$")
  if hh then
    h, mi, sec, rest = tonumber(hh), tonumber(mm), tonumber(ss), after
    local f, r = rest:match("^(%.%d+)(.*)$")
    if f then frac, rest = tonumber(f), r end
    local sign, oh, r2 = rest:match("^([+-])(%d%d+)(.*)$")
    if sign then
      local om, os_ = 0, 0
      local m1, r3 = r2:match("^:(%d%d+)(.*)$")
      if m1 then om, r2 = tonumber(m1), r3 end
      local s1, r4 = r2:match("^:(%d%d+)(.*)$")
      if s1 then os_, r2 = tonumber(s1), r4 end
      off = (sign == "-" and -1 or 1) * (tonumber(oh) * 3600 + om * 60 + os_)
      rest = r2
    end
  end
  if rest == " BC" then y, rest = 1 - y, "" end
  if rest ~= "" or mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac - off
end

-- db:query(sql, ...) -> rows | nil, err, sqlstate
function DB:query(sql, ...)
  if type(sql) ~= "string" then
    error("db:query: sql: string expected, got " .. type(sql), 2)
  end
  local p = params("db:query", ...)
  local rows, a, b = self:_query(sql, unpack(p, 1, p.n))
  if not rows then return nil, a, b end
  if a then convert_columns(rows, a, json_value) end
  if b then convert_columns(rows, b, iso_seconds) end
  return rows
end

local function quote_ident(fname, name)
  if type(name) ~= "string" or name == "" then
    error(fname .. ": channel: non-empty string expected, got " .. type(name), 3)
  end
  if name:find("\0", 1, true) then error(fname .. ": channel: contains a NUL byte", 3) end
  return '"' .. name:gsub('"', '""') .. '"'
end

-- db:transaction(fn) -> fn's results (true when it returns none) | nil, err [, sqlstate]
-- fn(tx) runs between BEGIN and COMMIT; an error in fn, or fn returning nil, err, rolls back.
function DB:transaction(fn)
  if type(fn) ~= "function" then
    error("db:transaction: fn: function expected, got " .. type(fn), 2)
  end
  local ok, err, code = self:query("BEGIN")
  if not ok then return nil, err, code end
  local res = pack(pcall(fn, self))
  local failed = not res[1] or (res.n >= 3 and res[2] == nil and res[3] ~= nil)
  if failed then
    if self:status() == "ok" then self:query("ROLLBACK") end
    if res[1] then return nil, res[3], res[4] end
    return nil, res[2]
  end
  local c, e, s = self:query("COMMIT")
  if not c then return nil, e, s end
  if c.command == "ROLLBACK" then -- a statement failed and fn carried on: nothing was committed
    return nil, "SQLSTATE 25P02: transaction rolled back: a statement in it failed", "25P02"
  end
  if res.n <= 1 then return true end
  return unpack(res, 2, res.n)
end

-- db:listen(channel) -> true | nil, err, sqlstate
function DB:listen(channel)
  local ok, err, code = self:query("LISTEN " .. quote_ident("db:listen", channel))
  if not ok then return nil, err, code end
  return true
end

-- db:unlisten(channel) -> true | nil, err, sqlstate ("*" stops listening on every channel)
function DB:unlisten(channel)
  local sql = channel == "*" and "UNLISTEN *" or "UNLISTEN " .. quote_ident("db:unlisten", channel)
  local ok, err, code = self:query(sql)
  if not ok then return nil, err, code end
  return true
end

-- db:notify(channel, payload) -> true | nil, err, sqlstate
function DB:notify(channel, payload)
  if type(channel) ~= "string" then
    error("db:notify: channel: string expected, got " .. type(channel), 2)
  end
  if payload ~= nil and type(payload) ~= "string" then
    error("db:notify: payload: string or nil expected, got " .. type(payload), 2)
  end
  local ok, err, code = self:query("SELECT pg_notify($1, $2)", channel, payload or "")
  if not ok then return nil, err, code end
  return true
end

-- ---- pools: each call leases a connection, runs, and gives it back ----

local function with_lease(pool, fname, f, ...)
  local db, err, code = pool:acquire()
  if not db then return nil, err, code end
  local res = pack(pcall(f, db, ...))
  db:close() -- back to the pool (an open transaction is rolled back first)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

function POOL:query(sql, ...)
  if type(sql) ~= "string" then
    error("pool:query: sql: string expected, got " .. type(sql), 2)
  end
  return with_lease(self, "pool:query", DB.query, sql, ...)
end

function POOL:transaction(fn)
  if type(fn) ~= "function" then
    error("pool:transaction: fn: function expected, got " .. type(fn), 2)
  end
  return with_lease(self, "pool:transaction", DB.transaction, fn)
end

function POOL:notify(channel, payload)
  return with_lease(self, "pool:notify", DB.notify, channel, payload)
end

local function no_session(name)
  return function()
    error("pool:" .. name .. ": a pool has no session to listen on; use pg.connect", 2)
  end
end
POOL.listen = no_session("listen")
POOL.unlisten = no_session("unlisten")
POOL.notification = no_session("notification")

function M.connect(dsn, opts)
  if type(dsn) ~= "string" then
    error("pg.connect: dsn: string expected, got " .. type(dsn), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("pg.connect: opts: table expected, got " .. type(opts), 2)
  end
  return native.connect(dsn, opts)
end

function M.pool(dsn, opts)
  if type(dsn) ~= "string" then
    error("pg.pool: dsn: string expected, got " .. type(dsn), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("pg.pool: opts: table expected, got " .. type(opts), 2)
  end
  return native.pool(dsn, opts)
end

return M
