-- steward run: the daemon. Loads the configuration, opens the store, loads the policies,
-- recovers unfinished handling, serves the HTTP API, fires durable timers, and shuts down
-- cleanly on SIGTERM/SIGINT (stop accepting, let running handlers finish within a deadline,
-- flush the store). SIGHUP reloads the policies and re-reads the configuration. On a PostgreSQL store the daemon runs in
-- cluster mode (steward.runtime.cluster): handling is shared by bucket leases, and the singleton duties
-- (timers, cron, retention) run only on the elected leader. With workers = N > 1 this process
-- does the start-up that must happen once (privileges, store migrations, admin token, audit
-- key), then returns N and the address to core/main.c, whose supervisor (core/supervisor.c)
-- runs N worker processes: each is this daemon with STEWARD_WORKER=i, in cluster mode on the
-- shared store, listening on the one address with SO_REUSEPORT (docs/operations.md).
local config = require "steward.runtime.config"
local log = require "steward.log"
local fs = require "steward.fs"
local time = require "steward.time"
local task = require "steward.task"
local signal = require "steward.signal"
local httpd = require "steward.httpd"
local metrics = require "steward.metrics"
local store = require "steward.runtime.store"
local auth = require "steward.runtime.auth"
local policy_reload = require "steward.runtime.policy_reload"
local dispatch = require "steward.runtime.dispatch"
local api = require "steward.runtime.daemon.api"
local decision_log = require "steward.runtime.decision_log"
local audit_key = require "steward.runtime.store.audit_key"
local audit_chain = require "steward.runtime.store.audit_chain"

local M = {}

M.AUDIT_CHECKPOINT = "1m" -- how often the audit chain's head is signed (when it moved)

local function die(code, msg)
  io.stderr:write("steward: ", msg, "\n")
  io.stderr:flush()
  os.exit(code)
end

local function dirname(path) return path:match("^(.*)/[^/]*$") end

