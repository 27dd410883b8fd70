-- steward.deploy.supervisor: runs the instances of the services the operator declared in the
-- config (`services`, docs/deploy/services.md) as local processes — N per (service, revision),
-- a port each, health-checked by probes, restarted with systemd's on-failure semantics
-- (steward.deploy.supervisor_backoff), drained on stop (signal, grace, SIGKILL). Instances
-- live in sessions of their own (proc.spawn), so they outlive the daemon; their pid and state
-- files (steward.deploy.supervisor_state) let the next daemon re-adopt the live ones and
-- replace the rest. One supervisor per process: the daemon configures it and runs it on the
-- leader (`supervise`/`release`); policies call the verbs below through the `deploy`
-- capability.
local proc = require "steward.proc"
local task = require "steward.task"
local time = require "steward.time"
local log = require "steward.log"
local metrics = require "steward.metrics"
local config = require "steward.deploy.supervisor_config"
local backoff = require "steward.deploy.supervisor_backoff"
local probes = require "steward.deploy.probes"
local state = require "steward.deploy.supervisor_state"
local forward = require "steward.deploy.supervisor_forward"
local quota = require "steward.scaling.quota"

local type, pairs, ipairs, tostring, tonumber, error, pcall = type, pairs, ipairs, tostring, tonumber, error, pcall
local format, sort = string.format, table.sort

local M = {}

local S = {
  services = {},    -- name -> normalised config (steward.deploy.supervisor_config)
  root = "var/services",
  log_root = nil,
  supervising = false,
  units = {},       -- "service/revision/index" -> instance
  emit = nil,       -- fn(event) -> ok | nil, err
  generation = 0,   -- bumped by release(): tasks of an older generation stop
  forward = false,  -- several processes: a verb called where the supervisor is not runs on the leader
  server = nil,     -- on the leader: the loop answering forwarded calls
  reserving = {},   -- instance id -> true: quota reserved by a start that has not created it yet
}

local m_instances = metrics.gauge("steward_service_instances",
  "Supervised instances by service, revision and state", { "service", "revision", "state" })
local m_restarts = metrics.counter("steward_service_restarts_total",
  "Restarts of supervised instances (crashes, failed liveness probes)", { "service", "revision" })
local seen_series = {}

