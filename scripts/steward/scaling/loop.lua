-- steward.scaling.loop: the autoscalers' control loop, on the process that runs the supervisor
-- (the leader). A manager task looks at the loaded policies every few milliseconds: each policy
-- with an `autoscaler` (steward.scaling.autoscaler{...}) gets a tick every `interval`, run in a
-- task of its own and never two at once for one service. A tick samples the metric sources,
-- decides (steward.scaling.autoscaler: keda/hpa within the schedule's, the quota's and the
-- predictive bounds), applies through the supervisor, points HAProxy at the ready instances,
-- logs each decision that changes the replica count or is held back from changing it, and keeps
-- the decision state in the store (kv namespace steward:scaling, one key per service), so a
-- restart or a new leader keeps the stabilization history. A removed autoscaler stops; a changed
-- one applies at its next tick with its state. Not a durable event per tick: ticks are cheap and
-- a lost one is simply the next.
local time = require "steward.time"
local task = require "steward.task"
local log = require "steward.log"
local metrics = require "steward.metrics"
local kvs = require "steward.runtime.store.kv"
local caps = require "steward.runtime.policy.capabilities"
local scaling = require "steward.scaling"
local autoscaler = require "steward.scaling.autoscaler"

local type, pairs, ipairs, tostring, pcall, format, require = type, pairs, ipairs, tostring, pcall, string.format,
  require
local concat, sort = table.concat, table.sort

local M = {}

M.NS = "steward:scaling"
M.POLL = 0.02        -- seconds between the manager's looks for due ticks
M.SAVE_EVERY = 1     -- seconds: the state is saved at least this often while it changes

local m_desired = metrics.gauge("steward_scaling_desired_replicas", "Replicas the autoscaler wants, by service", { "service" })
local m_current = metrics.gauge("steward_scaling_current_replicas", "Replicas of the scaled revision, by service", { "service" })
local m_value = metrics.gauge("steward_scaling_metric_value",
  "An autoscaler metric's last value (mean over instances for per-instance metrics)", { "service", "metric" })
local m_decisions = metrics.counter("steward_scaling_decisions_total",
  "Autoscaler ticks by result (scaled_up, scaled_down, limited, unchanged, held, error)", { "service", "result" })

-- One record per autoscaled service, kept across reloads: the state, the sources' memos, the
-- last decision logged.
M.live = {}
local manager, context

local function store() return context and context.store end

local function ns() return kvs.ns(store(), M.NS) end

local function emit(type_, data)
  local ok, err = pcall(function()
    return assert(require("steward.events").emit({ type = type_, source = "steward.scaling", data = data }))
  end)
  if not ok then log.warn("scaling: event not emitted", { type = type_, error = tostring(err) }) end
end

