-- steward.tenants.saga: a durable saga — steps run in order, each with a compensation; the
-- progress of every step is in the store (tenant_sagas, tenant_saga_steps) before and after it
-- runs, so a daemon killed mid-saga resumes where it stopped. A step is recorded "started"
-- before it runs and "done" with its result after: a step found started but not done ran
-- partly or wholly before the crash, and runs again only when it is idempotent (every shipped
-- step is: what it creates is named after the subject and checked for first). A failure runs
-- the compensations of the done steps in reverse, the failed step's own first (its partial
-- work); compensations are idempotent too, and a saga found compensating resumes compensating.
-- One runner at a time: a saga is leased to its runner, renewed at every step.
local json = require "steward.json"
local time = require "steward.time"
local log = require "steward.log"
local crypto = require "steward.crypto"
local domain = require "steward.runtime.store.domain"
require "steward.runtime.store.tenants"

local type, pairs, ipairs, tostring, pcall, error, format = type, pairs, ipairs, tostring, pcall, error, string.format

local M = {}

M.LEASE = 30 -- seconds a runner holds a saga without writing a step
M.OWNER = "saga-" .. crypto.hex(crypto.random(8)) -- this process

local ready = domain.migrator("tenants")

-- Test hooks (docs/tenants.md, "Proving the saga"): fail = "<step>" makes that step fail after
-- it ran (its own compensation must clean up what it did); crash = "<step>" kills the process
-- with SIGKILL after the step ran and before it is recorded done ("<step>:before": before it
-- runs). Read from STEWARD_TENANTS_FAIL_STEP / STEWARD_TENANTS_CRASH_STEP, or set by a spec.
M.inject = { fail = os.getenv("STEWARD_TENANTS_FAIL_STEP"), crash = os.getenv("STEWARD_TENANTS_CRASH_STEP") }

local function die_now(step, phase)
  log.warn("saga: crash injected", { step = step, phase = phase })
  if M.inject.on_crash then return M.inject.on_crash(step, phase) end
  local ffi = require "ffi"
  pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")
  ffi.C.kill(ffi.C.getpid(), 9)
end

local function crash_point(step, phase)
  local c = M.inject.crash
  if not c or c == "" then return end
  local name, when = c:match("^([^:]+):?(%a*)$")
  if name == step and (when == "" and "after" or when) == phase then die_now(step, phase) end
end

-- define{kind, steps = {{name, run, undo, idempotent}}, on_start(ctx), on_done(ctx),
-- on_failed(ctx, step, err)} -> definition. The hooks are called again after a crash, so they
-- must be idempotent as well.
local defs = {}
function M.define(d)
  if type(d) ~= "table" or type(d.kind) ~= "string" then error("saga.define: kind: string expected", 2) end
  if type(d.steps) ~= "table" or #d.steps == 0 then error("saga.define: steps: non-empty list expected", 2) end
  local seen = {}
  for i, s in ipairs(d.steps) do
    if type(s.name) ~= "string" or seen[s.name] then error(format("saga.define: steps[%d].name: unique string expected", i), 2) end
    if type(s.run) ~= "function" then error(format("saga.define: steps[%d].run: function expected", i), 2) end
    if s.undo ~= nil and type(s.undo) ~= "function" then error(format("saga.define: steps[%d].undo: function expected", i), 2) end
    seen[s.name] = true
  end
  defs[d.kind] = d
  return d
end

-- insert_statement(kind, id, subject, data, now) -> the INSERT of a new saga, for the caller's
-- batch (the tenant record and its saga commit together, or neither).
function M.insert_statement(kind, id, subject, data, now)
  return { "INSERT INTO tenant_sagas (id, kind, subject, state, data, lease_until, created, updated) " ..
    "VALUES ($1, $2, $3, 'running', $4, 0, $5, $5) ON CONFLICT (id) DO NOTHING", id, kind, subject, json.encode(data or {}), now }
end

-- get(st, id) -> {id, kind, subject, state, data, failed_step, error, steps = {{step, status, runs, ...}}} | false | nil, err
function M.get(st, id)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local s
  s, err = domain.one(st, function(r) return domain.row(r, { "data" }) end,
    "SELECT id, kind, subject, state, data, failed_step, error, owner, lease_until, created, updated FROM tenant_sagas WHERE id = $1", id)
  if not s then return s, err end
  local rows
  rows, err = st.db:query("SELECT step, seq, status, result, error, runs, started, finished FROM tenant_saga_steps " ..
    "WHERE saga = $1 ORDER BY seq", id)
  if not rows then return nil, err end
  for i, r in ipairs(rows) do
    rows[i] = domain.row(r, {})
    rows[i].result = type(r.result) == "string" and json.decode(r.result) or nil
  end
  s.steps = rows
  return s
end

local function claim(st, id, takeover, now)
  local res, err = st.db:batch({ { "UPDATE tenant_sagas SET owner = $2, lease_until = $3 WHERE id = $1 AND " ..
    "state IN ('running', 'compensating') AND (owner IS NULL OR owner = $2 OR lease_until < $4 OR $5 = 1)",
    id, M.OWNER, now + M.LEASE, now, takeover and 1 or 0 } })
  if not res then return nil, err end
  return res[1].changes == 1
end

local function set_step(st, id, name, seq, status, fields, now)
  fields = fields or {}
  return st.db:batch({
    { "INSERT INTO tenant_saga_steps (saga, step, seq, status, result, error, runs, started, finished) " ..
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (saga, step) DO UPDATE SET status = excluded.status, " ..
      "result = COALESCE(excluded.result, tenant_saga_steps.result), error = excluded.error, " ..
      "runs = tenant_saga_steps.runs + excluded.runs, finished = excluded.finished",
      id, name, seq, status, fields.result ~= nil and json.encode(fields.result) or json.null,
      fields.error or json.null, fields.run and 1 or 0, now, fields.finished and now or json.null },
    { "UPDATE tenant_sagas SET lease_until = $2, updated = $3 WHERE id = $1 AND owner = $4", id, now + M.LEASE, now, M.OWNER },
  })
