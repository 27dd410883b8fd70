-- steward.deploy.rollout: the durable state machine of a rollout (canary or blue-green), with
-- Argo Rollouts' semantics. A rollout is a row in the store (steward.deploy.rollout_store) that
-- only a handler of the service's rollout policy changes — one event at a time per service,
-- woken by durable timers, never by an in-memory loop. Every side effect (weights, scaling, an
-- approval request) has a key: it is marked pending in the row before it runs and done after,
-- so after kill -9 (or a takeover on PostgreSQL) the rollout resumes at the same step and skips
-- what is done; only an effect cut off in the middle runs again (the drivers set absolute
-- states, so running one twice converges). Every transition is a history row (audited) and an
-- entry in the handler's decision (steward.runtime.effects), and emits rollout.* events.
local rstore = require "steward.deploy.rollout_store"
local platform = require "steward.deploy.rollout_platform"
local ports = require "steward.deploy.rollout_ports"
local store = require "steward.runtime.store"
local effects = require "steward.runtime.effects"
local time = require "steward.time"
local crypto = require "steward.crypto"
local log = require "steward.log"

local type, ipairs, pairs, tostring, error, format, ceil, max, concat =
  type, ipairs, pairs, tostring, error, string.format, math.ceil, math.max, table.concat

local M = {}

-- The operator's `services` (the config), set by the daemon at start and reload.
M.services = {}

M.TERMINAL = { Completed = true, Aborted = true }
local REVISION = "^[%w._-]+$"

-- ---- a unit of change: history, events and timers committed with the row ----

local Tx = {}
Tx.__index = Tx

local function new_tx(eng, r, insert)
  return setmetatable({ eng = eng, r = r, insert = insert, expected = r.rev, history = {}, events = {}, timers = {},
                        notes = {} }, Tx)
end

