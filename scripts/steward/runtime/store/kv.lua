-- steward.runtime.store.kv: a namespaced key-value table with JSON values, a version per key for
-- compare-and-set, and optional expiry. Versions only grow, even across deletes of an expired
-- key, so a stale version never matches again.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
require "steward.runtime.store.schema"

local type, error, setmetatable, ipairs, tostring, floor = type, error, setmetatable, ipairs, tostring, math.floor

local M = {}

local NS = {}
NS.__index = NS

function M.ns(st, name)
  util.store_arg(st, "kv.ns")
  if type(name) ~= "string" or name == "" then error("kv.ns: name: non-empty string expected", 2) end
  return setmetatable({ st = st, name = name }, NS)
end

local function check_key(key, fn)
  if type(key) ~= "string" or key == "" then error("kv." .. fn .. ": key: non-empty string expected", 3) end
end

local function check_version(v, fn)
  if v ~= nil and (type(v) ~= "number" or v ~= floor(v) or v < 0) then
    error("kv." .. fn .. ": opts.version: non-negative integer expected", 3)
  end
end

function NS:get(key, opts)
  check_key(key, "get")
  opts = util.opt_table(opts, "kv.get: opts")
  local rows, err = self.st.db:query(
    "SELECT value, version FROM kv WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
    self.name, key, util.now(opts.now))
  if not rows then return nil, err end
  local r = rows[1]
  if not r then return nil end
  return json.decode(r.value), r.version
end

function NS:put(key, value, opts)
  check_key(key, "put")
  opts = util.opt_table(opts, "kv.put: opts")
  if value == nil then error("kv.put: value: a JSON value expected (use delete to remove)", 2) end
  check_version(opts.version, "put")
  local text, jerr = json.encode(value)
  if not text then error("kv.put: value: " .. tostring(jerr), 2) end
  local now = util.now(opts.now)
  local expires
  if opts.ttl ~= nil then
    local d = util.duration_arg(opts.ttl, "kv.put: opts.ttl")
    if d <= 0 then error("kv.put: opts.ttl: positive duration expected", 2) end
    expires = now + d
  end
  local db, res, err = self.st.db
  if opts.version == nil then
    res, err = db:exec([[INSERT INTO kv (ns, key, value, version, expires_at, updated)
      VALUES ($1, $2, $3, 1, $4, $5)
      ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = kv.version + 1,
        expires_at = excluded.expires_at, updated = excluded.updated
      RETURNING version]], self.name, key, text, expires, now)
  elseif opts.version == 0 then
    -- Only if absent: an expired row counts as absent and is overwritten.
    res, err = db:exec([[INSERT INTO kv (ns, key, value, version, expires_at, updated)
      VALUES ($1, $2, $3, 1, $4, $5)
      ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = kv.version + 1,
        expires_at = excluded.expires_at, updated = excluded.updated
      WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5
      RETURNING version]], self.name, key, text, expires, now)
  else
    res, err = db:exec([[UPDATE kv SET value = $3, version = version + 1, expires_at = $4, updated = $5
      WHERE ns = $1 AND key = $2 AND version = $6 AND (expires_at IS NULL OR expires_at > $5)
      RETURNING version]], self.name, key, text, expires, now, opts.version)
  end
  if not res then return nil, err end
  local row = res.rows and res.rows[1]
  if not row then return nil, "conflict" end
  return row.version
end

-- delete(key, {version}) → true when a live entry was removed, false when there was none;
-- with a version, nil, "conflict" unless the live entry has that version.
function NS:delete(key, opts)
  check_key(key, "delete")
  opts = util.opt_table(opts, "kv.delete: opts")
  check_version(opts.version, "delete")
  local now = util.now(opts.now)
  local res, err
  if opts.version == nil then
    res, err = self.st.db:exec([[DELETE FROM kv WHERE ns = $1 AND key = $2
      RETURNING (CASE WHEN expires_at IS NULL OR expires_at > $3 THEN 1 ELSE 0 END) AS live]],
      self.name, key, now)
  else
    res, err = self.st.db:exec([[DELETE FROM kv WHERE ns = $1 AND key = $2 AND version = $3
      AND (expires_at IS NULL OR expires_at > $4) RETURNING 1 AS live]], self.name, key, opts.version, now)
  end
  if not res then return nil, err end
  local row = res.rows and res.rows[1]
  if opts.version ~= nil and not row then return nil, "conflict" end
  return row ~= nil and row.live == 1
end

-- list({prefix, after, limit}) → items, next: items are {key, value, version, expires_at} in
-- key order (bytewise); next is the `after` for the following page, nil at the end.
function NS:list(opts)
  opts = util.opt_table(opts, "kv.list: opts")
  local limit = util.limit_arg(opts.limit, "kv.list: opts.limit", 100, 1000)
  local prefix, after = opts.prefix or "", opts.after
  if type(prefix) ~= "string" then error("kv.list: opts.prefix: string expected", 2) end
  if after ~= nil and type(after) ~= "string" then error("kv.list: opts.after: string expected", 2) end
  local now = util.now(opts.now)
  -- Keys with the prefix are one contiguous run from the prefix on, so read from there and
  -- stop at the first key outside it: no LIKE, whose case rules differ between backends.
  local sql = "SELECT key, value, version, expires_at FROM kv WHERE ns = $1 AND key >= $2" ..
    " AND (expires_at IS NULL OR expires_at > $3)"
  local params = { self.name, prefix, now }
  if after then
    sql = sql .. " AND key > $4"
    params[4] = after
  end
  params[#params + 1] = limit + 1
  sql = sql .. " ORDER BY key LIMIT $" .. #params
  local rows, err = self.st.db:query(sql, unpack(params, 1, #params))
  if not rows then return nil, err end
  local items, more = {}, false
  for i, r in ipairs(rows) do
    if r.key:sub(1, #prefix) ~= prefix then break end
    if i > limit then
      more = true
      break
    end
    items[i] = { key = r.key, value = json.decode(r.value), version = r.version, expires_at = r.expires_at }
  end
  return items, more and items[#items].key or nil
end

function NS:purge_expired(opts)
  opts = util.opt_table(opts, "kv.purge_expired: opts")
  local res, err = self.st.db:exec("DELETE FROM kv WHERE ns = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
    self.name, util.now(opts.now))
  if not res then return nil, err end
  return res.changes
end

-- kv.purge_expired(st) → count: every namespace at once (for a periodic sweep).
function M.purge_expired(st, opts)
  util.store_arg(st, "kv.purge_expired")
  opts = util.opt_table(opts, "kv.purge_expired: opts")
  local res, err = st.db:exec("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= $1", util.now(opts.now))
  if not res then return nil, err end
  return res.changes
end

function NS:__tostring() return "kv namespace " .. self.name end

return M
