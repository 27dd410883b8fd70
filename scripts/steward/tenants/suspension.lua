-- steward.tenants.suspension: what suspending a tenant does. A durable row per suspended
-- tenant (table tenant_suspensions) is the one truth that the hot paths read through an
-- in-memory set: the API refuses the tenant's tokens (403 tenant_suspended), ingest refuses
-- its events, dispatch holds its events (unhandled, so durable) until resumption.
-- steward.tenants' suspend/resume call apply(); the other workers and instances see the
-- change within M.REFRESH seconds, the process that made it at once.
local store = require "steward.runtime.store"
local task = require "steward.task"
local time = require "steward.time"
local log = require "steward.log"

local type, ipairs, pairs, pcall, tostring, error = type, ipairs, pairs, pcall, tostring, error

local M = {}

store.register_migrations("tenant_suspension", {
  { version = 1, sql = [[CREATE TABLE tenant_suspensions (
      tenant TEXT PRIMARY KEY, reason TEXT NOT NULL, since DOUBLE PRECISION NOT NULL)]] },
})

-- How stale the set may be in a process that did not make the change (seconds).
M.REFRESH = 1

local suspended = {}    -- tenant -> { reason, since }
local count = 0
local loaded_at = nil   -- time.now() of the last load; nil: never loaded
local loaded_from = nil -- the store it was loaded from
local refreshing = false

local function st_of(st)
  st = st or store.default()
  if not st then return nil, "no store: the daemon's store is not open" end
  return st
end

local migrated = setmetatable({}, { __mode = "k" })
local function ready(s)
  if migrated[s] then return true end
  local ok, err = s:migrate()
  if not ok then return nil, "tenant_suspension: store migration failed: " .. tostring(err) end
  migrated[s] = true
  return true
end

-- Where steward.tenants keeps records, a record's state decides too: suspended, offboarding
-- and removed tenants are refused even if the row here is missing (a crash between the
-- record's change and apply()), and a row left here for a tenant whose record is active again
-- is stale (the same crash on resumption) — unless an offboarding put it there.
local HELD = { suspended = true, offboarding = true, removed = true }

local function records(s)
  local ok, has = pcall(function()
    return #(s:sql(s:backend() == "postgres"
      and "SELECT 1 AS x FROM information_schema.tables WHERE table_name = 'tenants' AND table_schema = current_schema()"
      or "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'tenants'") or {}) > 0
  end)
  if not ok or not has then return {} end
  local rows = s:sql([[SELECT id, state, reason, updated FROM tenants
    WHERE state IN ('suspended', 'offboarding', 'removed') OR id IN (SELECT tenant FROM tenant_suspensions)]])
  if not rows then return {} end
  local out = {}
  for _, r in ipairs(rows) do out[r.id] = r end
  return out
end

-- load([st]) -> true | nil, err: the set read again from the store (yields: call in a task).
function M.load(st)
  local s, err = st_of(st)
  if not s then return nil, err end
  local ok
  ok, err = ready(s)
  if not ok then return nil, err end
  local rows
  rows, err = s:sql("SELECT tenant, reason, since FROM tenant_suspensions")
  if not rows then return nil, err end
  local recs = records(s)
  local set, n = {}, 0
  for _, r in ipairs(rows) do
    local rec = recs[r.tenant]
    if not (rec and rec.state == "active" and r.reason ~= "offboarding") then
      set[r.tenant] = { reason = r.reason, since = r.since }
      n = n + 1
    end
  end
  for id, rec in pairs(recs) do
    if HELD[rec.state] and not set[id] then
      local reason = rec.reason
      if type(reason) ~= "string" or reason == "" then reason = rec.state end
      set[id] = { reason = reason, since = rec.updated }
      n = n + 1
    end
  end
  suspended, count, loaded_at, loaded_from = set, n, time.now(), s
  return true
end

-- A stale set is refreshed in a task of its own, so the caller (auth, ingest, dispatch) never
-- waits for the store; the first use in a task loads it before answering.
local function fresh()
  if loaded_at and loaded_from == store.default() then
    if refreshing or time.now() - loaded_at < M.REFRESH then return end
    refreshing = true
    task.spawn({ name = "tenants.suspension.refresh" }, function()
      local ok, err = pcall(M.load)
      refreshing = false
      if not ok then log.warn("cannot refresh the suspended tenants", { error = tostring(err) }) end
    end)
    return
  end
  if not store.default() then return end
  if task.current() then
    local ok, err = pcall(M.load)
    if not ok then log.warn("cannot load the suspended tenants", { error = tostring(err) }) end
  end
