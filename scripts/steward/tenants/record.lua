-- steward.tenants.record: the tenant record in the store — checks of what a caller sends
-- (each refusal names its field), reads, writes committed together with the tenant.* event they
-- announce, optimistic concurrency by version, and the in-process cache behind tenants.state()
-- and tenants.limits() that the hot path (auth, ingest) reads without touching the store.
local json = require "steward.json"
local time = require "steward.time"
local task = require "steward.task"
local log = require "steward.log"
local domain = require "steward.runtime.store.domain"
local events = require "steward.runtime.events"
local tconfig = require "steward.tenants.config"
require "steward.runtime.store.tenants"
require "steward.runtime.auth" -- its api_tokens table: the saga's first step writes there

local type, pairs, ipairs, tostring, next, format = type, pairs, ipairs, tostring, next, string.format

local M = {}

M.STATES = { requested = true, provisioning = true, active = true, suspended = true, offboarding = true,
  removed = true, failed = true }
M.ID = "^[a-z0-9][a-z0-9_-]*$"
M.SOURCE = "steward.tenants"
local JSON_COLS = { "contact", "branding", "config", "limits" }
local COLS = "id, name, plan, state, failed_step, reason, contact, branding, config, limits, created, updated, version"

local ready = domain.migrator("tenants")
M.ready = ready

local function decode(r) return domain.row(r, JSON_COLS) end

-- ---- checks ----

local BRANDING = { name = 200, logo_url = 2000, color = 7, email_from = 300, footer = 2000, link_base = 2000 }

local function is_url(v) return v:match("^https?://[^/%s]+[^%s]*$") ~= nil end

-- check_id(id) -> true | nil, reason
function M.check_id(id)
  if type(id) ~= "string" then return nil, "a string expected" end
  if #id > 63 or not id:match(M.ID) then
    return nil, "1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit"
  end
  return true
end

local function check_branding(b)
  if type(b) ~= "table" or json.is_array(b) and next(b) ~= nil then return "branding", "an object expected" end
  for k, v in pairs(b) do
    local max = BRANDING[k]
    local f = "branding." .. tostring(k)
    if not max then return f, "unknown field (name, logo_url, color, email_from, footer, link_base)" end
    if type(v) ~= "string" or #v > max then return f, format("a string of at most %d bytes expected", max) end
    if k == "color" and not v:match("^#%x%x%x%x%x%x$") then return f, "a colour as #rrggbb expected" end
    if (k == "logo_url" or k == "link_base") and not is_url(v) then return f, "an http:// or https:// URL expected" end
    if k == "email_from" and not v:match("@") then return f, "an email address expected" end
  end
end

local function check_contact(c)
  if type(c) ~= "table" or json.is_array(c) and next(c) ~= nil then return "contact", "an object expected" end
  for k, v in pairs(c) do
    if k ~= "email" then return "contact." .. tostring(k), "unknown field (email)" end
    if type(v) ~= "string" or #v > 300 or not v:match("^[^@%s]+@[^@%s]+$") then
      return "contact.email", "an email address expected"
    end
  end
end

local function check_config(c)
  if type(c) ~= "table" or json.is_array(c) and next(c) ~= nil then return "config", "an object expected (policy name -> its settings)" end
  for k, v in pairs(c) do
    if type(k) ~= "string" or k == "" then return "config", "keys are policy names" end
    if type(v) ~= "table" or json.is_array(v) and next(v) ~= nil then
      return "config." .. k, "an object of the policy's settings expected"
    end
  end
end

local function check_limits(l)
  local ok, err = tconfig.check_limits(l, "limits")
  if ok then return end
  local field, reason = err:match("^(%S+): (.*)$")
  return field or "limits", reason or err
end

local FIELDS = { id = true, name = true, plan = true, contact = true, branding = true, config = true, limits = true }
local PATCHABLE = { name = true, plan = true, contact = true, branding = true, config = true, limits = true, version = true }