end

local function set_saga(st, id, state, failed_step, err, now)
  return st.db:batch({ { "UPDATE tenant_sagas SET state = $2, failed_step = COALESCE($3, failed_step), " ..
    "error = COALESCE($4, error), updated = $5, owner = CASE WHEN $2 IN ('done', 'failed') THEN NULL ELSE owner END " ..
    "WHERE id = $1", id, state, failed_step or json.null, err or json.null, now } })
end

local function call(what, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then return nil, what .. ": " .. tostring(a) end
  if a == nil then return nil, what .. ": " .. tostring(b or "failed") end
  return a
end

-- The compensations, last step first: every step with a row (done, failed or started: a
-- step that failed or was cut short may have done part of its work).
local function compensate(st, d, s, ctx)
  local rows = {}
  for _, r in ipairs(s.steps) do rows[r.step] = r end
  for i = #d.steps, 1, -1 do
    local step = d.steps[i]
    local r = rows[step.name]
    if r and r.status ~= "undone" then
      if step.undo then
        local ok, err = call("undo " .. step.name, step.undo, ctx, r.result)
        if not ok then
          set_step(st, s.id, step.name, i, r.status, { error = err }, time.now())
          return nil, err
        end
      end
      local ok, err = set_step(st, s.id, step.name, i, "undone", { finished = true }, time.now())
      if not ok then return nil, err end
    end
  end
  if d.on_failed then
    local ok, err = call("on_failed", d.on_failed, ctx, s.failed_step, s.error)
    if not ok then return nil, err end
  end
  return set_saga(st, s.id, "failed", nil, nil, time.now())
end

-- The sagas running in this process: the lease cannot tell two tasks of one runner apart.
local running = {}

local run_saga

function M.running_here(id) return running[id] == true end

-- run(st, id [, {takeover}]) -> "done" | "failed" | false (another runner has it) | nil, err.
-- Runs the saga to its end from wherever its rows say it is.
function M.run(st, id, opts)
  if running[id] then return false end
  running[id] = true
  local res = { pcall(run_saga, st, id, opts) }
  running[id] = nil
  if not res[1] then error(res[2], 0) end
  return res[2], res[3]
end

function run_saga(st, id, opts)
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local mine
  mine, err = claim(st, id, opts.takeover, time.now())
  if mine == nil then return nil, err end
  if not mine then return false end
  local s
  s, err = M.get(st, id)
  if not s then return nil, err or "not found" end
  local d = defs[s.kind]
  if not d then return nil, "saga " .. id .. ": no definition of kind " .. s.kind end
  local ctx = { saga = id, subject = s.subject, data = s.data, results = {}, store = st }
  if s.state == "running" then
    if d.on_start then
      ok, err = call("on_start", d.on_start, ctx)
      if not ok then return nil, err end
    end
    local rows = {}
    for _, r in ipairs(s.steps) do rows[r.step] = r end
    local failed, why
    for i, step in ipairs(d.steps) do
      local r = rows[step.name]
      if r and r.status == "done" then
        ctx.results[step.name] = r.result
      elseif r and r.status ~= "started" then
        failed, why = step.name, "found " .. r.status
        break
      elseif r and step.idempotent == false then
        failed, why = step.name, "interrupted by a crash and not idempotent: not run again"
        break
      else
        ok, err = set_step(st, id, step.name, i, "started", { run = true }, time.now())
        if not ok then return nil, err end
        crash_point(step.name, "before")
        local result
        result, err = call(step.name, step.run, ctx)
        if result ~= nil and M.inject.fail == step.name then result, err = nil, step.name .. ": injected failure" end
        if result == nil then
          set_step(st, id, step.name, i, "failed", { error = err }, time.now())
          failed, why = step.name, err
          break
        end
        crash_point(step.name, "after")
        ctx.results[step.name] = result
        ok, err = set_step(st, id, step.name, i, "done", { result = result, finished = true }, time.now())
        if not ok then return nil, err end
      end
    end
    if not failed then
      if d.on_done then
        ok, err = call("on_done", d.on_done, ctx)
        if not ok then return nil, err end
      end
      ok, err = set_saga(st, id, "done", nil, nil, time.now())
      if not ok then return nil, err end
      return "done"
    end
    log.warn("saga: step failed, compensating", { saga = id, step = failed, err = tostring(why) })
    ok, err = set_saga(st, id, "compensating", failed, why, time.now())
    if not ok then return nil, err end
    s, err = M.get(st, id)
    if not s then return nil, err end
  end
  if s.state == "compensating" then
    ok, err = compensate(st, d, s, ctx)
    if not ok then return nil, err end
    return "failed"
  end
  return s.state
end

-- pending(st [, {takeover}]) -> the ids of the sagas to run: running or compensating ones that
-- are this runner's (left by a crash of this instance, or running here now: run skips those),
-- or whose runner is gone (lease expired; takeover: every one, at a lone process's start-up).
function M.pending(st, opts)
  opts = opts or {}
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT id FROM tenant_sagas WHERE state IN ('running', 'compensating') AND " ..
    "(owner IS NULL OR owner = $3 OR lease_until < $1 OR $2 = 1) ORDER BY created", time.now(), opts.takeover and 1 or 0,
    M.OWNER)
  if not rows then return nil, err end
  local ids = {}
  for i, r in ipairs(rows) do ids[i] = r.id end
  return ids
end

return M
