-- steward.tenants.provision: a tenant's provisioning as a saga (steward.tenants.saga) of the
-- steps in steward.tenants.steps, and the daemon's side of it: the steps' environment, the
-- saga started when a tenant is requested, and, on the leader, every unfinished saga resumed
-- (at start-up at once, later when its runner's lease has run out).
local crypto = require "steward.crypto"
local time = require "steward.time"
local task = require "steward.task"
local log = require "steward.log"
local saga = require "steward.tenants.saga"
local steps = require "steward.tenants.steps"
local record = require "steward.tenants.record"
local tconfig = require "steward.tenants.config"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local M = {}

M.KIND = "tenant.provision"

function M.saga_id(tenant) return "provision:" .. tenant end

local function set_state(ctx, from, to, fields, kind)
  local r, err = record.change(ctx.store, ctx.subject, function(r)
    if not from[r.state] then return nil, "state " .. r.state end
    r.state = to
    for k, v in pairs(fields or {}) do r[k] = v end
    return true
  end, kind)
  if r then return true end
  if tostring(err):match("^state ") then return true end -- done before a crash, or moved on since
  return nil, err
end

M.definition = saga.define{
  kind = M.KIND,
  steps = steps.LIST,
  on_start = function(ctx) return set_state(ctx, { requested = true }, "provisioning", nil, "provisioning") end,
  on_done = function(ctx)
    return set_state(ctx, { requested = true, provisioning = true }, "active", { failed_step = false, reason = false },
      "provisioned")
  end,
  on_failed = function(ctx, step, err)
    local ok, e = set_state(ctx, { requested = true, provisioning = true }, "failed",
      { failed_step = step, reason = tostring(err) }, "failed")
    steps.apply_config(ctx.subject, nil, nil)
    return ok, e
  end,
}

-- new_token() -> secret, hash: the tenant's admin token, made when the tenant is requested so
-- the caller sees it once; only the hash goes into the saga.
function M.new_token()
  local secret = "stw_" .. crypto.base64url(crypto.random(32))
  return secret, crypto.hex(crypto.sha256(secret))
end

local runner = { leader = function() return true end, store = nil }

-- run(st, tenant): the saga in a task of its own; on a process that is not the leader the
-- leader's scan picks it up.
function M.kick(st, tenant)
  if not runner.leader() then return end
  task.spawn({ name = "tenant.provision " .. tenant }, function()
    local res, err = saga.run(st, M.saga_id(tenant))
    if res == nil then log.error("tenant provisioning stopped; it resumes later", { tenant = tenant, err = tostring(err) }) end
  end)
end

-- resume(st [, takeover]) -> the number of sagas picked up
function M.resume(st, takeover)
  local ids, err = saga.pending(st, { takeover = takeover })
  if not ids then return nil, err end
  local todo = {}
  for _, id in ipairs(ids) do if not saga.running_here(id) then todo[#todo + 1] = id end end
  ids = todo
  for _, id in ipairs(ids) do
    task.spawn({ name = "saga " .. id }, function()
      local res, e = saga.run(st, id, { takeover = takeover })
      if res == nil then log.error("saga stopped; it resumes later", { saga = id, err = tostring(e) }) end
    end)
  end
  if #ids > 0 then log.info("sagas resumed", { count = #ids }) end
  return #ids
end

M.SCAN = "2s"

-- start(ctx): called by the daemon once its store, auth and policy registry exist.
-- The runner's name: the same for this instance after a restart (host, state directory,
-- worker), so a daemon killed mid-saga takes its sagas back at once when it starts again;
-- another instance waits for the lease.
local function instance_owner(ctx)
  local host = "localhost"
  local f = io.open("/proc/sys/kernel/hostname", "r")
  if f then host = (f:read("*l") or host); f:close() end
  local who = host .. "\0" .. tostring(ctx.cfg.var_dir) .. "\0" .. tostring(ctx.worker or "")
  return "saga-" .. crypto.hex(crypto.sha256(who)):sub(1, 16)
end

function M.start(ctx)
  saga.OWNER = instance_owner(ctx)
  tconfig.configure(ctx.cfg.tenants)
  steps.env.cfg, steps.env.auth, steps.env.registry = ctx.cfg, ctx.auth, ctx.registry
  runner.store = ctx.store
  local function leader() return not ctx.cluster or ctx.cluster:is_leader() end
  runner.leader = leader
  -- A lone process (no cluster, no workers) owns every saga at start-up: whoever held one
  -- before was this daemon, now dead. In a cluster a saga waits for its runner's lease.
  local lone = not ctx.cluster
  task.spawn({ name = "tenants.resume" }, function()
    record.refresh(ctx.store)
    if leader() then M.resume(ctx.store, lone) end
  end)
  ctx.bg[#ctx.bg + 1] = time.every(M.SCAN, function()
    if ctx.stopping or not leader() then return end
    if ctx.store_health and not ctx.store_health.up then return end
    M.resume(ctx.store, false)
  end)
end

return M