-- The checks shared by create and update: -> nil (fine) | field, reason
local function check_fields(spec)
  if spec.name ~= nil and (type(spec.name) ~= "string" or spec.name == "" or #spec.name > 200) then
    return "name", "a string of 1 to 200 bytes expected"
  end
  if spec.plan ~= nil then
    if type(spec.plan) ~= "string" then return "plan", "a string expected" end
    local ok, err = tconfig.plan_known(spec.plan)
    if not ok then return "plan", err end
  end
  if spec.contact ~= nil then
    local f, r = check_contact(spec.contact); if f then return f, r end
  end
  if spec.branding ~= nil then
    local f, r = check_branding(spec.branding); if f then return f, r end
  end
  if spec.config ~= nil then
    local f, r = check_config(spec.config); if f then return f, r end
  end
  if spec.limits ~= nil then
    local f, r = check_limits(spec.limits); if f then return f, r end
  end
end

-- check_new(spec) -> spec (normalised) | nil, field, reason
function M.check_new(spec)
  if type(spec) ~= "table" or json.is_array(spec) then return nil, "body", "an object expected" end
  for k in pairs(spec) do
    if not FIELDS[k] then return nil, tostring(k), "unknown field (id, name, plan, contact, branding, config, limits)" end
  end
  local ok, reason = M.check_id(spec.id)
  if not ok then return nil, "id", reason end
  if spec.name == nil then return nil, "name", "required" end
  local s = { id = spec.id, name = spec.name, plan = spec.plan or tconfig.current.default_plan or "basic",
    contact = spec.contact or {}, branding = spec.branding or {}, config = spec.config or {}, limits = spec.limits or {} }
  local field
  field, reason = check_fields(s)
  if field then return nil, field, reason end
  return s
end

-- check_patch(patch) -> patch | nil, field, reason (version is the caller's business)
function M.check_patch(patch)
  if type(patch) ~= "table" or json.is_array(patch) then return nil, "body", "an object expected" end
  for k in pairs(patch) do
    if not PATCHABLE[k] then
      local why = (k == "state" or k == "id") and "cannot be patched (suspend, resume and offboard change the state)"
        or "unknown field (name, plan, contact, branding, config, limits, version)"
      return nil, tostring(k), why
    end
  end
  if patch.version ~= nil and (type(patch.version) ~= "number" or patch.version ~= math.floor(patch.version)) then
    return nil, "version", "an integer expected"
  end
  local field, reason = check_fields(patch)
  if field then return nil, field, reason end
  return patch
end

-- ---- reads ----

-- get(st, id) -> record | false | nil, err
function M.get(st, id)
  local ok, err = ready(st)
  if not ok then return nil, err end
  return domain.one(st, decode, "SELECT " .. COLS .. " FROM tenants WHERE id = $1", id)
end

-- list(st, {state, plan, limit}) -> records by id | nil, err
function M.list(st, f)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local w = domain.where()
  if f.state ~= nil then w:add("state = ?", f.state) end
  if f.plan ~= nil then w:add("plan = ?", f.plan) end
  local rows
  rows, err = st.db:query("SELECT " .. COLS .. " FROM tenants" .. w:clause() .. " ORDER BY id LIMIT " ..
    w:param(f.limit or 1000), unpack(w.params))
  if not rows then return nil, err end
  for i, r in ipairs(rows) do rows[i] = decode(r) end
  return rows
end

-- ---- the cache of states and limits ----

M.CACHE_TTL = 1 -- seconds: a change made by another process is seen within this
local cache = { map = nil, at = -math.huge, refreshing = false }

local function note(r)
  local map = cache.map or {}
  cache.map = map
  if r then map[r.id] = { state = r.state, plan = r.plan, limits = r.limits, config = r.config } end
end
M.note = note

-- refresh(st) -> true | nil, err: every tenant's state, plan and override read again.
function M.refresh(st)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT id, state, plan, limits, config FROM tenants")
  if not rows then return nil, err end
  local map = {}
  for _, r in ipairs(rows) do
    map[r.id] = { state = r.state, plan = r.plan, limits = json.decode(r.limits) or {}, config = json.decode(r.config) or {} }
  end
  cache.map, cache.at = map, time.monotonic()
  return true
end

-- cached(st, id) -> {state, plan, limits} | nil. Never waits once the cache is loaded: a stale
-- cache answers at once and a background task reads the store again.
function M.cached(st, id)
  if not cache.map then
    if not st then return nil end
    local ok, err = M.refresh(st)
    if not ok then log.warn("tenants: cache not loaded", { err = tostring(err) }) end
    return cache.map and cache.map[id]
  end
  if st and not cache.refreshing and time.monotonic() - cache.at > M.CACHE_TTL then
    cache.refreshing = true
    task.spawn({ name = "tenants.cache" }, function()
      local ok, err = pcall(M.refresh, st)
      cache.refreshing = false
      if not ok then log.warn("tenants: cache refresh failed", { err = tostring(err) }) end
    end)
  end
  return cache.map[id]
end

-- configs(st) -> {[tenant] = config} of the tenants whose settings are in force (provisioning
-- to offboarding), from the cache.
local LIVE = { provisioning = true, active = true, suspended = true, offboarding = true }
function M.configs(st)
  if not cache.map and st then M.refresh(st) end
  local out = {}
  for id, c in pairs(cache.map or {}) do
    if LIVE[c.state] and c.config and next(c.config) ~= nil then out[id] = c.config end
  end
  return out
end

function M.forget() cache.map, cache.at = nil, -math.huge end

-- ---- writes ----

local function event(kind, r, extra, now)
  local data = { tenant = r.id, state = r.state, plan = r.plan, version = r.version,
    failed_step = r.failed_step or nil, reason = r.reason or nil }
  for k, v in pairs(extra or {}) do data[k] = v end
  return { id = format("tenant.%s:%s:%d", kind, r.id, r.version), type = "tenant." .. kind, tenant = r.id,
           time = now, source = M.SOURCE, data = data }
end

local function commit(st, stmts, ev, now)
  local res, fresh = domain.commit(st, stmts, ev, now)
  if not res then return nil, fresh end
  events.published(st, fresh)
  return res
end

-- insert(st, spec, now, saga_stmts) -> record | nil, err ("exists"): the record in state
-- requested, its event and the caller's statements (the saga's row) in one batch.
function M.insert(st, s, now, extra_stmts)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local r = { id = s.id, name = s.name, plan = s.plan, state = "requested", contact = s.contact,
    branding = s.branding, config = s.config, limits = s.limits, created = now, updated = now, version = 1 }
  local stmts = { { "INSERT INTO tenants (" .. COLS .. ") VALUES ($1,$2,$3,$4,NULL,NULL,$5,$6,$7,$8,$9,$9,1)" ..
    " ON CONFLICT (id) DO NOTHING", r.id, r.name, r.plan, r.state, json.encode(r.contact), json.encode(r.branding),
    json.encode(r.config), json.encode(r.limits), now } }
  for _, x in ipairs(extra_stmts or {}) do stmts[#stmts + 1] = x end
  local res
  res, err = commit(st, stmts, event("requested", r, { name = r.name }, now), now)
  if not res then return nil, err end
  if res[1].changes ~= 1 then return nil, "exists" end
  note(r)
  return r
end

-- change(st, id, fn, kind, opts) -> record | nil, err: reads the record, fn(record) edits it
-- (or returns nil, err to refuse), and writes it back conditional on its version, with the
-- event tenant.<kind>. opts.version: the version the caller saw ("conflict" when stale).
function M.change(st, id, fn, kind, opts, now)
  opts = opts or {}
  for _ = 1, 5 do
    local r, err = M.get(st, id)
    if r == nil then return nil, err end
    if r == false then return nil, "not found" end
    if opts.version and opts.version ~= r.version then
      return nil, "conflict", r
    end
    local old = r.version
    local extra
    local ok, why = fn(r)
    if not ok then return nil, why, r end
    if type(ok) == "table" then extra = ok end
    now = now or time.now()
    r.version, r.updated = old + 1, now
    local res
    res, err = commit(st, { { "UPDATE tenants SET name = $2, plan = $3, state = $4, failed_step = $5, reason = $6, " ..
      "contact = $7, branding = $8, config = $9, limits = $10, updated = $11, version = $12 WHERE id = $1 AND version = $13",
      r.id, r.name, r.plan, r.state, r.failed_step or json.null, r.reason or json.null, json.encode(r.contact),
      json.encode(r.branding), json.encode(r.config), json.encode(r.limits), now, r.version, old } },
      event(kind, r, extra, now), now)
    if not res then return nil, err end
    if res[1].changes == 1 then
      note(r)
      return r
    end
    if opts.version then return nil, "conflict", (M.get(st, id)) or r end
    now = nil -- another writer won: read again and retry
  end
  return nil, "conflict"
end

-- view(r) -> the record as the API shows it (times in RFC 3339)
function M.view(r)
  local fmt = require("steward.runtime.store.util").format_rfc3339
  local out = {}
  for k, v in pairs(r) do out[k] = v end
  out.created, out.updated = fmt(r.created), fmt(r.updated)
  return out
end

return M