-- The revision to scale: the spec's id, or the stable one: none while a rollout of the service is
-- in progress (hold), else the revision of the last completed rollout if it runs (or nothing
-- runs), else the only revision running. -> revision | nil, why held
local function revision_of(s, instances)
  if s.revision ~= "stable" then return s.revision end
  local rs = require "steward.deploy.rollout_store"
  local active = rs.active(store(), s.service)
  if active then
    return nil, format("rollout in progress (%s of revision %s)", tostring(active.id), tostring(active.revision)), "rollout"
  end
  local running, names = {}, {}
  for _, inst in ipairs(instances) do
    if inst.state ~= "stopped" and inst.state ~= "exited" and not running[inst.revision] then
      running[inst.revision] = true
      names[#names + 1] = inst.revision
    end
  end
  local done = rs.last_completed(store(), s.service)
  if done and (running[done.revision] or #names == 0) then return done.revision end
  if #names == 1 then return names[1] end
  if #names == 0 then return nil, "no revision to scale: nothing runs and no rollout completed (name a revision)", "revision" end
  sort(names)
  return nil, "several revisions run (" .. concat(names, ", ") .. ") and none is the last completed rollout's", "revision"
end

local function load_state(a)
  if a.loaded then return true end
  -- get answers value, version; nil when absent; nil, err when the store fails
  local rec, second = ns():get(a.service)
  if rec == nil and second ~= nil then return nil, second end
  a.state = rec and rec.state or nil
  a.last = rec and rec.last or nil
  a.last_scaled = rec and rec.last_scaled or nil
  a.loaded = true
  return true
end

local function save_state(a, p, now, force)
  if not force and a.saved_at and now - a.saved_at < M.SAVE_EVERY then return end
  a.saved_at = now
  local ok, err = pcall(function()
    return assert(ns():put(a.service, { policy = p.name, version = p.version, revision = a.revision,
      state = a.state, last = a.last, last_scaled = a.last_scaled, status = a.status, updated = now }))
  end)
  if not ok then log.warn("scaling: state not saved", { service = a.service, error = tostring(err) }) end
end

-- Logs a decision (the decision log, explain()) and answers its id.
local function record(p, a, outcome, input, result)
  local dlog = context.decision_log
  if not dlog then return nil end
  local ref = dlog:record({ policy = p.name, version = p.version, input = input, outcome = outcome, result = result })
  return ref
end

-- HAProxy serves the ready instances: after each change of the set, sync; a revision that had no
-- traffic (a first start, a scale from zero) gets all of it when it is the backend's only one.
local function sync_traffic(a, s, rev)
  local svc = context.cfg and context.cfg.services and context.cfg.services[s.service]
  if not (svc and svc.haproxy) then return end
  local supervisor = require "steward.deploy.supervisor"
  local eps = supervisor.endpoints(s.service, rev)
  if not eps then return end
  local keys = {}
  for i, e in ipairs(eps) do keys[i] = e.host .. ":" .. e.port end
  local sig = rev .. " " .. concat(keys, ",")
  if sig == a.synced then return end
  local haproxy = require "steward.deploy.haproxy"
  local ok, err = haproxy.sync(s.service, rev, eps)
  if not ok then
    log.warn("scaling: haproxy sync failed", { service = s.service, revision = rev, error = tostring(err) })
    return
  end
  if #eps > 0 then
    local st = haproxy.stats(s.service)
    local mine, others = st and st.revisions[rev], 0
    for r, x in pairs(st and st.revisions or {}) do if r ~= rev then others = others + x.weight end end
    if mine and mine.weight == 0 and others == 0 then haproxy.set_weights(s.service, { [rev] = 100 }) end
  end
  a.synced = sig
  log.info("scaling: haproxy serves the ready instances", { service = s.service, revision = rev, servers = #eps })
end

-- Before a scale-down: HAProxy keeps only the ready instances that stay (index <= n); sync
-- drains and deletes the other servers, waiting for their sessions (bounded by the driver).
local function drain_extra(a, s, rev, n)
  local svc = context.cfg and context.cfg.services and context.cfg.services[s.service]
  if not (svc and svc.haproxy) then return end
  local supervisor = require "steward.deploy.supervisor"
  local eps = supervisor.endpoints(s.service, rev)
  if not eps then return end
  local keep, keys = {}, {}
  for _, e in ipairs(eps) do
    if (e.index or 0) <= n then keep[#keep + 1] = e; keys[#keys + 1] = e.host .. ":" .. e.port end
  end
  if #keep == 0 then return end -- never leave the backend empty before the stop
  local ok, err = require("steward.deploy.haproxy").sync(s.service, rev, keep)
  if not ok then
    log.warn("scaling: haproxy drain before scale-down failed", { service = s.service, error = tostring(err) })
    return
  end
  a.synced = rev .. " " .. concat(keys, ",")
end

-- A failed instance (the supervisor's start limit) is not capacity: it is started afresh in its
-- slot, with a new start history.
local function replace_failed(s, rev, instances, p, a)
  local failed = {}
  for _, inst in ipairs(instances) do
    if inst.revision == rev and inst.state == "failed" then failed[#failed + 1] = inst end
  end
  if #failed == 0 then return end
  local supervisor = require "steward.deploy.supervisor"
  local n = 0
  for _, inst in ipairs(instances) do
    if inst.revision == rev and inst.state ~= "stopping" and inst.state ~= "stopped" and inst.state ~= "exited" then n = n + 1 end
  end
  local ids = {}
  for i, inst in ipairs(failed) do ids[i] = inst.id end
  local ok, err = supervisor.start(s.service, rev, n)
  log.warn("scaling: failed instances replaced", { service = s.service, instances = concat(ids, ","), error = err })
  record(p, a, ok and "replaced" or "error", { failed = ids }, { replaced = ids, error = err })
end

-- The predictive proposal, worked out again at most every PREDICT_EVERY seconds: the history has
-- one row a minute and the forecast of now + lead moves as slowly. Three seasons of history.
M.PREDICT_EVERY = 10
local function predicted(a, s, capacity, now)
  local c = a.predict
  if c and c.spec == s.predictive and now - c.at < M.PREDICT_EVERY then return c.proposal, c.why end
  local predict = scaling.optional "steward.scaling.predict"
  if not predict then return nil end
  local p = s.predictive
  local series = capacity.history(s.service .. ":" .. p.metric, now - 3 * p.season, now)
  local proposal, why
  if series then
    local ok, prop, reason = pcall(predict.proposal, p, series, now)
    if ok then proposal, why = prop, reason else why = tostring(prop) end
  end
  a.predict = { spec = p, at = now, proposal = proposal, why = why }
  return proposal, why
end

-- One tick of one autoscaler.
local function tick(p, a)
  local s = p.autoscaler
  local now = time.now()
  local supervisor = require "steward.deploy.supervisor"
  local scope = p.capabilities and p.capabilities.deploy
  if not scope or not caps.service_in(scope, s.service) then
    a.status = format("capability 'deploy' not granted to %s (service %s)", p.name, s.service)
    if a.held ~= a.status then
      a.held = a.status
      log.warn("scaling: autoscaler idle", { policy = p.name, reason = a.status })
      m_decisions:inc(1, s.service, "held")
    end
    return
  end
  for _, m in ipairs(s.metrics) do
    if m.source.needs and m.source.needs.http then
      local h = p.capabilities.http
      if not h or not caps.url_in(h, m.source.needs.http) then
        a.status = format("capability 'http' not granted to %s (%s)", p.name, m.source.needs.http)
        if a.held ~= a.status then a.held = a.status; log.warn("scaling: autoscaler idle", { policy = p.name, reason = a.status }) end
        return
      end
    end
  end
  local ok, err = load_state(a)
  if ok == nil then a.status = "state not readable: " .. tostring(err); return end
  local instances
  instances, err = supervisor.instances(s.service)
  if not instances then a.status = tostring(err); return end
  local rev, why, kind = revision_of(s, instances)
  if not rev then
    a.status = "held: " .. why
    m_decisions:inc(1, s.service, "held")
    if a.held ~= why then
      a.held = why
      local ref = record(p, a, "held", { service = s.service }, { held = why })
      a.last = { held = why, decision_id = ref, at = now }
      emit("scaling.limited", { service = s.service, limited_by = kind, reason = why, decision_id = ref })
      save_state(a, p, now, true)
    end
    return
  end
  a.held, a.revision = nil, rev
  replace_failed(s, rev, instances, p, a)
  -- sample every source
  local mono = time.monotonic()
  local samples = {}
  local capacity = scaling.optional "steward.capacity"
  for _, m in ipairs(s.metrics) do
    a.memo[m.name] = a.memo[m.name] or {}
    local okm, sample = pcall(m.source.sample, { service = s.service, revision = rev, instances = instances, now = mono },
      a.memo[m.name])
    if not okm then sample = { error = tostring(sample) } end
    samples[m.name] = sample
    local v = autoscaler.value(sample)
    if v then m_value:set(v, s.service, m.name) end
    local total = autoscaler.total(sample)
    if total and capacity and capacity.record then pcall(capacity.record, s.service .. ":" .. m.name, total, now) end
  end
  local obs = autoscaler.obs(instances, rev, samples, a.seen_ready, now)
  -- the bounds of this moment
  local limits = {}
  if s.schedule then
    local schedule = scaling.optional "steward.scaling.schedule"
    if schedule then limits.window = schedule.bounds(s.schedule, now) end
  end
  local quota = scaling.optional "steward.scaling.quota"
  if quota and quota.headroom then
    local okq, h, qname = pcall(quota.headroom, s.service)
    if okq and type(h) == "number" then limits.headroom, limits.quota = h, qname end
  end
  if s.predictive and capacity and capacity.history then
    limits.predicted, limits.predicted_error = predicted(a, s, capacity, now)
  end
  local decision, new_state = autoscaler.decide(s, a.state, obs, now, limits)
  if not decision then
    a.status = tostring(new_state)
    m_decisions:inc(1, s.service, "error")
    if a.failing ~= a.status then
      a.failing = a.status
      log.warn("scaling: no decision", { service = s.service, error = a.status })
    end
    return
  end
  a.failing = nil
  decision.revision, decision.service, decision.at = rev, s.service, now
  local outcome = autoscaler.outcome(decision)
  m_current:set(decision.current, s.service)
  m_desired:set(decision.desired, s.service)
  local input = { service = s.service, revision = rev, current = obs.current, instances = obs.instances,
    metrics = samples, bounds = decision.bounds, window = decision.window, at = now }
  if outcome == "scaled_up" or outcome == "scaled_down" then
    local t0 = time.monotonic()
    -- Traffic leaves first: HAProxy drains the servers of the instances about to stop, so no
    -- request is sent to a process on its way out.
    if outcome == "scaled_down" then drain_extra(a, s, rev, decision.desired) end
    local res, serr = supervisor.scale(s.service, rev, decision.desired)
    decision.apply_seconds = time.monotonic() - t0
    if not res then
      decision.error = tostring(serr)
      outcome = "error"
      -- the same failure tick after tick (a quota taken by another service meanwhile, a port
      -- range exhausted) is logged once
      local sig = format("%d %s", decision.desired, decision.error)
      if a.scale_error == sig then
        m_decisions:inc(1, s.service, outcome)
        a.status = "scale failed: " .. decision.error
        return
      end
      a.scale_error = sig
    else
      a.state, a.scale_error = new_state, nil
    end
    local ref = record(p, a, outcome, input, decision)
    decision.decision_id = ref
    a.last = decision
    if res then a.last_scaled = decision end
    m_decisions:inc(1, s.service, outcome)
    log.info("scaling: " .. (res and "scaled" or "scale failed"), { service = s.service, revision = rev,
      from = decision.current, to = decision.desired, reason = decision.reason, decision_id = ref, error = decision.error })
    if res then
      emit("scaling.scaled", { service = s.service, revision = rev, from = decision.current, to = decision.desired,
        reason = decision.reason, limited_by = decision.limited_by, decision_id = ref, at = now })
    end
    a.limited = nil
    save_state(a, p, now, true)
  else
    a.state = new_state
    m_decisions:inc(1, s.service, outcome)
    if outcome == "limited" then
      -- one log entry per distinct hold, not one per tick
      local sig = format("%s %s %s", tostring(decision.recommended), tostring(decision.desired), tostring(decision.limited_by))
      if a.limited ~= sig then
        a.limited = sig
        local ref = record(p, a, "limited", input, decision)
        decision.decision_id = ref
        a.last = decision
        emit("scaling.limited", { service = s.service, revision = rev, current = decision.current,
          recommended = decision.recommended, limited_by = decision.limited_by, reason = decision.reason, decision_id = ref })
        save_state(a, p, now, true)
      end
    else
      a.limited = nil
    end
    save_state(a, p, now, false)
  end
  a.status = "ok"
  a.decision = decision
  sync_traffic(a, s, rev)
end

local function run_tick(p, a)
  local ok, err = pcall(tick, p, a)
  if not ok then
    a.status = "tick failed: " .. tostring(err)
    m_decisions:inc(1, a.service, "error")
    log.error("scaling: tick failed", { service = a.service, policy = p.name, error = tostring(err) })
  end
  a.busy = false
end

-- The autoscaler policies of the loaded set, by name (the first by name keeps a service that two
-- of them name).
local function autoscalers()
  local names = {}
  for name, p in pairs(context.policies or {}) do
    if type(p.autoscaler) == "table" and type(p.autoscaler.service) == "string" then names[#names + 1] = name end
  end
  sort(names)
  return names
end

-- The manager: which autoscalers exist now, which are due.
local function manage()
  local conflicts = {}
  while true do
    local now = time.monotonic()
    local seen = {}
    local policies = context.policies or {}
    for _, name in ipairs(autoscalers()) do
      local p = policies[name]
      local s = p.autoscaler
      if seen[s.service] then
        if conflicts[name] ~= seen[s.service] then
          conflicts[name] = seen[s.service]
          log.error("scaling: two autoscalers for one service; the second by name is ignored",
            { service = s.service, kept = seen[s.service], ignored = name })
        end
      else
        seen[s.service] = name
        local a = M.live[s.service]
        if not a then
          a = { service = s.service, memo = {}, seen_ready = {}, next_at = now }
          M.live[s.service] = a
        end
        a.policy = name
        if not a.busy and now >= a.next_at then
          a.busy, a.next_at = true, now + s.interval
          task.spawn({ name = "scaling " .. s.service }, run_tick, p, a)
        end
      end
    end
    for service, a in pairs(M.live) do
      if not seen[service] and not a.busy then
        log.info("scaling: autoscaler removed; the service keeps its instances", { service = service, policy = a.policy })
        M.live[service] = nil
      end
    end
    time.sleep(M.POLL)
  end
end

-- start(ctx): runs the manager (ctx: the daemon's: policies, store, cfg, decision_log).
function M.start(ctx)
  context = ctx
  if manager then return end
  manager = task.spawn({ name = "scaling" }, manage)
end

function M.stop()
  if manager then manager:cancel("stopped"); manager = nil end
end

-- install(ctx): the daemon's start line. The loop runs where the supervisor runs: this process,
-- or the cluster's leader (and stops when leadership is lost).
function M.install(ctx)
  context = ctx
  local on_leader = ctx.on_leader
  ctx.on_leader = function(yes)
    if on_leader then on_leader(yes) end
    if yes then M.start(ctx) else M.stop() end
  end
  if not ctx.cluster or ctx.cluster:is_leader() then M.start(ctx) end
  ctx.bg[#ctx.bg + 1] = { cancel = function() M.stop() end }
end

-- context() -> the daemon's ctx the loop was started with (nil outside the daemon).
function M.context() return context end

-- status() -> {[service] = live record view} of this process (empty where the loop does not run).
function M.status()
  local out = {}
  for service, a in pairs(M.live) do
    out[service] = { policy = a.policy, revision = a.revision, status = a.status, decision = a.decision }
  end
  return out
end

return M