function Tx:note(kind, data, actor)
  self.history[#self.history + 1] = { kind = kind, data = data, actor = actor }
  effects.record("rollout", { rollout = self.r.id, transition = kind, step = self.r.step })
end

function Tx:emit(type_, extra)
  local r = self.r
  local d = { rollout = r.id, service = r.service, revision = r.revision, stable = r.stable, step = r.step,
              phase = r.phase, environment = r.environment }
  for k, v in pairs(extra or {}) do d[k] = v end
  self.events[#self.events + 1] = { type = type_, data = d }
end

-- arm(slot, delay): one durable wake-up per slot (main, bg, cleanup); a tick whose wake is
-- not the slot's current one is stale and ignored.
function Tx:arm(slot, delay)
  local r = self.r
  r.wakes = r.wakes or {}
  r.nwake = (r.nwake or 0) + 1
  local wake = format("a%d:s%d:%s:%d", r.attempt, r.step, slot, r.nwake)
  r.wakes[slot] = wake
  local now = self.eng.now()
  self.timers[#self.timers + 1] = { key = "rollout:" .. r.id .. ":" .. wake, due_at = now + max(delay, 0),
    event = { type = "rollout.tick", tenant = r.tenant, data = { rollout = r.id, service = r.service, wake = wake } } }
end

function Tx:save()
  local r = self.r
  if not self.insert and #self.history == 0 and #self.events == 0 and #self.timers == 0 and not self.dirty then return true end
  local ok, err = rstore.commit(self.eng:store(), r, self.expected, { insert = self.insert, history = self.history,
    events = self.events, timers = self.timers }, self.eng.now())
  if ok == nil then error("rollout " .. r.id .. ": cannot save: " .. tostring(err), 0) end
  if ok == false then
    -- Another writer (a takeover, a concurrent run) moved the row on: the handler fails and
    -- runs again on the row as it is now.
    error("rollout " .. r.id .. " changed meanwhile (revision " .. tostring(self.expected) .. "); retrying", 0)
  end
  self.insert, self.expected, self.history, self.events, self.timers, self.dirty = false, r.rev, {}, {}, {}, false
  return true
end

-- ---- the engine ----

local Engine = {}
Engine.__index = Engine

function Engine:store()
  local st = self.opts.store or store.default()
  if not st then error("steward.deploy.rollout: no store (run inside the daemon, or pass opts.store)", 0) end
  return st
end

function Engine:service_def()
  local services = self.opts.services or M.services or {}
  return services[self.service]
end

function Engine:platform()
  if self.opts.platform then return self.opts.platform end
  local p, err = platform.new(self.service, self:service_def(), self.opts.drivers, { ready_timeout = self.ready_timeout })
  if not p then error(err, 0) end
  return p
end

-- effect(tx, name, fn): runs fn once per rollout attempt, whatever restarts happen around it.
function Engine:effect(tx, name, fn)
  local r = tx.r
  local key = format("a%d:%s", r.attempt, name)
  r.done = r.done or {}
  if r.done[key] then return true end
  local again = r.pending == key
  r.pending = key
  tx:note("effect_started", { effect = name, repeated = again or nil })
  tx:save()
  local ok, err = fn(self:platform())
  if not ok then
    r.message = format("%s failed: %s", name, tostring(err))
    tx.dirty = true
    tx:note("effect_failed", { effect = name, error = tostring(err) })
    tx:save()
    error(format("rollout %s: %s", r.id, r.message), 0) -- the handler is retried with backoff
  end
  r.done[key], r.pending, r.message = true, nil, nil
  tx:note("effect_done", { effect = name })
  tx:save()
  return true
end

function Engine:set_phase(tx, phase, message)
  local r = tx.r
  if r.phase == phase and r.message == message then return end
  r.phase, r.message = phase, message
  tx.dirty = true
end

-- Canary instances for a weight: set_canary_scale's choice, else proportional to the weight
-- (at least one instance while any traffic goes to it), as Argo scales a canary with traffic routing.
local function canary_replicas(r, weight)
  local o = r.scale
  if o and o.replicas then return o.replicas end
  if o and o.weight then weight = o.weight end
  if weight <= 0 then return 0 end
  return max(1, ceil(r.replicas * weight / 100))
end

local function weights(r, canary_weight)
  local w = { [r.revision] = canary_weight }
  if r.stable then w[r.stable] = 100 - canary_weight else w[r.revision] = 100 end
  return w
end

-- Three effects, each done once: scale up before traffic moves to the canary, set the weights,
-- scale down after traffic moved away.
function Engine:apply_weight(tx, name, weight)
  local r = tx.r
  local n = canary_replicas(r, weight)
  local had = r.canary_replicas or 0
  if n > had then
    self:effect(tx, name .. ":scale", function(p) return p:ensure(r.revision, n) end)
    r.canary_replicas = n
  end
  self:effect(tx, name .. ":weight", function(p) return p:weights(weights(r, weight)) end)
  r.weight = weight
  if n < had then
    self:effect(tx, name .. ":scale", function(p) return p:ensure(r.revision, n) end)
    r.canary_replicas = n
  end
  tx.dirty = true
end

-- ---- analysis ----

local RUN_OVER = { Successful = true, Failed = true, Error = true, Inconclusive = true }

-- The spec as the analysis takes it, providers bound to this rollout's canary; one set of
-- provider functions per run (key), since a provider keeps its previous sample.
local function resolved(r, key, spec)
  return ports.resolve(spec, format("%s/a%d/%s", r.id, r.attempt, key), r.service, r.revision)
end

-- step_run(tx, key, slot, spec, run) -> run (stepped, measured when due; a wake-up armed while it runs)
function Engine:step_run(tx, key, slot, spec, run)
  local r = tx.r
  local state, due = ports.analysis_step(resolved(r, key, spec), run, self.now())
  if not state then error("rollout " .. r.id .. ": analysis: " .. tostring(due), 0) end
  tx.dirty = true
  if not RUN_OVER[state.phase] then tx:arm(slot, (due or self.now() + 1) - self.now()) end
  return state
end

function Engine:start_run(tx, key, spec)
  local run, err = ports.analysis_start(resolved(tx.r, key, spec), self.now())
  if not run then error("rollout " .. tx.r.id .. ": analysis: " .. tostring(err), 0) end
  tx:note("analysis_started", { run = key })
  return run
end

function Engine:stop_background(tx)
  local r = tx.r
  if r.bg and not RUN_OVER[r.bg.phase] then
    r.bg = ports.analysis_terminate(resolved(r, "bg", self.strategy.background), r.bg, self.now())
  end
end

-- ---- steps ----

local function plan(eng)
  return eng.strategy.steps or {}
end

function Engine:run_step(tx, s)
  local r = tx.r
  r.ss = r.ss or {}
  local ss = r.ss
  local tag = "s" .. r.step
  if s.kind == "set_weight" then
    self:apply_weight(tx, tag .. ":weight", s.weight)
    return "next"
  elseif s.kind == "set_canary_scale" then
    r.scale = { replicas = s.replicas, weight = s.weight }
    if s.match then r.scale = nil end
    local n = canary_replicas(r, r.weight or 0)
    self:effect(tx, tag .. ":scale", function(p) return p:ensure(r.revision, n) end)
    r.canary_replicas = n
    tx.dirty = true
    return "next"
  elseif s.kind == "pause" then
    if s.duration then
      if not ss.until_ then
        ss.until_ = self.now() + s.duration
        tx:arm("main", s.duration)
        self:set_phase(tx, "Paused", format("paused for %gs", s.duration))
        tx:note("paused", { duration = s.duration })
        tx:emit("rollout.paused", { reason = "pause", duration = s.duration })
        return "wait"
      end
      if self.now() < ss.until_ then return "wait" end
      self:set_phase(tx, "Progressing")
      return "next"
    end
    if ss.resumed then return "next" end
    if r.phase ~= "Paused" then
      self:set_phase(tx, "Paused", "paused until promoted")
      tx:note("paused", { indefinite = true })
      tx:emit("rollout.paused", { reason = "pause" })
    end
    return "wait"
  elseif s.kind == "analysis" then
    if ss.resumed then return "next" end -- an inconclusive run a person promoted past
    if not ss.run then ss.run = self:start_run(tx, tag, s.analysis) end
    if not RUN_OVER[ss.run.phase] then ss.run = self:step_run(tx, tag, "main", s.analysis, ss.run) end
    local phase = ss.run.phase
    r.runs = r.runs or {}
    r.runs[tag] = { phase = phase, step = r.step, post = s.post or nil }
    if phase == "Successful" then
      tx:note("analysis_successful", {})
      return "next"
    elseif phase == "Failed" or phase == "Error" then
      tx:note("analysis_" .. phase:lower(), {})
      self:abort(tx, format("analysis %s at step %d", phase, r.step))
      return "wait"
    elseif phase == "Inconclusive" then
      if r.phase ~= "Paused" then
        self:set_phase(tx, "Paused", "analysis inconclusive at step " .. r.step .. ": promote or abort")
        tx:note("analysis_inconclusive", {})
        tx:emit("rollout.paused", { reason = "inconclusive" })
      end
      return "wait"
    end
    return "wait"
  elseif s.kind == "approval" then
    if ss.approved then return "next" end
    self:effect(tx, tag .. ":approval", function()
      local id, err = ports.approval_request(self:store(), { subject = r.id, step = r.step, timeout = s.approval.timeout,
        approvers = s.approval.approvers, notify = s.approval.notify, requested_by = self.name,
        key = format("%s:a%d:s%d", r.id, r.attempt, r.step),
        reason = s.approval.reason or format("rollout of %s %s, step %d", r.service, r.revision, r.step) })
      if not id then return nil, err end
      ss.approval = id
      return true
    end)
    if r.phase ~= "Paused" then
      self:set_phase(tx, "Paused", "waiting for approval " .. tostring(ss.approval))
      tx:emit("rollout.paused", { reason = "approval", approval = ss.approval })
    end
    return "wait"
  elseif s.kind == "preview" then
    local n = self.strategy.preview_replicas or r.replicas
    self:effect(tx, tag .. ":preview", function(p)
      local ok, err = p:ensure(r.revision, n)
      if not ok then return nil, err end
      return p:weights(weights(r, 0))
    end)
    r.canary_replicas, r.weight = n, 0
    tx.dirty = true
    return "next"
  elseif s.kind == "switch" then
    self:effect(tx, tag .. ":switch", function(p)
      local ok, err = p:ensure(r.revision, r.replicas)
      if not ok then return nil, err end
      return p:weights(weights(r, 100))
    end)
    r.weight, r.canary_replicas, r.switched = 100, r.replicas, true
    tx:note("promoted", {})
    tx:emit("rollout.promoted", {})
    return "next"
  end
  error("rollout: unknown step kind " .. tostring(s.kind), 0)
end

-- ---- Flagger's shorthand: one check per interval, the schedule decides ----

function Engine:flagger_tick(tx)
  local r = tx.r
  local f = self.strategy.flagger
  if not r.flagger then
    local sched, err = ports.flagger_start(f)
    if not sched then error("rollout " .. r.id .. ": " .. tostring(err), 0) end
    r.flagger = sched
    tx:arm("main", 0)
    tx.dirty = true
    return
  end
  if not r.ss or not r.ss.tick then return end
  r.ss.tick = nil
  -- Flagger checks every metric once per interval: a run of one measurement per metric.
  local spec = { metrics = {} }
  for k, v in pairs(self.strategy.checks) do if k ~= "metrics" then spec[k] = v end end
  for i, m in ipairs(self.strategy.checks.metrics) do
    local c = {}
    for k, v in pairs(m) do c[k] = v end
    c.count, c.interval, c.initial_delay = 1, nil, nil
    spec.metrics[i] = c
  end
  r.nchecks = (r.nchecks or 0) + 1
  local key = "check" .. r.nchecks
  local run = self:start_run(tx, key, spec)
  -- The providers are the attempt's, not the check's: a counter provider (HAProxy's error_rate)
  -- then measures the interval since the previous check.
  local stepped, serr = ports.analysis_step(resolved(r, "checks", spec), run, self.now())
  if not stepped then error("rollout " .. r.id .. ": analysis: " .. tostring(serr), 0) end
  local ok = stepped.phase == "Successful"
  local action, aerr = ports.flagger_next(r.flagger, ok)
  if not action then error("rollout " .. r.id .. ": " .. tostring(aerr), 0) end
  tx:note("check", { ok = ok, action = action.action, weight = action.canary, reason = action.reason })
  tx.dirty = true
  if action.action == "set_weight" then
    self:apply_weight(tx, "f" .. r.nchecks .. ":weight", action.canary)
    tx:emit("rollout.step", { weight = action.canary })
  elseif action.action == "promote" or action.action == "finalise" or action.action == "done" and r.flagger.phase == "Succeeded" then
    return self:finalize(tx)
  elseif action.action == "rollback" or action.action == "done" then
    return self:abort(tx, action.reason or ("failed checks reached the threshold of " .. tostring(f.threshold)))
  end
  tx:arm("main", action.next_in or f.interval)
end

-- ---- promotion, abort, cleanup ----

function Engine:finalize(tx)
  local r = tx.r
  self:effect(tx, "final:promote", function(p)
    local ok, err = p:ensure(r.revision, r.replicas)
    if not ok then return nil, err end
    return p:weights(weights(r, 100))
  end)
  self:stop_background(tx)
  ports.release(format("%s/a%d", r.id, r.attempt)) -- the attempt's runs are over: their providers go
  r.wakes = {}
  r.weight, r.canary_replicas = 100, r.replicas
  if not r.switched then
    r.switched = true
    tx:note("promoted", {})
    tx:emit("rollout.promoted", {})
  end
  self:set_phase(tx, "Completed", nil)
  r.ss = {}
  local nsteps = #plan(self)
  if nsteps > 0 and r.step > nsteps then r.step = nsteps end -- "step 4 of 4", not past the plan
  if r.stable then
    r.cleanup = r.stable
    tx:arm("cleanup", self.strategy.scale_down_delay or 30)
  end
  tx:note("completed", {})
  tx:emit("rollout.completed", {})
end

function Engine:abort(tx, reason, actor, force)
  local r = tx.r
  if r.incompatible and not force and r.stable then
    -- The new revision's migration cannot run under the old one: sending traffic back to it
    -- would break it. A person decides (promote to go forward, abort with force to roll back).
    self:set_phase(tx, "RollbackBlocked", "rollback blocked: " .. concat(r.incompatible, "; ") .. " (after: " .. reason .. ")")
    tx:note("rollback_blocked", { reason = reason, migrations = r.incompatible }, actor)
    tx:emit("rollout.rollback_blocked", { reason = reason, migrations = r.incompatible })
    return
  end
  if r.stable then
    self:effect(tx, "abort:weight", function(p) return p:weights({ [r.stable] = 100, [r.revision] = 0 }) end)
  end
  self:stop_background(tx)
  ports.release(format("%s/a%d", r.id, r.attempt))
  r.wakes = {}
  r.weight = 0
  self:set_phase(tx, "Aborted", reason)
  r.cleanup = r.revision
  if r.stable then tx:arm("cleanup", self.strategy.abort_scale_down_delay or 30) end
  tx:note("aborted", { reason = reason }, actor)
  tx:emit("rollout.aborted", { reason = reason })
end

function Engine:cleanup(tx)
  local r = tx.r
  local rev = r.cleanup
  if not rev then return end
  self:effect(tx, "cleanup:" .. rev, function(p) return p:retire(rev) end)
  r.cleanup = nil
  if r.revision == rev then r.canary_replicas = 0 end
  tx:note("scaled_down", { revision = rev })
end

-- ---- the walk ----

function Engine:background(tx)
  local r = tx.r
  local spec = self.strategy.background
  if not spec or r.step < (self.strategy.background_start or 1) then return end
  if not r.bg then
    r.bg = self:start_run(tx, "bg", spec)
    r.bg = self:step_run(tx, "bg", "bg", spec, r.bg)
  end
  local phase = r.bg.phase
  if phase == "Failed" or phase == "Error" then
    tx:note("analysis_" .. phase:lower(), { background = true })
    self:abort(tx, "background analysis " .. phase)
  elseif phase == "Inconclusive" and r.phase == "Progressing" then
    self:set_phase(tx, "Paused", "background analysis inconclusive: promote or abort")
    tx:emit("rollout.paused", { reason = "inconclusive" })
  end
end

function Engine:advance(tx)
  local r = tx.r
  for _ = 1, 1000 do
    if r.phase ~= "Progressing" then return end
    -- The first revision of a service has nothing to compare with: it is rolled out whole.
    if not r.stable then return self:finalize(tx) end
    if self.strategy.flagger then return self:flagger_tick(tx) end
    self:background(tx)
    if r.phase ~= "Progressing" then return end
    local steps = plan(self)
    local s = steps[r.step]
    if not s then return self:finalize(tx) end
    if self:run_step(tx, s) ~= "next" then return end
    r.step, r.ss = r.step + 1, {}
    if steps[r.step] then
      tx:note("step", { kind = steps[r.step].kind })
      tx:emit("rollout.step", { kind = steps[r.step].kind, steps = #steps })
    end
    tx.dirty = true
    tx:save()
  end
end

-- ---- events ----

local function rollout_id(service, revision, ev_id)
  return format("%s~%s~%s", service, revision, crypto.hex(crypto.sha256(ev_id)):sub(1, 8))
end
M.rollout_id = rollout_id

-- service_of(ev) -> the service an event is about (the policies' ordering key)
function M.service_of(ev)
  local d = type(ev.data) == "table" and ev.data or {}
  if type(d.service) == "string" then return d.service end
  local id = d.rollout or d.subject
  if type(id) == "string" then return id:match("^([^~]+)~") end
  return nil
end

function Engine:admit(ev)
  local d = ev.data or {}
  if d.service ~= self.service then return "not this policy's service" end
  if type(d.revision) ~= "string" or not d.revision:match(REVISION) or #d.revision > 100 then
    error("deploy.admitted " .. tostring(ev.id) .. ": data.revision: a revision id matching [A-Za-z0-9._-] expected", 0)
  end
  local st = self:store()
  local id = type(d.rollout) == "string" and d.rollout or rollout_id(self.service, d.revision, ev.id)
  local r, err = rstore.get(st, id)
  if r == nil then error(err, 0) end
  if r then return self:resume(r) end -- this event ran before (a crash after the insert)
  local act
  act, err = rstore.active(st, self.service)
  if act == nil then error(err, 0) end
  if act then
    log.warn("rollout refused: another rollout of the service is in progress", { service = self.service, active = act.id })
    return "refused: rollout " .. act.id .. " is in progress"
  end
  local last
  last, err = rstore.last_completed(st, self.service)
  if last == nil then error(err, 0) end
  r = { id = id, service = self.service, revision = d.revision, tenant = ev.tenant, phase = "Progressing", step = 1,
        strategy = self.strategy.kind, environment = d.environment, requested_by = d.requested_by,
        stable = type(d.stable) == "string" and d.stable or (last and last.revision or nil),
        replicas = type(d.replicas) == "number" and d.replicas or platform.replicas(self:service_def()),
        attempt = 1, weight = 0, canary_replicas = 0, done = {}, ss = {}, wakes = {}, event_id = ev.id }
  if r.stable == r.revision then r.stable = nil end
  -- The plan as data, for GET /v1/rollouts/{id} and the REPL (the policy holds the functions).
  r.plan = {}
  for i, s in ipairs(plan(self)) do
    r.plan[i] = { kind = s.kind, weight = s.weight, duration = s.duration, replicas = s.replicas, post = s.post }
  end
  if self.strategy.flagger then
    local f = self.strategy.flagger
    r.plan[1] = { kind = "flagger", step_weight = f.step_weight, max_weight = f.max_weight, interval = f.interval,
                  threshold = f.threshold }
  end
  local tx = new_tx(self, r, true)
  -- Migrations named in the request: squawk's rules first (a violation stops the rollout before
  -- any side effect); one that the previous release cannot run against blocks rollbacks later.
  local problems = {}
  for i, m in ipairs(type(d.migrations) == "table" and d.migrations or {}) do
    local name = type(m) == "table" and m.name or ("migrations[" .. i .. "]")
    local sql = type(m) == "table" and m.sql or m
    if type(sql) ~= "string" then error("deploy.admitted: data.migrations[" .. i .. "].sql: string expected", 0) end
    local v, cerr = ports.migrations_check(sql)
    if not v then error("rollout " .. id .. ": migration check: " .. tostring(cerr), 0) end
    for _, x in ipairs(v) do problems[#problems + 1] = format("%s: %s (line %s)", name, x.rule, tostring(x.line)) end
    local ok, reasons = ports.migrations_compatible(sql)
    if ok == nil then error("rollout " .. id .. ": migration compatibility: " .. tostring(reasons), 0) end
    if not ok then
      r.incompatible = r.incompatible or {}
      for _, why in ipairs(type(reasons) == "table" and reasons or { tostring(reasons) }) do
        r.incompatible[#r.incompatible + 1] = name .. ": " .. tostring(why)
      end
    end
  end
  r.migrations = #problems > 0 and problems or nil
  tx:note("started", { revision = r.revision, stable = r.stable, strategy = r.strategy }, d.requested_by)
  tx:emit("rollout.started", { strategy = r.strategy })
  if #problems > 0 then
    r.phase, r.message = "Aborted", "migration check failed: " .. concat(problems, "; ")
    tx:note("aborted", { reason = r.message })
    tx:emit("rollout.aborted", { reason = r.message })
    tx:save()
    return r
  end
  if r.stable then
    tx:note("step", { kind = (plan(self)[1] or {}).kind })
    tx:emit("rollout.step", { kind = (plan(self)[1] or {}).kind, steps = #plan(self) })
  end
  tx:save()
  self:advance(tx)
  tx:save()
  return r
end

function Engine:resume(r)
  local tx = new_tx(self, r)
  if r.phase == "Progressing" then self:advance(tx) end
  tx:save()
  return r
end

function Engine:tick(ev)
  local d = ev.data or {}
  local r, err = rstore.get(self:store(), d.rollout)
  if r == nil then error(err, 0) end
  if not r then return "no rollout " .. tostring(d.rollout) end
  local slot
  for k, w in pairs(r.wakes or {}) do if w == d.wake then slot = k end end
  if not slot then return "stale wake-up" end
  local tx = new_tx(self, r)
  r.wakes[slot] = nil
  tx.dirty = true
  if slot == "cleanup" then
    self:cleanup(tx)
  elseif slot == "bg" then
    if r.bg and not RUN_OVER[r.bg.phase] and not M.TERMINAL[r.phase] then
      r.bg = self:step_run(tx, "bg", "bg", self.strategy.background, r.bg)
      self:background(tx)
    end
  elseif slot == "main" then
    if self.strategy.flagger then r.ss = r.ss or {}; r.ss.tick = true end
    if r.phase == "Paused" then
      local s = plan(self)[r.step]
      if s and s.kind == "pause" and s.duration then self:set_phase(tx, "Progressing") end
    end
    self:advance(tx)
  end
  tx:save()
  return r
end

function Engine:command(ev)
  local d = ev.data or {}
  local r, err = rstore.get(self:store(), d.rollout)
  if r == nil then error(err, 0) end
  if not r then return "no rollout " .. tostring(d.rollout) end
  -- A command runs once: a redelivered event (a crash after this commit) finds its id here.
  r.cmds = r.cmds or {}
  for _, seen in ipairs(r.cmds) do
    if seen == ev.id then return "command " .. tostring(ev.id) .. " already handled" end
  end
  r.cmds[#r.cmds + 1] = ev.id
  if #r.cmds > 20 then table.remove(r.cmds, 1) end
  local tx = new_tx(self, r)
  tx.dirty = true
  local actor = type(d.by) == "string" and d.by or nil
  local action = d.action
  if action == "abort" then
    if M.TERMINAL[r.phase] then
      tx:note("command_refused", { action = action, reason = "rollout is " .. r.phase }, actor)
    else
      self:abort(tx, "aborted by " .. (actor or "a person"), actor, d.force == true)
    end
  elseif action == "promote" then
    if M.TERMINAL[r.phase] then
      tx:note("command_refused", { action = action, reason = "rollout is " .. r.phase }, actor)
    elseif d.full or r.phase == "RollbackBlocked" then
      tx:note("promote", { full = true }, actor)
      self:finalize(tx)
    else
      local s = plan(self)[r.step]
      if r.phase ~= "Paused" then
        tx:note("command_refused", { action = action, reason = "not paused (promote with full = true skips every step)" }, actor)
      elseif s and s.kind == "approval" then
        tx:note("command_refused", { action = action, reason = "step " .. r.step .. " waits for an approval" }, actor)
      else
        tx:note("promote", { step = r.step }, actor)
        if r.bg and r.bg.phase == "Inconclusive" then
          -- a person looked at the inconclusive background run and chose to go on
          r.bg.phase, r.bg.message = "Successful", "promoted past Inconclusive"
        end
        r.ss = r.ss or {}
        r.ss.resumed = true
        r.wakes.main = nil
        self:set_phase(tx, "Progressing")
        if s then
          r.step, r.ss = r.step + 1, {}
          local nxt = plan(self)[r.step]
          if nxt then
            tx:note("step", { kind = nxt.kind })
            tx:emit("rollout.step", { kind = nxt.kind, steps = #plan(self) })
          end
        end
        self:advance(tx)
      end
    end
  elseif action == "retry" then
    if r.phase ~= "Aborted" then
      tx:note("command_refused", { action = action, reason = "only an aborted rollout is retried" }, actor)
    else
      r.attempt, r.step, r.ss, r.wakes, r.bg, r.weight, r.scale, r.runs = r.attempt + 1, 1, {}, {}, nil, 0, nil, nil
      r.cleanup = nil
      self:set_phase(tx, "Progressing")
      tx:note("retry", { attempt = r.attempt }, actor)
      tx:emit("rollout.started", { strategy = r.strategy, attempt = r.attempt })
      self:advance(tx)
    end
  else
    error("rollout.command " .. tostring(ev.id) .. ": data.action: promote, abort or retry expected", 0)
  end
  tx:save()
  return r
end

function Engine:approval(ev)
  local d = ev.data or {}
  local r, err = rstore.get(self:store(), d.subject)
  if r == nil then error(err, 0) end
  if not r then return "no rollout " .. tostring(d.subject) end
  local s = plan(self)[r.step]
  local ss = r.ss or {}
  if r.phase ~= "Paused" or not s or s.kind ~= "approval" or (d.id and ss.approval and d.id ~= ss.approval)
     or (d.approval and ss.approval and d.approval ~= ss.approval) then
    return "no approval pending at step " .. r.step
  end
  local tx = new_tx(self, r)
  local actor = d.decided_by or d.by
  if ev.type == "approval.granted" then
    ss.approved = true
    tx:note("approved", { approval = ss.approval }, actor)
    self:set_phase(tx, "Progressing")
    self:advance(tx)
  else
    tx:note(ev.type == "approval.denied" and "approval_denied" or "approval_expired", { approval = ss.approval }, actor)
    self:abort(tx, (ev.type == "approval.denied" and "approval denied" or "approval expired") .. " at step " .. r.step, actor)
  end
  tx:save()
  return r
end

function Engine:handle(ev, _)
  local st = self:store()
  rstore.flush_audit(st, self.name, self.service)
  local res
  if ev.type == "deploy.admitted" then
    res = self:admit(ev)
  elseif ev.type == "rollout.tick" then
    res = self:tick(ev)
  elseif ev.type == "rollout.command" then
    res = self:command(ev)
  elseif ev.type == "approval.granted" or ev.type == "approval.denied" or ev.type == "approval.expired" then
    res = self:approval(ev)
  else
    return nil -- the engine's own rollout.* events, and others it does not act on
  end
  rstore.flush_audit(st, self.name, self.service)
  if type(res) == "table" then return { rollout = res.id, phase = res.phase, step = res.step } end
  return res
end

-- engine(service, strategy, opts) -> engine. opts: {store, services, drivers, platform, now, name}
function M.engine(service, strategy, opts)
  opts = opts or {}
  return setmetatable({ service = service, strategy = strategy, opts = opts, name = opts.name,
    now = opts.now or time.now, ready_timeout = opts.ready_timeout }, Engine)
end

return M
