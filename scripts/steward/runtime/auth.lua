-- API tokens: the admin token from config or var/admin.token, and tokens created through
-- POST /v1/tokens with a role and optionally a tenant. Tokens are stored as SHA-256 hashes
-- and compared in constant time; the secret is shown once, at creation.
local crypto = require "steward.crypto"
local fs = require "steward.fs"
local time = require "steward.time"
local store = require "steward.runtime.store"
local log = require "steward.log"

local type, pairs, ipairs = type, pairs, ipairs

local M = {}

store.register_migrations("auth", {
  { version = 1, sql = [[CREATE TABLE api_tokens (
      id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT, role TEXT NOT NULL,
      tenant TEXT, created DOUBLE PRECISION NOT NULL, revoked DOUBLE PRECISION)]] },
})

M.ROLES = { admin = true, operator = true, viewer = true, ingest = true }

-- What each role may do; routes name the permission they need.
local GRANTS = {
  admin    = { read = true, ingest = true, decide = true, operate = true, admin = true },
  operator = { read = true, ingest = true, decide = true, operate = true },
  viewer   = { read = true },
  ingest   = { ingest = true, decide = true },
}

local function hash(secret) return crypto.hex(crypto.sha256(secret)) end

local A = {}
A.__index = A

-- new{store, admin_token, var_dir} -> auth, or nil, err. Loads the token table into memory
-- (one instance: the cache is the truth; creation and revocation update both).
function M.new(opts)
  local a = setmetatable({ st = opts.store, by_hash = {}, by_id = {}, cache = {}, cached = 0 }, A)
  local admin = opts.admin_token
  if not admin then
    local path = (opts.var_dir or "var") .. "/admin.token"
    local existing = fs.read(path)
    if existing then
      admin = existing:match("^%s*(%S+)")
    end
    if not admin then
      admin = "stw_admin_" .. crypto.base64url(crypto.random(32))
      local ok, err = fs.write_atomic(path, admin .. "\n", { mode = tonumber("600", 8) })
      if not ok then return nil, "cannot write the admin token: " .. err end
      log.info("generated the admin token", { path = path })
    else
      log.info("admin token", { path = path })
    end
  else
    log.info("admin token from configuration")
  end
  a.admin_hash = hash(admin)
  local ok, err = a:refresh()
  if not ok then return nil, err end
  return a
end

-- refresh(): the token table read again from the store. Several instances share one
-- PostgreSQL store: a token created or revoked on one reaches the others through NOTIFY
-- (steward.runtime.cluster calls this on 'steward_tokens') and, should a notification be lost, through
-- the daemon's periodic refresh (M.REFRESH seconds: the documented bound).
function A:refresh()
  local rows, err = self.st:sql("SELECT id, hash, name, role, tenant, created FROM api_tokens WHERE revoked IS NULL")
  if not rows then return nil, err end
  local by_hash, by_id = {}, {}
  for _, r in ipairs(rows) do
    by_hash[r.hash] = r
    by_id[r.id] = r
  end
  self.by_hash, self.by_id = by_hash, by_id
  self.cache, self.cached = {}, 0
  return true
end

M.REFRESH = 5
M.CHANNEL = "steward_tokens"

-- The statements that tell the other instances (PostgreSQL) to refresh, run in the same
-- batch as the change so they are told exactly when it commits.
local function with_notify(st, stmt, what)
  local stmts = { stmt }
  if st:backend() == "postgres" then stmts[2] = { "SELECT pg_notify('" .. M.CHANNEL .. "', $1)", what } end
  return stmts
end

-- authenticate(authorization header) -> principal {role, tenant, id} or nil, reason
function A:authenticate(header)
  if type(header) ~= "string" then return nil, "missing" end
  -- Recently verified headers skip the hash (a client sends the same header on every
  -- request); the cache is dropped whenever a token is created or revoked.
  local hit = self.cache[header]
  if hit then return hit end
  local secret = header:match("^[Bb]earer%s+(%S+)%s*$")
  if not secret then return nil, "malformed" end
  local p = self:verify(secret)
  if p then
    if self.cached >= 1024 then self.cache, self.cached = {}, 0 end
    self.cache[header] = p
    self.cached = self.cached + 1
    return p
  end
  return nil, "unknown"
end

function A:verify(secret)
  local h = hash(secret)
  -- The hash comparison is constant-time; the table lookup only sees a hash, which tells
  -- an attacker nothing about the secret.
  if crypto.equals(h, self.admin_hash) then return { role = "admin", id = "admin", name = "admin" } end
  local t = self.by_hash[h]
  if t and crypto.equals(h, t.hash) then
    return { role = t.role, tenant = t.tenant, id = t.id, name = t.name }
  end
  return nil
end

-- suspended(principal) -> the refusal's message when the principal is a token of a suspended
-- tenant (steward.tenants.suspension), else nil. Cheap: an in-memory set, refreshed aside.
function M.suspended(principal)
  local tenant = principal.tenant
  if not tenant then return nil end
  local suspension = require "steward.tenants.suspension"
  local s = suspension.get(tenant)
  return s and suspension.message(tenant, s) or nil
end

function M.allows(principal, permission)
  local g = GRANTS[principal.role]
  return g and g[permission] or false
end

-- create{role, tenant, name} -> {token, id, role, tenant, name, created} or nil, err
function A:create(spec)
  local secret = "stw_" .. crypto.base64url(crypto.random(32))
  local id = crypto.hex(crypto.random(8))
  local row = { id = id, hash = hash(secret), name = spec.name, role = spec.role,
                tenant = spec.tenant, created = time.now() }
  local ok, err = self.st:batch(with_notify(self.st, {
    "INSERT INTO api_tokens (id, hash, name, role, tenant, created) VALUES ($1, $2, $3, $4, $5, $6)",
    row.id, row.hash, row.name, row.role, row.tenant, row.created }, "created " .. id))
  if not ok then return nil, err end
  self.by_hash[row.hash], self.by_id[row.id] = row, row
  self.cache, self.cached = {}, 0
  return { token = secret, id = id, role = row.role, tenant = row.tenant, name = row.name, created = row.created }
end

-- list([tenant]): every live token, or only the tenant's.
function A:list(tenant)
  local out = {}
  for _, r in pairs(self.by_id) do
    if not tenant or r.tenant == tenant then
      out[#out + 1] = { id = r.id, role = r.role, tenant = r.tenant, name = r.name, created = r.created }
    end
  end
  table.sort(out, function(x, y) return x.created < y.created end)
  return out
end

-- revoke(id [, tenant]): a tenant's token revokes only that tenant's tokens.
function A:revoke(id, tenant)
  local r = self.by_id[id]
  if not r or (tenant and r.tenant ~= tenant) then return nil, "not found" end
  local ok, err = self.st:batch(with_notify(self.st,
    { "UPDATE api_tokens SET revoked = $2 WHERE id = $1", id, time.now() }, "revoked " .. id))
  if not ok then return nil, err end
  self.by_id[id], self.by_hash[r.hash] = nil, nil
  self.cache, self.cached = {}, 0
  return true
end

return M