end

-- any() -> whether some tenant is suspended (the hot paths' one-comparison exit).
function M.any()
  fresh()
  return count > 0
end

-- get(tenant) -> { reason, since } while the tenant is suspended, else nil.
function M.get(tenant)
  fresh()
  if count == 0 or tenant == nil then return nil end
  return suspended[tenant]
end

-- list() -> { tenant = { reason, since } } of the tenants suspended now (a copy).
function M.list()
  fresh()
  local out = {}
  for k, v in pairs(suspended) do out[k] = { reason = v.reason, since = v.since } end
  return out
end

-- message(tenant, s) -> the text every refusal carries.
function M.message(tenant, s)
  return "tenant " .. tenant .. " is suspended: " .. ((s and s.reason ~= "" and s.reason) or "no reason given")
end

-- apply(id, on [, reason [, st]]) -> true | nil, err: suspends (on = true) or resumes the
-- tenant. Suspending an already suspended tenant updates its reason; resuming one that is not
-- suspended is a no-op. Call in a task.
function M.apply(id, on, reason, st)
  if type(id) ~= "string" or id == "" then error("suspension.apply: id: non-empty string expected", 2) end
  if type(on) ~= "boolean" then error("suspension.apply: on: boolean expected", 2) end
  if reason ~= nil and type(reason) ~= "string" then error("suspension.apply: reason: string expected", 2) end
  local s, err = st_of(st)
  if not s then return nil, err end
  local ok
  ok, err = ready(s)
  if not ok then return nil, err end
  local now = time.now()
  if on and reason == nil then -- steward.tenants.suspend keeps the reason on the record
    local ok, tenants = pcall(require, "steward.tenants")
    local rec = ok and type(tenants) == "table" and tenants.get and tenants.get(id)
    reason = type(rec) == "table" and type(rec.reason) == "string" and rec.reason or nil
  end
  if on then
    ok, err = s:sql([[INSERT INTO tenant_suspensions (tenant, reason, since) VALUES ($1, $2, $3)
      ON CONFLICT (tenant) DO UPDATE SET reason = excluded.reason]], id, reason or "", now)
  else
    ok, err = s:sql("DELETE FROM tenant_suspensions WHERE tenant = $1", id)
  end
  if not ok then return nil, err end
  -- This process sees its own change at once.
  ok, err = M.load(s)
  if not ok then return nil, err end
  log.info(on and "tenant suspended" or "tenant resumed", { tenant = id, reason = reason })
  return true
end

-- Requests from policies: an event tenant.suspend_requested {reason} or tenant.resume_requested
-- emitted by a policy (cause depth >= 1: only a policy the operator granted events.emit of that
-- type can; a client posting one through the API is not obeyed) suspends or resumes the
-- event's tenant (a tenant's policy can only name its own) through steward.tenants when it has
-- the record, else directly.
M.REQUESTS = { ["tenant.suspend_requested"] = true, ["tenant.resume_requested"] = true }

local function obey(ev)
  local id = ev.tenant or (type(ev.data) == "table" and ev.data.tenant) or nil
  if type(id) ~= "string" or id == "" then
    log.warn("a tenant request without a tenant is ignored", { event = ev.id, type = ev.type })
    return
  end
  local on = ev.type == "tenant.suspend_requested"
  local reason = type(ev.data) == "table" and type(ev.data.reason) == "string" and ev.data.reason or nil
  local ok, tenants = pcall(require, "steward.tenants")
  local res, err
  if ok and type(tenants) == "table" and tenants.get and tenants.get(id) then
    if on then res, err = tenants.suspend(id, reason) else res, err = tenants.resume(id) end
  else
    res, err = M.apply(id, on, reason)
  end
  if not res then log.warn("a tenant request was not carried out", { event = ev.id, tenant = id, error = tostring(err) }) end
end

-- watch(events_module) -> unsubscribe: the daemon hands its committed events here.
function M.watch(runtime_events)
  return runtime_events.subscribe(function(_, list)
    for _, ev in ipairs(list) do
      if M.REQUESTS[ev.type] and (ev.depth or 0) >= 1 then
        task.spawn({ name = "tenants.suspension.request" }, obey, ev)
      end
    end
  end)
end

return M