local function start_background(ctx)
  local due = require "steward.runtime.daemon.due"
  -- Durable timers and cron schedules become events in the log, then go to dispatch.
  -- (time.every skips a tick while the previous run is still going.)
  local function singleton() return not ctx.cluster or ctx.cluster:is_leader() end
  ctx.bg[#ctx.bg + 1] = time.every("250ms", function()
    if ctx.stopping or not singleton() then return end
    if not ctx.store_health.up then return end -- the probe says when it is back; no log flood
    local fired = due.fire(ctx.store, time.now())
    -- Through the subscribers (dispatch is one), so runtime modules hear of timer events too
    -- (steward.deploy.approvals turns its timeouts into approval.expired).
    if #fired > 0 then require("steward.runtime.events").published(ctx.store, fired) end
  end)
  ctx.bg[#ctx.bg + 1] = time.every("1s", function()
    if not ctx.stopping then ctx.dispatch:checkpoint() end
  end)
  -- Retention of the decision log.
  local decisions = require "steward.runtime.store.decisions"
  local function purge()
    if ctx.stopping or not singleton() then return end
    local n, err = decisions.purge(ctx.store, { before = time.now() - ctx.cfg.decision_retention })
    if not n then log.warn("decision log purge failed", { error = err }) end
    -- Versions only old decisions named can go now (policy_versions_keep).
    local ok, perr = true, nil
    if ctx.registry then ok, perr = ctx.registry:prune_versions() end
    if not ok then log.warn("policy version retention failed", { error = perr }) end
  end
  ctx.bg[#ctx.bg + 1] = time.every("1h", purge)
  -- A signed checkpoint over the audit chain's head, when anything was added since the last
  -- one (docs/audit.md). One signer in a cluster: the leader.
  ctx.bg[#ctx.bg + 1] = time.every(M.AUDIT_CHECKPOINT, function()
    if ctx.stopping or not singleton() or not ctx.store_health.up then return end
    local ok, err = audit_chain.checkpoint_due(ctx.store, ctx.audit_key)
    if ok == nil then log.warn("audit checkpoint failed", { error = err }) end
  end)
  -- A new leader purges at once: the old one may have died before its hourly run.
  ctx.on_leader = function(yes) if yes then task.spawn({ name = "purge" }, purge) end end
  -- Event-loop lag: how late a 100 ms timer runs.
  local lag = metrics.gauge("steward_event_loop_lag_seconds", "How late a 100ms timer ran, last sample", {})
  local last = time.monotonic()
  ctx.bg[#ctx.bg + 1] = time.every("100ms", function()
    local now = time.monotonic()
    lag:set(math.max(0, now - last - 0.1))
    last = now
  end)
end

local function register_gauges(ctx)
  metrics.gauge("steward_lua_memory_bytes", "Memory used by the Lua heap", {},
    function() return collectgarbage("count") * 1024 end)
  metrics.gauge("steward_tasks", "Live tasks", {}, function() return task.count() end)
  -- The store counts in C; at scrape time the counters catch up by the difference.
  local commits = metrics.counter("steward_store_commits_total", "Store transactions committed (group commits)", {})
  local units = metrics.counter("steward_store_units_total", "Write units committed (each one task's atomic batch)", {})
  local commit_s = metrics.counter("steward_store_commit_seconds_total", "Time spent in commits; / commits = mean commit latency", {})
  local last_batch = metrics.gauge("steward_store_last_batch_units", "Units in the last group commit", {})
  local max_batch = metrics.gauge("steward_store_max_batch_units", "Most units in one group commit", {})
  local queue = metrics.gauge("steward_store_queue_depth", "Write units waiting for the writer", {})
  local seen = { commits = 0, units = 0, commit_seconds_total = 0 }
  ctx.refresh_metrics = function()
    local s = ctx.store:stats() or {}
    commits:inc((s.commits or 0) - seen.commits)
    units:inc((s.units or 0) - seen.units)
    commit_s:inc((s.commit_seconds_total or 0) - seen.commit_seconds_total)
    seen.commits, seen.units, seen.commit_seconds_total = s.commits or 0, s.units or 0, s.commit_seconds_total or 0
    last_batch:set(s.last_batch_units or 0); max_batch:set(s.max_batch_units or 0)
    queue:set(s.queue_depth or 0)
  end
end

-- The supervisor's share of the start-up, done once before any worker starts so that workers
-- starting together do not race: the store's migrations, the admin token, the audit key.
-- Returns what core/main.c hands to the supervisor: the worker count, host and port.
function M.prepare_workers(cfg)
  local st, err = store.open(cfg.store)
  if not st then die(1, "store: " .. tostring(err)) end
  local a
  a, err = auth.new({ store = st, admin_token = cfg.admin_token, var_dir = cfg.var_dir })
  if not a then die(1, err) end
  local key
  key, err = audit_key.load(audit_key.path(cfg.var_dir), { create = true })
  if not key then die(1, err) end
  st:close()
  local host, port = cfg.listen:match("^(.+):(%d+)$")
  log.info("starting workers", { workers = cfg.workers, address = cfg.listen })
  return cfg.workers, host, tonumber(port)
end

-- main{config = path} — runs until SIGTERM or SIGINT (or, with workers > 1 outside a worker,
-- returns workers, host, port for the supervisor).
function M.main(args)
  args = args or {}
  local cfg, err = config.load({ file = args.config or "steward.lua", required = args.config ~= nil })
  if not cfg then die(2, "config: " .. err) end
  log.set_level(cfg.log_level)
  -- STEWARD_PROFILE=mode:file samples the whole daemon with LuaJIT's profiler (jit.p),
  -- e.g. "F:/tmp/prof.txt" (functions) or "v:/tmp/vm.txt" (VM states: JIT, interpreter, GC, C).
  local prof = os.getenv("STEWARD_PROFILE")
  if prof and prof ~= "" then
    local mode, out = prof:match("^([^:]*):(.+)$")
    require("jit.p").start(mode or "F", out or prof)
  end

  -- A long-running daemon: collect when the heap has grown by half since the last cycle
  -- (LuaJIT's default waits for it to double), trading a little CPU for a smaller peak.
  collectgarbage("setpause", 150)

  -- var/ holds event payloads, decision inputs, notification history and the admin token:
  -- whatever the daemon creates is its user's alone (umask 077), and the var directory is
  -- 0700 even when an older version created it 0755.
  local ffi = require "ffi"
  pcall(ffi.cdef, "unsigned int umask(unsigned int mask); int chmod(const char *path, unsigned int mode);" ..
    " unsigned int geteuid(void);")
  ffi.C.umask(tonumber("077", 8))
  local ok
  ok, err = fs.mkdir(cfg.var_dir, { parents = true, mode = tonumber("700", 8) })
  if not ok then die(1, "cannot create " .. cfg.var_dir .. ": " .. err) end
  -- Tightened only when it is ours and not a shared directory (sticky, like /tmp).
  local vst = fs.stat(cfg.var_dir)
  if vst and vst.uid == tonumber(ffi.C.geteuid()) and vst.mode % 512 ~= tonumber("700", 8)
    and vst.mode < tonumber("1000", 8) then
    if ffi.C.chmod(cfg.var_dir, tonumber("700", 8)) ~= 0 then
      log.warn("cannot make the var directory private (chmod 0700)", { path = cfg.var_dir })
    end
  end
  local db_path = cfg.store:match("^sqlite:(.+)$")
  if db_path and db_path ~= ":memory:" and dirname(db_path) then
    ok, err = fs.mkdir(dirname(db_path), { parents = true })
    if not ok then die(1, "cannot create the store directory: " .. err) end
  end
  -- Started as root: become the service user before anything is opened or served (a
  -- supervisor drops before it starts any worker; a worker then finds nothing to drop).
  ok, err = require("steward.runtime.daemon.privileges").drop(cfg)
  if not ok and err then die(1, err) end
  local worker = tonumber(os.getenv("STEWARD_WORKER") or "")
  if not worker and cfg.workers > 1 then
    -- An in-memory database is private to its process: workers could not share it.
    if db_path == ":memory:" then
      log.warn("an in-memory store cannot be shared by worker processes: running one process",
        { workers = cfg.workers, store = cfg.store })
    else
      return M.prepare_workers(cfg)
    end
  end

  pcall(ffi.cdef, "int getpid(void);")
  local ctx = { cfg = cfg, policies = {}, bg = {}, policies_loaded = false, started = time.now(),
                pid = tonumber(ffi.C.getpid()) }
  local st
  st, err = store.open(cfg.store)
  if not st then die(1, "store: " .. tostring(err)) end
  store.set_default(st)
  ctx.store = st
  require("steward.archive").configure({ dir = cfg.var_dir .. "/archive", -- h6: events.replay reads it (docs/archive.md)
    policies = function() return ctx.dispatch and ctx.dispatch.policies end })
  ctx.store_ok = function() return ctx.store ~= nil and not ctx.store_closed end
  -- Watches every store call from here on (start-up included): /readyz and 503s read it.
  ctx.store_health = require("steward.runtime.store_health").attach(st)
  ctx.bg[#ctx.bg + 1] = ctx.store_health:start("1s")
  log.info("store open", { store = cfg.store:gsub("//([^:/@]+):[^@]*@", "//%1:***@") })

  ctx.auth, err = auth.new({ store = st, admin_token = cfg.admin_token, var_dir = cfg.var_dir })
  if not ctx.auth then die(1, err) end
  ctx.audit_key, err = audit_key.load(audit_key.path(cfg.var_dir), { create = true })
  if not ctx.audit_key then die(1, err) end
  log.info("audit key", { path = audit_key.path(cfg.var_dir), id = ctx.audit_key.id:sub(1, 16) })

  ctx.decision_log = decision_log.new({ store = st, mask = cfg.decision_mask, mode = cfg.decision_log,
    window = cfg.decision_log_window })
  -- Runaway policies: what they emit, and what they compute and allocate all together.
  require("steward.runtime.policy.emit").configure({ per_run = cfg.limits.emit_per_run,
    per_second = cfg.limits.emit_per_second, max_depth = cfg.limits.max_cause_depth })
  require("steward.runtime.guard").configure({ memory_total = cfg.limits.policy_memory_total, stall = cfg.limits.policy_stall })
  -- Tenants' limits (docs/tenants.md "Isolation and limits"): ingest rates, their policies'
  -- budgets, their shares of the dispatcher's runners.
  local tenant_limits = require "steward.tenants.limits"
  tenant_limits.configure({ tenants = cfg.tenants, workers = cfg.workers })
  require("steward.billing.config").configure(cfg.billing) -- issue 18, h4 (docs/billing/subscriptions.md)
  ctx.dispatch = dispatch.new({
    store = st, decision_log = ctx.decision_log, concurrency = cfg.limits.dispatch_concurrency,
    handler_timeout = cfg.limits.handler_timeout, retry_attempts = cfg.limits.retry_attempts,
    retry_base = cfg.limits.retry_base, retry_max = cfg.limits.retry_max,
    store_health = ctx.store_health,
    tenant_weight = tenant_limits.queue_share, tenant_budget = tenant_limits.budget,
  })
  -- Capabilities (docs/policies.md): grants by policy name, named PostgreSQL connections, and
  -- every refused use in the audit log.
  local guards = require "steward.runtime.policy.guards"
  guards.pg_connections = cfg.pg_connections
  -- The services a rollout may act on (the config's `services`; docs/deployments.md).
  require("steward.deploy.rollout").services = cfg.services or {}
  -- The traffic drivers reach the sockets and URLs the operator wrote in `services`.
  require("steward.deploy.haproxy").configure(cfg.services)
  require("steward.deploy.kubernetes").configure(cfg.services)
  guards.on_denied = function(policy, cap, detail)
    require("steward.runtime.store.audit").append(st, { source = "policy", session = policy,
      command = "capability " .. cap, outcome = "denied", detail = detail })
  end
  -- An operator's reload re-reads the same files and variables as start-up, through the
  -- thread pool (fs.read) so the loop does not wait for the disk.
  local cfg_file = args.config or "steward.lua"
  ctx.registry = policy_reload.new({ dir = cfg.policies, store = st, cfg = cfg, grants = cfg.grants,
    keep_versions = cfg.policy_versions_keep,
    load_config = function() return config.load({ file = cfg_file, required = args.config ~= nil, read = fs.read }) end,
    on_config = function(c, keys)
      for _, k in ipairs(keys) do
        if k == "services" then require("steward.deploy.rollout").services = c.services or {} end
        if k == "log_level" then log.set_level(c.log_level) end
        if k == "pg_connections" then guards.pg_connections = c.pg_connections end
        if k == "services" then
          require("steward.deploy.haproxy").configure(c.services)
          require("steward.deploy.kubernetes").configure(c.services)
        end
        if k == "services" then require("steward.deploy.supervisor").configure({ services = c.services }) end
        if k == "tenants" then require("steward.tenants.config").configure(c.tenants) end
        if k == "billing" then require("steward.billing.config").configure(c.billing) end -- issue 18, h4
        if k == "services" or k == "quotas" then
          require("steward.scaling.quota").configure({ quotas = c.quotas, services = c.services })
        end
        if k == "tenants" then require("steward.tenants.limits").configure({ tenants = c.tenants, workers = c.workers }) end
      end
    end,
    on_swap = function(set)
    ctx.policies = set
    ctx.dispatch:set_policies(set)
    require("steward.runtime.daemon.policy_schedules").apply(st, set)
  end })
  ctx.worker = worker
  if worker or require("steward.runtime.cluster").enabled(st) then
    ctx.cluster = require("steward.runtime.cluster").new({ store = st, dispatch = ctx.dispatch, registry = ctx.registry,
      worker = worker,
      lease = cfg.cluster.lease, heartbeat = cfg.cluster.heartbeat, poll = cfg.cluster.poll,
      url = cfg.store, pid = ctx.pid, on_leader = function(yes) if ctx.on_leader then ctx.on_leader(yes) end end,
      on_tokens = function() ctx.auth:refresh() end })
    ctx.dispatch:set_cluster(ctx.cluster)
    -- Should a token notification be lost (a session reconnecting), a revoked token still
    -- stops working within auth.REFRESH seconds (docs/operations.md).
    ctx.bg[#ctx.bg + 1] = time.every(auth.REFRESH, function() ctx.auth:refresh() end)
    ctx.registry.instance = ctx.cluster.id
  end
  local summary
  summary, err = ctx.registry:reload("start")
  if not summary then die(1, err) end
  local recovered
  recovered, err = ctx.dispatch:recover()
  if not recovered then die(1, "recovery failed: " .. tostring(err)) end
  log.info("recovery", { events = recovered })
  -- From now on, events that handlers, the REPL and runtime modules append go to dispatch at
  -- once (before recovery they would be queued twice: by the hook and by the scan).
  ctx.unsubscribe_events = require("steward.runtime.events").subscribe(function(s, list)
    if s == st then ctx.dispatch:notify(list) end
  end)
  if ctx.cluster then
    ok, err = ctx.cluster:start()
    if not ok then die(1, err) end
  end
  ctx.policies_loaded = true
  ctx.registry:watch()

  register_gauges(ctx)
  -- The admin socket (steward repl / steward eval, docs/repl.md) is up before the HTTP
  -- listener: once "listening" is logged for HTTP, a client can attach.
  -- Worker i > 1 serves its own socket, <admin_socket>.<i>; worker 1 the configured path.
  local repl_ctx = ctx
  if worker and worker > 1 then
    local wcfg = setmetatable({ admin_socket = cfg.admin_socket .. "." .. worker }, { __index = cfg })
    repl_ctx = setmetatable({ cfg = wcfg }, { __index = ctx, __newindex = ctx })
  end
  ctx.repl, err = require("steward.runtime.repl.server").start(repl_ctx)
  if not ctx.repl then die(1, err) end
  local router = httpd.router()
  api.install(router, ctx)
  -- A worker binds the address its supervisor resolved (port 0 becomes one port for all).
  local host, port = (worker and os.getenv("STEWARD_WORKER_LISTEN") or cfg.listen):match("^%[?(.-)%]?:(%d+)$")
  local l = cfg.limits
  local srv
  srv, err = httpd.listen({
    host = host, port = tonumber(port), handler = router, admit = api.admit(router, ctx), reuseport = worker ~= nil,
    limits = { max_header_bytes = l.max_header_bytes, max_body_bytes = l.max_body_bytes,
               max_body_bytes_in_flight = math.max(l.max_body_bytes_in_flight, l.max_body_bytes),
               max_connections = l.max_connections, header_timeout = l.header_timeout,
               body_timeout = l.body_timeout, idle_timeout = l.idle_timeout },
  })
  if not srv then die(1, "cannot listen on " .. cfg.listen .. ": " .. tostring(err)) end
  log.info("listening", { listener = "http", address = host .. ":" .. srv:port(), worker = worker })
  ctx.server = srv
  if ctx.cluster then ctx.cluster.address = host .. ":" .. srv:port() end
  start_background(ctx)
  -- Supervised services (docs/deploy/services.md) run where the singleton duties do: this
  -- process, or the cluster's leader; a new leader adopts the instances by their pid files.
  local supervisor = require "steward.deploy.supervisor"
  supervisor.configure({ services = cfg.services, var_dir = cfg.var_dir, forward = ctx.cluster ~= nil })
  require("steward.scaling.quota").configure({ quotas = cfg.quotas, services = cfg.services }) -- docs/scaling/quotas.md
  require("steward.tenants.provision").start(ctx) -- tenants' sagas resumed on the leader (docs/tenants.md)
  local on_leader = ctx.on_leader
  ctx.on_leader = function(yes)
    if on_leader then on_leader(yes) end
    if yes then task.spawn({ name = "supervisor" }, supervisor.supervise) else supervisor.release() end
  end
  if not ctx.cluster or ctx.cluster:is_leader() then task.spawn({ name = "supervisor" }, supervisor.supervise) end
  -- Autoscalers tick where the supervisor runs (docs/scaling/autoscaler.md).
  require("steward.scaling.loop").install(ctx)
  require("steward.capacity").start(ctx) -- capacity history writer and retention, cost model (docs/scaling/capacity.md)
  -- Tenant offboardings (docs/tenants.md "Offboarding"): archives signed with the audit key; one
  -- a crash cut short carries on here, where the singleton duties run.
  local offboard = require "steward.tenants.offboard"
  offboard.configure({ key = ctx.audit_key, dir = cfg.var_dir .. "/exports" })
  -- Suspension asked for by a policy (billing's dunning): tenant.suspend_requested / resume_requested.
  ctx.unsubscribe_suspension = require("steward.tenants.suspension").watch(require("steward.runtime.events"))
  if not ctx.cluster or ctx.cluster:is_leader() then task.spawn({ name = "offboard.resume" }, function() offboard.resume() end) end
  -- Start-up's garbage (config, module loading, migrations: a quarter of the heap) goes now,
  -- not at a first cycle an idle daemon may not reach for hours; the store's idle trim hands
  -- the freed pages back to the kernel a second later.
  collectgarbage()

  -- The main task waits for a stop signal; the signal handler cancels this waiter.
  local waiter = task.spawn(function() time.sleep(1e9) end)
  local function stop(name)
    if ctx.stopping then return end
    log.info("stopping", { signal = name })
    waiter:cancel(name)
  end
  local watches = {
    signal.on("TERM", stop), signal.on("INT", stop),
    signal.on("HUP", function() ctx.registry:reload("SIGHUP", { config = true }) end),
  }
  ctx.reload = function(reason) return ctx.registry:reload(reason or "API", { config = true }) end
  -- Tell the supervisor this worker serves (and may now be sent SIGHUP).
  local ready_fd = worker and tonumber(os.getenv("STEWARD_WORKER_READY_FD") or "")
  if ready_fd then
    pcall(ffi.cdef, "long write(int fd, const void *buf, size_t n); int close(int fd);")
    ffi.C.write(ready_fd, "1", 1)
    ffi.C.close(ready_fd)
  end
  waiter:join()

  ctx.stopping = true
  -- The instances keep running (the next start adopts them); only their watching stops.
  require("steward.deploy.supervisor").release()
  -- Retry back-offs end now: what they would retry runs again after the restart.
  require("steward.runtime.shutdown").begin()
  ctx.repl:close()
  ctx.registry:close()
  for _, b in ipairs(ctx.bg) do b:cancel() end
  srv:close()
  local deadline = cfg.limits.shutdown_timeout
  local t_close = time.monotonic()
  if not srv:wait_closed(deadline) then
    log.warn("HTTP requests still in flight at the shutdown deadline")
  end
  if ctx.cluster then ctx.cluster:quiesce() end
  local drained = ctx.dispatch:drain(math.max(0, deadline - (time.monotonic() - t_close)))
  if not drained then log.warn("handlers still running at the shutdown deadline were cancelled; they run again at the next start") end
  ctx.dispatch:checkpoint()
  -- The last entries are signed before the store closes (the leader's job in a cluster).
  if not ctx.cluster or ctx.cluster:is_leader() then
    local signed, aerr = audit_chain.checkpoint_due(st, ctx.audit_key)
    if signed == nil then log.warn("audit checkpoint at shutdown failed", { error = aerr }) end
  end
  if ctx.cluster then ctx.cluster:stop() end
  ctx.decision_log:close()
  st:close()
  ctx.store_closed = true
  for _, w in ipairs(watches) do w:cancel() end
  if prof and prof ~= "" then require("jit.p").stop() end
  log.info("stopped")
end

return M