-- The tasks that watch instances for this process (monitors waiting for an exit, probes,
-- a liveness kill, a restart's delay): release() cancels them. A task waiting for a child's
-- exit or an adopted instance's pidfd holds the event loop open, and a probe sleeps out its
-- interval: left running, they kept a stopped daemon from exiting.
local watchers = {} -- entry -> true ({h = its task})

local function watch(name, fn, ...)
  local entry = {}
  watchers[entry] = true
  entry.h = task.spawn({ name = name }, function(...)
    fn(...)
    watchers[entry] = nil
  end, ...)
  return entry.h
end

local function key(service, revision, index) return service .. "/" .. revision .. "/" .. tostring(index) end

local function refresh_metrics()
  local counts = {}
  for k in pairs(seen_series) do counts[k] = 0 end
  for _, inst in pairs(S.units) do
    local st = inst.state == "running" and not inst.ready and "starting" or inst.state
    local k = inst.service .. "\0" .. inst.revision .. "\0" .. st
    counts[k] = (counts[k] or 0) + 1
    seen_series[k] = true
  end
  for k, n in pairs(counts) do
    local s, r, st = k:match("^(.-)%z(.-)%z(.*)$")
    m_instances:set(n, s, r, st)
  end
end

local function emit(type_, data)
  local ok, err
  if S.emit then
    ok, err = pcall(S.emit, { type = type_, source = "steward.deploy.supervisor", data = data })
  else
    ok, err = pcall(function()
      local store = require "steward.runtime.store"
      if not store.default() then return true end -- a script without a store: no event log
      return assert(require("steward.events").emit({ type = type_, source = "steward.deploy.supervisor", data = data }))
    end)
  end
  if not ok then log.warn("supervisor: event not emitted", { type = type_, error = tostring(err) }) end
end

-- The public view of an instance (what instances() and GET /v1/services show).
local function public(inst)
  return { id = inst.id, service = inst.service, revision = inst.revision, index = inst.index,
    host = inst.host, port = inst.port, pid = inst.pid, state = inst.state, ready = inst.ready,
    restarts = inst.restarts, started_at = inst.started_at,
    last_exit = inst.last_exit and { code = inst.last_exit.code, signal = inst.last_exit.signal,
      liveness = inst.last_exit.liveness, at = inst.last_exit.at },
    adopted = inst.adopted or nil, reason = inst.reason }
end

local function save(inst)
  local ok, err = state.save(S.root, inst)
  if not ok then log.warn("supervisor: cannot write the instance's state file", { instance = inst.id, error = err }) end
end

local function set_state(inst, st, reason)
  inst.state, inst.reason = st, reason
  refresh_metrics()
end

-- Quota (steward.scaling.quota): a failed, exited or stopped instance holds none.
local function unhold(ids)
  local ok, err = quota.release_ids(ids)
  if not ok then log.warn("supervisor: quota not released", { instances = table.concat(ids, " "), error = err }) end
end

-- ---- checks shared by the verbs ----

local function check_args(fname, service, revision)
  if type(service) ~= "string" then error(format("supervisor.%s: service: string expected, got %s", fname, type(service)), 3) end
  if revision ~= nil and (type(revision) ~= "string" or not revision:match(config.REVISION_PATTERN)) then
    error(format("supervisor.%s: revision: a revision id (letters, digits, . _ -) expected, got %s", fname, tostring(revision)), 3)
  end
  local svc = S.services[service]
  if not svc then return nil, format("supervisor.%s: no service '%s' in the config's services", fname, service) end
  if not svc.run then return nil, format("supervisor.%s: service '%s' has no run section (it does not run locally)", fname, service) end
  if not S.supervising then
    if S.forward then return svc, nil, true end
    return nil, format("supervisor.%s: the supervisor is not running in this process (it runs on the leader)", fname)
  end
  return svc
end

local function check_count(fname, n, default)
  if n == nil then return default end
  if type(n) ~= "number" or n ~= math.floor(n) or n < 0 or n > 1000 then
    error(format("supervisor.%s: n: an integer from 0 to 1000 expected, got %s", fname, tostring(n)), 3)
  end
  return n
end

-- Ports something on this machine listens on (TCP, IPv4 and IPv6), from /proc/net: a port of
-- the range another program holds is skipped instead of crash-looping an instance on it.
local function listening()
  local fs = require "steward.fs"
  local out = {}
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local text = fs.read(f) or ""
    for port, st in text:gmatch("\n%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)") do
      if st == "0A" then out[tonumber(port, 16)] = true end
    end
  end
  return out
end

local function free_port(svc, service, busy)
  if not svc.run.ports then return nil end
  local used = busy or {}
  for _, inst in pairs(S.units) do
    if inst.service == service and inst.port then used[inst.port] = true end
  end
  for p = svc.run.ports[1], svc.run.ports[2] do
    if not used[p] then return p end
  end
  return nil, format("no free port left in %d-%d for service %s", svc.run.ports[1], svc.run.ports[2], service)
end

-- ---- one instance's life ----

local start_process, terminate -- forward

local function probe_loop(inst, kind, gen, pid)
  local svc = S.services[inst.service]
  local probe = svc and svc.probes[kind]
  if not probe then return end
  local st = probes.new()
  if probe.initial_delay > 0 then time.sleep(probe.initial_delay) end
  while S.generation == gen and inst.pid == pid and not inst.stopping do
    local ok, why = probes.check(probe, inst)
    if S.generation ~= gen or inst.pid ~= pid or inst.stopping then return end
    local changed = probes.step(st, probe, ok)
    if kind == "readiness" and changed then
      inst.ready = st.ok
      refresh_metrics()
      if st.ok then
        log.info("service instance ready", { instance = inst.id, port = inst.port })
        emit("service.instance.ready", { service = inst.service, revision = inst.revision, index = inst.index,
          port = inst.port, pid = inst.pid })
      else
        log.warn("service instance not ready", { instance = inst.id, reason = why })
      end
    elseif kind == "liveness" and st.ok == false then
      -- Dead to its probe: stopped like a crash (signal, grace, SIGKILL), then the restart
      -- policy decides, as for any unclean exit.
      log.warn("service instance failed its liveness probe", { instance = inst.id, reason = why })
      inst.liveness_failed = true
      watch("supervisor.kill " .. inst.id, terminate, inst, svc.stop)
      return
    end
    time.sleep(probe.interval)
  end
end

local function start_probes(inst, gen)
  local svc = S.services[inst.service]
  local pid = inst.pid
  if not svc.probes.readiness then
    inst.ready = true
    refresh_metrics()
    emit("service.instance.ready", { service = inst.service, revision = inst.revision, index = inst.index,
      port = inst.port, pid = inst.pid })
  end
  for _, kind in ipairs({ "readiness", "liveness" }) do
    if svc.probes[kind] then
      watch("supervisor.probe " .. inst.id, probe_loop, inst, kind, gen, pid)
    end
  end
end

local function on_exit(inst, status, gen)
  if S.generation ~= gen then return end -- released meanwhile: the next leader adopts or replaces
  local svc = S.services[inst.service] or inst.svc
  local uptime = time.monotonic() - (inst.started_mono or time.monotonic())
  local exit = { code = status and status.code, signal = status and status.signal, liveness = inst.liveness_failed,
    stopped = inst.stopping, uptime = uptime }
  inst.pid, inst.handle, inst.ready, inst.liveness_failed = nil, nil, false, nil
  inst.last_exit = { code = exit.code, signal = exit.signal, liveness = exit.liveness, at = time.now() }
  log.info("service instance exited", { instance = inst.id, code = exit.code, signal = exit.signal,
    liveness = exit.liveness, stopping = exit.stopped })
  emit("service.instance.exited", { service = inst.service, revision = inst.revision, index = inst.index,
    code = exit.code, signal = exit.signal, liveness = exit.liveness or nil, stopped = exit.stopped or nil })
  if inst.stopping then
    set_state(inst, "stopped")
    return
  end
  local d = backoff.decide(inst.hist, exit, time.monotonic(), svc.restart)
  if d.action == "restart" then
    set_state(inst, "restarting")
    save(inst)
    time.sleep(d.delay)
    if S.generation ~= gen or inst.stopping or S.units[inst.id] ~= inst then return end
    inst.restarts = inst.restarts + 1
    m_restarts:inc(1, inst.service, inst.revision)
    local ok, err = start_process(inst, gen)
    if not ok then
      set_state(inst, "failed", err)
      save(inst)
      unhold({ inst.id })
      emit("service.failed", { service = inst.service, revision = inst.revision, index = inst.index,
        restarts = inst.restarts, last_exit = inst.last_exit, reason = err })
    end
  elseif d.action == "failed" then
    set_state(inst, "failed", d.reason)
    save(inst)
    unhold({ inst.id })
    log.error("service instance failed: start limit hit", { instance = inst.id, restarts = inst.restarts, reason = d.reason })
    emit("service.failed", { service = inst.service, revision = inst.revision, index = inst.index,
      restarts = inst.restarts, last_exit = inst.last_exit, reason = d.reason })
  else
    set_state(inst, "exited", d.reason)
    save(inst)
    unhold({ inst.id })
  end
end

-- Watches the process: our child through its handle (exit status known), an adopted one
-- through its pidfd (status unknown: an unclean exit for the restart policy).
local function monitor(inst, gen)
  local status
  if inst.handle then
    status = inst.handle:wait()
  else
    local ok, err = proc.watch(inst.pid)
    if not ok and err then log.warn("supervisor: cannot watch an adopted instance", { instance = inst.id, error = err }) end
  end
  on_exit(inst, status, gen)
end

local function launch(inst, gen)
  local svc = S.services[inst.service]
  local run = svc.run
  local vars = { revision = inst.revision, port = inst.port, index = inst.index, service = inst.service }
  local cmd = {}
  for i, a in ipairs(run.cmd) do cmd[i] = config.expand(a, vars) end
  -- The instance's environment is its own: run.env and a PATH, nothing of the daemon's (its
  -- tokens and store credentials).
  local env = { PATH = os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin" }
  for k, v in pairs(run.env or {}) do env[k] = config.expand(v, vars) end
  local log_dir = (S.log_root or S.root) .. "/" .. inst.service
  local fs = require "steward.fs"
  local ok, err = fs.mkdir(log_dir, { parents = true })
  if not ok then return nil, "log directory: " .. tostring(err) end
  local logfile = log_dir .. "/" .. inst.revision .. "-" .. tostring(inst.index) .. ".log"
  local h
  h, err = proc.spawn({ cmd = cmd, env = env, cwd = run.cwd and config.expand(run.cwd, vars), stdout = logfile, stderr = logfile })
  if not h then return nil, err end
  local info = proc.info(h.pid)
  inst.handle, inst.pid, inst.adopted = h, h.pid, nil
  inst.start_time = info and info.start_time
  inst.started_at, inst.started_mono = time.now(), time.monotonic()
  inst.ready, inst.stopping = false, nil
  backoff.started(inst.hist, time.monotonic(), svc.restart)
  set_state(inst, "running")
  save(inst)
  log.info("service instance started", { instance = inst.id, pid = inst.pid, port = inst.port })
  emit("service.instance.started", { service = inst.service, revision = inst.revision, index = inst.index,
    port = inst.port, pid = inst.pid })
  watch("supervisor.monitor " .. inst.id, monitor, inst, gen)
  start_probes(inst, gen)
  return true
end

-- Two callers may start the same instance at once (two policies' start()): the second finds it
-- launching and leaves it to the first.
function start_process(inst, gen)
  if inst.launching then return true end
  inst.launching = true
  local ok, res, err = pcall(launch, inst, gen)
  inst.launching = nil
  if not ok then return nil, tostring(res) end
  return res, err
end

local function new_instance(service, revision, index, port)
  local inst = { id = key(service, revision, index), service = service, revision = revision, index = index,
    host = "127.0.0.1", port = port, restarts = 0, ready = false, state = "starting", hist = backoff.new() }
  S.units[inst.id] = inst
  return inst
end

-- Sends the stop signal to the instance's process group, waits `grace`, then SIGKILL; returns
-- once the process has exited (or could not be signalled).
function terminate(inst, stop)
  local pid = inst.pid
  if not pid then return true end
  local group = true
  local function signal(sig)
    if inst.handle then return inst.handle:kill(sig, group) end
    if not state.alive(inst) then return nil end
    return proc.kill(pid, sig, group)
  end
  -- The monitor clears inst.pid at the exit; after release() (a stop still running when the
  -- daemon began to stop) no monitor does, so the process itself is asked.
  local gen = S.generation
  local function gone()
    if inst.pid ~= pid then return true end
    if S.generation == gen then return false end
    if inst.handle then return inst.handle.exited end
    if not inst.start_time then return proc.kill(pid, 0) == nil end
    return not state.alive({ pid = pid, start_time = inst.start_time })
  end
  signal(stop.signal)
  local deadline = time.monotonic() + stop.grace
  while not gone() and time.monotonic() < deadline do time.sleep(0.02) end
  if not gone() then
    log.warn("service instance did not stop within its grace period: SIGKILL", { instance = inst.id, grace = stop.grace })
    signal("KILL")
    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline do time.sleep(0.02) end
  end
  return gone()
end

local function sorted(list)
  sort(list, function(a, b)
    if a.service ~= b.service then return a.service < b.service end
    if a.revision ~= b.revision then return a.revision < b.revision end
    return a.index < b.index
  end)
  return list
end

local function of(service, revision)
  local out = {}
  for _, inst in pairs(S.units) do
    if inst.service == service and (revision == nil or inst.revision == revision) then out[#out + 1] = inst end
  end
  return sorted(out)
end

-- ---- the verbs ----

-- start(service, revision [, n]) -> { instances } | nil, err. Instances 1..n of the revision
-- (n defaults to run.instances); those already running count; failed or exited ones start
-- afresh.
function M.start(service, revision, n)
  local svc, err, fwd = check_args("start", service, revision)
  n = check_count("start", n, svc and svc.run.instances)
  if not svc then return nil, err end
  if not revision then error("supervisor.start: revision: string expected, got nil", 2) end
  if fwd then return forward.call("start", service, revision, n) end
  -- Quota first: beyond it nothing starts, and the error names the quota.
  local held, fresh = quota.reserve(service, revision, n)
  if not held then return nil, fresh end
  for _, id in ipairs(fresh) do S.reserving[id] = true end
  local gen = S.generation
  local function failed(msg)
    -- What this call reserved and did not leave running holds no quota.
    local ids = {}
    for _, id in ipairs(fresh) do
      S.reserving[id] = nil
      local inst = S.units[id]
      if not (inst and (inst.pid or inst.state == "restarting")) then ids[#ids + 1] = id end
    end
    unhold(ids)
    return nil, msg
  end
  local busy = svc.run.ports and listening() or nil -- read before any port is picked: no yield in between
  for index = 1, n do
    local inst = S.units[key(service, revision, index)]
    if not inst then
      local port, perr = free_port(svc, service, busy)
      if svc.run.ports and not port then return failed(perr) end
      inst = new_instance(service, revision, index, port)
    end
    if not inst.pid and inst.state ~= "restarting" then
      inst.hist, inst.stopping = backoff.new(), nil
      local ok, serr = start_process(inst, gen)
      if not ok then
        set_state(inst, "failed", serr)
        save(inst)
        return failed(format("supervisor.start: %s: %s", inst.id, tostring(serr)))
      end
    end
  end
  for _, id in ipairs(fresh) do S.reserving[id] = nil end
  local out = {}
  for _, inst in ipairs(of(service, revision)) do out[#out + 1] = public(inst) end
  return out
end

local function stop_instances(list, stop)
  local tasks = {}
  for _, inst in ipairs(list) do
    inst.stopping = true
    if inst.pid then set_state(inst, "stopping") end
    tasks[#tasks + 1] = task.spawn({ name = "supervisor.stop " .. inst.id }, terminate, inst, stop)
  end
  local all, gone = true, {}
  for i, tk in ipairs(tasks) do
    local ok, stopped = tk:join()
    local inst = list[i]
    if ok and stopped then
      S.units[inst.id] = nil
      state.forget(S.root, inst)
      gone[#gone + 1] = inst.id
    else
      all = false
    end
  end
  refresh_metrics()
  unhold(gone)
  return all
end

-- stop(service, revision [, {grace = duration, signal = name}]) -> true | nil, err. Drains
-- every instance of the revision at once: the stop signal, grace, then SIGKILL.
function M.stop(service, revision, opts)
  local svc, err, fwd = check_args("stop", service, revision)
  if opts ~= nil and type(opts) ~= "table" then error("supervisor.stop: opts: table expected", 2) end
  if not svc then return nil, err end
  if fwd then return forward.call("stop", service, revision, opts, nil, svc.stop.grace + 60) end
  local stop = { signal = svc.stop.signal, grace = svc.stop.grace }
  if opts and opts.grace ~= nil then
    local g, gerr = time.parse_duration(opts.grace)
    if not g then error("supervisor.stop: grace: " .. tostring(gerr), 2) end
    stop.grace = g
  end
  if opts and opts.signal ~= nil then stop.signal = opts.signal end
  if not stop_instances(of(service, revision), stop) then
    return nil, format("supervisor.stop: %s %s: an instance did not exit after SIGKILL", service, tostring(revision))
  end
  return true
end

-- scale(service, revision, n) -> { instances } | nil, err: starts up to n, drains those above n.
function M.scale(service, revision, n)
  local svc, err, fwd = check_args("scale", service, revision)
  n = check_count("scale", n, nil)
  if not svc then return nil, err end
  if not n then error("supervisor.scale: n: an integer expected, got nil", 2) end
  if fwd then return forward.call("scale", service, revision, n, nil, svc.stop.grace + 60) end
  local extra = {}
  for _, inst in ipairs(of(service, revision)) do
    if inst.index > n then extra[#extra + 1] = inst end
  end
  if #extra > 0 and not stop_instances(extra, svc.stop) then
    return nil, format("supervisor.scale: %s %s: an instance did not exit after SIGKILL", service, revision)
  end
  if n == 0 then return {} end
  return M.start(service, revision, n)
end

-- A read of a service's instances: pick(inst) -> what the list shows of it (nil: left out).
-- Only an unknown service is an error (a read never fails on a configured one); on a worker
-- that does not supervise, the leader answers.
local function reader(fname, pick)
  return function(service, revision)
    local _, err, fwd = check_args(fname, service, revision)
    if err and not S.services[service] then return nil, err end
    if fwd then return forward.call(fname, service, revision) end
    local out = {}
    for _, inst in ipairs(of(service, revision)) do out[#out + 1] = pick(inst) end
    return out
  end
end

-- instances(service [, revision]) -> { instance, ... } (sorted by revision, index)
M.instances = reader("instances", public)

-- endpoints(service, revision) -> { {host, port, id}, ... } of the ready instances
M.endpoints = reader("endpoints", function(inst)
  if inst.ready and inst.pid then return { host = inst.host, port = inst.port, id = inst.id, index = inst.index } end
end)

-- wait_ready(service, revision, n, timeout) -> true | nil, err (with how many were ready)
function M.wait_ready(service, revision, n, timeout)
  local svc, err, fwd = check_args("wait_ready", service, revision)
  n = check_count("wait_ready", n, svc and svc.run.instances)
  if not svc then return nil, err end
  local secs = timeout == nil and 60 or time.parse_duration(timeout)
  if not secs then error("supervisor.wait_ready: timeout: a duration expected", 2) end
  if fwd then return forward.call("wait_ready", service, revision, n, secs, secs + 30) end
  local deadline = time.monotonic() + secs
  while true do
    local ready, failed = 0, nil
    for _, inst in ipairs(of(service, revision)) do
      if inst.ready and inst.pid then ready = ready + 1 end
      if inst.state == "failed" then failed = inst end
    end
    if ready >= n then return true end
    if failed then return nil, format("supervisor.wait_ready: %s failed (%s)", failed.id, tostring(failed.reason)) end
    if time.monotonic() >= deadline then
      return nil, format("supervisor.wait_ready: timeout: %d of %d instances of %s %s ready", ready, n, service, revision)
    end
    time.sleep(0.05)
  end
end

-- ---- the daemon's side (hidden from policies by the sandbox) ----

-- configure{services = cfg.services, var_dir = "var", emit = fn} — at start-up and at each
-- reload. A service removed from the config keeps its instances (a typo must not stop
-- production): they stay supervised with their last settings until stopped.
function M.configure(opts)
  for name, svc in pairs(S.services) do
    if not (opts.services or {})[name] then
      for _, inst in pairs(S.units) do
        if inst.service == name then
          log.warn("service removed from the config: its instances keep running with their last settings",
            { service = name })
          inst.svc = svc
          break
        end
      end
    end
  end
  local merged = {}
  for name, svc in pairs(opts.services or {}) do merged[name] = svc end
  for _, inst in pairs(S.units) do
    if not merged[inst.service] and S.services[inst.service] then merged[inst.service] = S.services[inst.service] end
  end
  S.services = merged
  if opts.var_dir then S.root = opts.var_dir .. "/services" end
  if opts.forward ~= nil then S.forward = opts.forward end
  if opts.emit ~= nil then S.emit = opts.emit end
  return true
end

-- supervise(): this process runs the supervisor (start-up, or it became the leader). Reads the
-- state files: live instances are adopted, the dead ones that should run are started again.
local VERBS = { start = true, stop = true, scale = true, instances = true, endpoints = true, wait_ready = true, status = true }

function M.supervise()
  if S.supervising then return true end
  S.supervising = true
  if S.forward and not S.server then
    S.server = forward.serve(function(verb, ...)
      if not VERBS[verb] then return nil, "supervisor: unknown verb " .. tostring(verb) end
      return M[verb](...)
    end)
  end
  S.generation = S.generation + 1
  local gen = S.generation
  for name in pairs(S.services) do
    local recs, bad = state.load(S.root, name)
    for _, b in ipairs(bad) do log.warn("supervisor: unreadable state file skipped", { service = name, file = b }) end
    for _, rec in ipairs(recs) do
      local inst = new_instance(name, rec.revision, rec.index, rec.port)
      inst.restarts = rec.restarts or 0
      inst.started_at = rec.started_at
      if rec.state == "failed" or rec.state == "exited" then
        inst.state = rec.state
      elseif state.alive(rec) then
        inst.pid, inst.start_time, inst.adopted = rec.pid, rec.start_time, true
        inst.started_mono = time.monotonic()
        backoff.started(inst.hist, time.monotonic(), S.services[name].restart)
        set_state(inst, "running")
        log.info("service instance adopted", { instance = inst.id, pid = inst.pid, port = inst.port })
        watch("supervisor.monitor " .. inst.id, monitor, inst, gen)
        start_probes(inst, gen)
      else
        log.warn("service instance found dead: replaced", { instance = inst.id, pid = rec.pid })
        local ok, err = start_process(inst, gen)
        if not ok then
          set_state(inst, "failed", err)
          save(inst)
        end
      end
    end
  end
  refresh_metrics()
  -- Quota holders = the instances that run (or are being started): a daemon killed between a
  -- reservation and its start, or while an instance failed, leaves nothing held.
  local live_ids = {}
  for id in pairs(S.units) do live_ids[#live_ids + 1] = id end
  local released, qerr = quota.reconcile(function(id)
    local inst = S.units[id]
    if inst and (inst.pid or inst.state == "restarting" or inst.state == "stopping" or inst.launching) then return inst end
    if S.reserving[id] then return true end
  end, live_ids)
  if not released then log.warn("supervisor: quota not reconciled", { error = qerr }) end
  return true
end

-- release(): this process stops supervising (shutdown, or leadership lost). The instances
-- keep running; whoever supervises next adopts them. Only their watching stops: the tasks
-- of watch() are cancelled (a cancelled wait for a child leaves the child running).
function M.release()
  if S.server then S.server:stop(); S.server = nil end
  S.supervising = false
  S.generation = S.generation + 1
  S.units = {}
  local list = {}
  for entry in pairs(watchers) do list[#list + 1] = entry end
  watchers = {}
  for _, entry in ipairs(list) do
    if entry.h then entry.h:cancel("released") end
  end
  refresh_metrics()
end

-- status() -> { {name, run = bool, haproxy = bool, kubernetes = bool, instances = {...}} }
-- for GET /v1/services and the REPL's services().
function M.status()
  if not S.supervising and S.forward then
    local list = forward.call("status", nil, nil, nil, nil, 10)
    if list then return list, true end
  end
  local names = {}
  for name in pairs(S.services) do names[#names + 1] = name end
  sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local svc = S.services[name]
    local list = {}
    for _, inst in ipairs(of(name)) do list[#list + 1] = public(inst) end
    out[#out + 1] = { name = name, run = svc.run ~= nil, haproxy = svc.haproxy ~= nil,
      kubernetes = svc.kubernetes ~= nil, instances = list }
  end
  return out, S.supervising
end

return M
