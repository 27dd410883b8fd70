-- steward.runtime.repl.helpers: the incident helpers a REPL session finds as globals — status(),
-- policies(), events.tail/find, policy.trace/simulate/decide, decisions{}, explain(), dead_letters(), requeue(),
-- kv(), timers(), reload(), rollback(), profile(), audit(), incidents(), notifications(), approvals(), approve(), deny(),
-- rollouts(), promote(), abort(). Each is built over the daemon's own
-- objects (ctx), so what the REPL shows is what the daemon uses. Helpers that change things
-- refuse in a read-only session. docs/repl.md has an example of each.
local json = require "steward.json"
local time = require "steward.time"
local task = require "steward.task"
local metrics = require "steward.metrics"
local taps = require "steward.runtime.taps"
local events = require "steward.runtime.events"
local kv = require "steward.runtime.store.kv"
local timers = require "steward.runtime.store.timers"
local decisions = require "steward.runtime.store.decisions"
local audit = require "steward.runtime.store.audit"
local util = require "steward.runtime.store.util"
local build = require "steward.build"

local format, concat, floor, max, min = string.format, table.concat, math.floor, math.max, math.min
local type, tostring, pairs, ipairs, error = type, tostring, pairs, ipairs, error

local M = {}

function M.human_duration(s)
  s = floor(s or 0)
  if s < 60 then return s .. "s" end
  if s < 3600 then return format("%dm %ds", floor(s / 60), s % 60) end
  if s < 86400 then return format("%dh %dm", floor(s / 3600), floor(s / 60) % 60) end
  return format("%dd %dh", floor(s / 86400), floor(s / 3600) % 24)
end

local function iso(t)
  if not t then return nil end
  return util.format_rfc3339(t)
end

local function clock(t)
  local whole = floor(t)
  return format("%s.%03d", os.date("!%H:%M:%S", whole), floor((t - whole) * 1000))
end

local function bytes(n)
  if not n then return nil end
  if n >= 2 ^ 30 then return format("%.1f GiB", n / 2 ^ 30) end
  if n >= 2 ^ 20 then return format("%.1f MiB", n / 2 ^ 20) end
  if n >= 2 ^ 10 then return format("%.1f KiB", n / 2 ^ 10) end
  return n .. " B"
end

-- rows(list, columns): a list of records that prints as an aligned table in the REPL (and is
-- still a plain list to code and to --json).
local Rows = {}
function M.rows(list, columns)
  return setmetatable(list, { __index = Rows, __tostring = function(t)
    if #t == 0 then return "(none)" end
    local width, cells = {}, {}
    for c, name in ipairs(columns) do width[c] = #name end
    for i, r in ipairs(t) do
      cells[i] = {}
      for c, name in ipairs(columns) do
        local v = r[name]
        local s = v == nil and "-" or (type(v) == "table" and json.encode(v) or tostring(v))
        s = s:gsub("\n.*", " ...")
        if #s > 90 then s = s:sub(1, 87) .. "..." end
        cells[i][c] = s
        width[c] = max(width[c], #s)
      end
    end
    local lines = {}
    local function line(vals)
      local parts = {}
      for c = 1, #columns do parts[c] = vals[c] .. string.rep(" ", width[c] - #vals[c]) end
      lines[#lines + 1] = (concat(parts, "  "):gsub("%s+$", ""))
    end
    line(columns)
    for _, r in ipairs(cells) do line(r) end
    return concat(lines, "\n")
  end })
end

local function rss_bytes()
  local f = io.open("/proc/self/statm", "r") -- procfs: memory-backed, never waits on a disk
  if not f then return nil end
  local s = f:read("*l")
  f:close()
  local pages = s and tonumber(s:match("^%d+%s+(%d+)"))
  return pages and pages * 4096
end

local function sum_series(name, policy)
  local m = metrics.get(name)
  if not m then return 0, 0 end
  local all, bad = 0, 0
  for _, s in pairs(m.series) do
    if s.values[1] == policy then
      all = all + s.value
      if s.values[2] ~= "ok" then bad = bad + s.value end
    end
  end
  return all, bad
end

local function p99(name, policy)
  local h = metrics.get(name)
  if not h then return nil end
  for _, s in pairs(h.series) do
    if s.values[1] == policy and s.count > 0 then
      local q = metrics.quantile(h, 0.99, policy)
      return q and (q == math.huge and ">" .. h.buckets[#h.buckets] .. "s" or format("%gms", q * 1000))
    end
  end
  return nil
end

-- A one-line rendering of an event or a decision for streams (tail, trace).
local function compact(v, width)
  if v == nil then return "" end
  local ok, s = pcall(json.encode, v)
  s = ok and s or tostring(v)
  if #s > width then s = s:sub(1, width - 3) .. "..." end
  return s
end

local function pack(...) return { n = select("#", ...), ... } end

-- outside(fn, ...): runs fn in a task of its own, after the command's guarded run has let go
-- of the loop (task.yield), for work that runs policy code under its own guard (simulate,
-- reload): guarded runs do not nest.
local function outside(fn, ...)
  local args = pack(...)
  local h = task.spawn({ name = "repl.outside" }, function()
    task.yield()
    return fn(unpack(args, 1, args.n))
  end)
  local res = pack(h:join())
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

-- new(ctx, session) -> the table of helpers of one session.
function M.new(ctx, session)
  local h = {}
  local st = function()
    if not ctx.store_ok() then error("the store is closed", 3) end
    return ctx.store
  end
  local function admin(what) session:require_admin(what) end
  local function out(s) session:out(s) end

  local th = require("steward.tenants.repl").HELP -- docs/tenants.md
  local help_text = {
    { "status()", "uptime, versions, loop lag, memory, queue depths, store health" },
    { "policies()", "each policy: version, loaded at, last error, runs, errors, p99" },
    { "events.tail{type=, tenant=, n=}", "stream events as they are committed (Ctrl-C stops)" },
    { "events.find{type=, tenant=, since=, until=, limit=}", "events from the log" },
    { "policy.trace(name, {n=})", "stream a policy's decisions as they happen (Ctrl-C stops)" },
    { "policy.simulate(name, event)", "dry-run a policy on an event: result and side effects" },
    { "policy.decide(name, input)", "dry-run a policy's decide on an input: result and side effects" },
    { "decisions{policy=, outcome=, event_id=, n=}", "the latest decisions (default 20), oldest first" },
    { "explain(id)", "a decision (by decision id, or an event's latest): input, version, result, side effects" },
    { "dead_letters{policy=, limit=}", "events parked after their retries ran out" },
    { "requeue(id)", "hand a dead letter to its policy again" },
    { "kv(ns):get(k) / :put(k, v) / :list()", "a kv namespace (policies use \"policy:<name>\")" },
    { "timers{limit=}", "pending durable timers" },
    { "reload()", "reload the policies and steward.lua's policy settings from disk" },
    { "rollback(name [, version])", "restore a policy's previous version" },
    { "profile(seconds)", "sample the daemon with LuaJIT's profiler: top functions and policies" },
    { "audit{limit=, uid=}", "the audit log, newest first" },
    { "rollouts{service=, phase=, limit=}", "rollouts, newest first (also rollouts.list{...})" },
    { "rollouts.show(id)", "a rollout: plan, current step, analysis, history" },
    { "promote(id [, {full = true}])", "resume a paused rollout (full: skip every remaining step)" },
    { "abort(id [, {force = true}])", "abort a rollout: traffic back to stable (force: past a blocked rollback)" },
    { "health([tenant])", "customer health: each tenant's latest score, or one tenant's history" },
    { "tickets{tenant=, state=, queue=}", "support tickets, newest first" },
    { "rollouts.retry(id)", "start an aborted rollout again from its first step" },
    { "incidents{state=, service=, since=, limit=}", "incidents, newest first (also incidents.list{...})" },
    { "incidents.show(id)", "an incident with its timeline" },
    { "incidents.ack(id) / .resolve(id)", "acknowledge or resolve an incident" },
    { "incidents.reassign(id, user)", "assign an incident to someone (who is notified)" },
    { "incidents.trigger{key=, service=, title=, escalation=}", "open an incident by hand (pages through its escalation)" },
    { "notifications{channel=, key=, status=, since=, limit=}", "notification history, newest first" },
    th[1], th[2], th[3], th[4],
    { "approvals{state=, subject=, limit=}", "deploy approvals, newest first (default: pending ones)" },
    { "approve(id [, comment]) / deny(id [, comment])", "decide a pending approval (audited as you)" },
    { "services([name])", "supervised service instances: revision, state, ready, pid, port, restarts" },
    { "scaling([service])", "autoscalers: revision, current and desired replicas, last decision (its id for explain)" },
    { "capacity([service])", "capacity reports: current load, limit, days to saturation (interval), lead time, model, error" },
    { "cost{from=, to=, by=}", "what the supervised instances cost by service, tenant or revision (costs key)" },
    { "defer{name=, duration=, deadline=, event=}", "run a job's event at its cheapest slot before the deadline (durable, audited)" },
    { "deferred()", "deferred jobs still waiting, with their start" },
  }
  for _, r in ipairs(require("steward.billing.repl").HELP) do help_text[#help_text + 1] = r end -- docs/billing/subscriptions.md
  function h.help()
    local rows = {}
    for i, r in ipairs(help_text) do rows[i] = { helper = r[1], does = r[2] } end
    return M.rows(rows, { "helper", "does" })
  end

  function h.status()
    local s = ctx.store_ok() and ctx.store:stats() or {}
    local t0 = time.monotonic()
    local ok, err = false, "closed"
    if ctx.store_ok() then ok, err = ctx.store:sql("SELECT 1 AS one") end
    local probe = time.monotonic() - t0
    local lag = metrics.get("steward_event_loop_lag_seconds")
    local nerr = 0
    for _ in pairs(ctx.registry and ctx.registry.errors or {}) do nerr = nerr + 1 end
    local n = 0
    for _ in pairs(ctx.policies or {}) do n = n + 1 end
    local d = ctx.dispatch and ctx.dispatch:stats() or {}
    return {
      version = build.version, pid = ctx.pid,
      uptime = M.human_duration(time.now() - (ctx.started or time.now())),
      started = iso(ctx.started),
      loop_lag = lag and lag.series[""] and format("%.1fms", lag.series[""].value * 1000) or nil,
      memory = { rss = bytes(rss_bytes()), lua_heap = bytes(floor(collectgarbage("count") * 1024)) },
      tasks = task.count(),
      queues = { dispatch_waiting = d.queued, handlers_running = d.active, store_writes = s.queue_depth },
      store = { backend = ctx.store_ok() and ctx.store:backend() or nil, healthy = ok and true or false,
        error = not ok and tostring(err) or nil, probe = format("%.2fms", probe * 1000),
        commits = s.commits, failed_units = s.failed_units },
      policies = { loaded = n, failing_files = nerr },
      sessions = ctx.repl and ctx.repl:count() or nil,
    }
  end

  function h.policies()
    local names = {}
    for name in pairs(ctx.policies or {}) do names[#names + 1] = name end
    table.sort(names)
    local rows = {}
    for _, name in ipairs(names) do
      local st_ = ctx.registry and ctx.registry:status(name) or {}
      local runs, errs = sum_series("steward_handler_runs_total", name)
      local druns, derrs = sum_series("steward_decisions_total", name)
      local le = st_.last_error
      rows[#rows + 1] = { name = name, version = tostring(st_.version or ""):sub(1, 12),
        loaded_at = iso(st_.loaded_at), last_error = le and format("%s:%s: %s", le.file, le.line or "?", le.message) or nil,
        runs = runs + druns, errors = errs + derrs,
        p99 = p99("steward_handler_duration_seconds", name) or p99("steward_decide_duration_seconds", name) }
    end
    -- Files that failed to load and have no running version are listed too.
    for _, e in ipairs(ctx.registry and ctx.registry:error_list() or {}) do
      local known = false
      for _, r in ipairs(rows) do
        if r.last_error and r.last_error:sub(1, #e.file) == e.file then known = true end
      end
      if not known then
        rows[#rows + 1] = { name = e.file, last_error = format("%s:%s: %s", e.file, e.line or "?", e.message) }
      end
    end
    return M.rows(rows, { "name", "version", "loaded_at", "runs", "errors", "p99", "last_error" })
  end

  -- Streams: the command runs until Ctrl-C (an interrupt) or until n items were shown.
  local function stream(topic, filter, n, line)
    local sub = session:track(taps.subscribe(topic, filter))
    local shown = 0
    while not n or shown < n do
      local item, dropped = sub:next()
      if not item then break end
      if dropped > 0 then out(format("... %d not shown (the stream fell behind)\n", dropped)) end
      out(line(item) .. "\n")
      shown = shown + 1
    end
    sub:close()
    return shown
  end

  local function type_matcher(t, what)
    if t == nil or t == "*" then return function() return true end end
    if type(t) ~= "string" then error(what .. ": type: string expected", 3) end
    if t:sub(-1) == "*" then
      local prefix = t:sub(1, -2)
      return function(x) return x:sub(1, #prefix) == prefix end
    end
    return function(x) return x == t end
  end

  h.events = {}
  function h.events.tail(f)
    f = f or {}
    if type(f) ~= "table" then error("events.tail: filter: table expected", 2) end
    if f.n ~= nil and (type(f.n) ~= "number" or f.n < 1) then error("events.tail: n: positive number expected", 2) end
    local match = type_matcher(f.type, "events.tail")
    local tenant = f.tenant
    local width = session.opts.width
    return stream("event", function(ev)
      return match(ev.type) and (tenant == nil or ev.tenant == tenant)
    end, f.n, function(ev)
      local head = format("%s  %-24s %-10s %s  ", clock(ev.time or time.now()), ev.type, ev.tenant or "-", ev.id)
      return head .. compact(ev.data, max(20, width - #head))
    end)
  end

  function h.events.find(f)
    local res, err = events.query(st(), f or {})
    if not res then return nil, err end
    return M.rows(res.events, { "seq", "id", "type", "tenant", "time", "data" })
  end

  h.policy = {}
  function h.policy.trace(name, opts)
    if type(name) ~= "string" then error("policy.trace: name: string expected", 2) end
    opts = opts or {}
    local width = session.opts.width
    return stream("decision", function(d) return d.policy == name end, opts.n, function(d)
      local head = format("%s  %-8s %7.2fms  %s  ", clock(d.time or time.now()), d.outcome or "?",
        (d.duration or 0) * 1000, d.ref or "")
      local what = d.error and ("error: " .. tostring(d.error)) or
        (d.event_id and ("event " .. d.event_id) or compact(d.result, max(20, width - #head)))
      return head .. what
    end)
  end

  function h.policy.simulate(name, ev)
    if type(name) ~= "string" then error("policy.simulate: name: string expected", 2) end
    if type(ev) ~= "table" then error("policy.simulate: event: table expected", 2) end
    local p = (ctx.policies or {})[name]
    if not p then return nil, "no policy named " .. name end
    ev.id = ev.id or ("sim-" .. require("steward.crypto").uuidv7())
    ev.time = ev.time or time.now()
    ev.data = ev.data or {}
    return outside(require("steward.runtime.simulate").run, p, ev, { lib_dir = ctx.cfg.policies .. "/lib" })
  end

  function h.policy.decide(name, input)
    if type(name) ~= "string" then error("policy.decide: name: string expected", 2) end
    if input == nil then error("policy.decide: input: a value expected (the JSON body /v1/decide takes)", 2) end
    local p = (ctx.policies or {})[name]
    if not p then return nil, "no policy named " .. name end
    if not p.decide then return nil, "policy " .. name .. " has no decide function" end
    local res, err = outside(require("steward.runtime.simulate").decide, p, input, { lib_dir = ctx.cfg.policies .. "/lib" })
    if not res then return nil, err end
    res.version = tostring(res.version or ""):sub(1, 12)
    res.duration = format("%.2fms", (res.duration or 0) * 1000)
    return res
  end

  function h.decisions(f)
    if f ~= nil and type(f) ~= "table" then error("decisions: filter: table expected", 2) end
    f = f or {}
    if f.n ~= nil and (type(f.n) ~= "number" or f.n < 1) then error("decisions: n: positive number expected", 2) end
    local list, err = decisions.latest(st(), { policy = f.policy, outcome = f.outcome, event_id = f.event_id, n = f.n })
    if not list then return nil, err end
    local rows = {}
    for i, d in ipairs(list) do
      rows[i] = { decision_id = d.ref, time = iso(d.time), policy = d.policy, version = tostring(d.version or ""):sub(1, 12),
        outcome = d.outcome, duration = d.duration and format("%.2fms", d.duration * 1000),
        what = d.error and ("error: " .. tostring(d.error)) or (d.event_id and ("event " .. d.event_id)) or
          compact(d.result, 60) }
    end
    return M.rows(rows, { "decision_id", "time", "policy", "version", "outcome", "duration", "what" })
  end

  function h.explain(id)
    local d, err
    if type(id) == "number" then
      d, err = decisions.get(st(), id)
    elseif type(id) == "string" then
      d, err = decisions.get_ref(st(), id)
      if not d and not err then -- an event id: its latest decision (the last attempt)
        local res = decisions.query(st(), { event_id = id, limit = 1000 })
        d = res and res.decisions[#res.decisions]
      end
    else
      error("explain: id: a decision id or an event id expected", 2)
    end
    if not d then return nil, err or ("no decision " .. tostring(id)) end
    local view = { decision_id = d.ref, policy = d.policy, version = d.version, outcome = d.outcome,
      time = iso(d.time), duration = d.duration and format("%.2fms", d.duration * 1000),
      input = d.input, result = d.result, error = d.error, side_effects = d.side_effects }
    if d.event_id then
      view.event_id = d.event_id
      view.input = view.input or events.get(st(), d.event_id)
    end
    local cur = (ctx.policies or {})[d.policy]
    if cur and d.version and cur.version ~= d.version then
      view.note = "the policy has changed since: it now runs version " .. tostring(cur.version):sub(1, 12)
    end
    -- What that version was made of: its lib modules and merged configuration (redacted),
    -- the tenant's own when the input names a tenant that has one.
    local what = ctx.registry and d.version and ctx.registry:recall(d.policy, d.version)
    if what then
      local tenant = type(view.input) == "table" and view.input.tenant
      view.config = tenant and what.tenant_configs[tenant] or what.config
      view.libs = {}
      for _, l in ipairs(what.libs) do view.libs[#view.libs + 1] = l.name .. " " .. l.digest end
    elseif d.version then
      view.config = "(not known: version " .. tostring(d.version):sub(1, 12) .. " was loaded before this daemon started)"
    end
    return view
  end

  function h.dead_letters(q)
    local res, err = ctx.dispatch:dead_letters(q or {})
    if not res then return nil, err end
    for _, r in ipairs(res.dead_letters) do r.created = iso(r.created) end
    return M.rows(res.dead_letters, { "id", "policy", "event_id", "attempts", "created", "error" })
  end

  function h.requeue(id)
    admin("requeue")
    if tonumber(id) == nil then error("requeue: id: a dead letter id expected", 2) end
    return ctx.dispatch:requeue(tonumber(id))
  end

  -- kv(ns): the store's kv namespace; read-only sessions get get/list only.
  function h.kv(ns)
    if type(ns) ~= "string" or ns == "" then error("kv: ns: non-empty string expected", 2) end
    local n = kv.ns(st(), ns)
    if session.role == "admin" then return n end
    return setmetatable({}, { __index = {
      get = function(_, ...) return n:get(...) end,
      list = function(_, ...) return n:list(...) end,
      put = function() admin("kv:put") end,
      delete = function() admin("kv:delete") end,
    }, __tostring = function() return tostring(n) .. " (read-only)" end })
  end

  function h.timers(opts)
    local list, err = timers.pending(st(), opts or {})
    if not list then return nil, err end
    local rows = {}
    for i, t in ipairs(list) do
      rows[i] = { id = t.id, due_at = iso(t.due_at), ["in"] = M.human_duration(max(0, t.due_at - time.now())),
        event = t.event and t.event.type or nil }
    end
    return M.rows(rows, { "id", "due_at", "in", "event" })
  end

  function h.reload()
    admin("reload")
    return outside(ctx.registry.reload, ctx.registry, "REPL", { config = true })
  end

  function h.rollback(name, version)
    admin("rollback")
    if type(name) ~= "string" then error("rollback: name: string expected", 2) end
    return outside(ctx.registry.rollback, ctx.registry, name, version)
  end

  function h.audit(f)
    local res, err = audit.list(st(), f or {})
    if not res then return nil, err end
    for _, r in ipairs(res.entries) do r.time = iso(r.time) end
    return M.rows(res.entries, { "id", "time", "uid", "role", "session", "outcome", "command" })
  end

  function h.profile(seconds, opts)
    return require("steward.runtime.repl.profile").run(seconds, opts, ctx.cfg.policies,
      function(closer) session:track(closer) end)
  end

  -- ---- rollouts (steward.deploy.rollout, docs/deploy/rollouts.md) ----
  -- Reads come from the rollouts' rows; promote/abort/retry are rollout.command events that the
  -- service's rollout policy handles in order, as the HTTP API's are.
  local rs_mod = function() return require "steward.deploy.rollout_store" end
  local function by() return "repl:" .. tostring(session.uid) end
  local function ro_row(r)
    return { id = r.id, service = r.service, revision = r.revision, stable = r.stable, phase = r.phase,
      step = r.step .. "/" .. #(r.plan or {}), weight = r.weight, message = r.message,
      age = M.human_duration(time.now() - (r.created_at or time.now())) }
  end
  local rollouts_h = {}
  function rollouts_h.list(f)
    if f ~= nil and type(f) ~= "table" then error("rollouts.list: filter: table expected", 2) end
    local list, err = rs_mod().list(st(), f or {})
    if not list then return nil, err end
    local rows = {}
    for i, r in ipairs(list) do rows[i] = ro_row(r) end
    return M.rows(rows, { "id", "service", "revision", "stable", "phase", "step", "weight", "age", "message" })
  end
  function rollouts_h.show(id)
    if type(id) ~= "string" then error("rollouts.show: id: string expected", 2) end
    local r, err = rs_mod().get(st(), id)
    if not r then return nil, err or ("no rollout " .. id) end
    local hist = assert(rs_mod().history(st(), id))
    local rows = {}
    for n, e in ipairs(hist) do rows[n] = { at = iso(e.at), kind = e.kind, step = e.step, actor = e.actor, what = compact(e.data, 80) } end
    local view = ro_row(r)
    view.plan, view.runs, view.background, view.migrations = r.plan, r.runs, r.bg, r.migrations
    view.rollback_blocked_by = r.incompatible
    view.history = M.rows(rows, { "at", "kind", "step", "actor", "what" })
    return view
  end
  local function ro_command(action, id, opts)
    admin(action)
    if type(id) ~= "string" then error(action .. ": id: string expected", 3) end
    if opts ~= nil and type(opts) ~= "table" then error(action .. ": opts: table expected", 3) end
    opts = opts or {}
    local r, err = rs_mod().get(st(), id)
    if not r then return nil, err or ("no rollout " .. id) end
    local res
    res, err = events.append(st(), { { type = "rollout.command", tenant = r.tenant, source = "repl",
      data = { rollout = r.id, service = r.service, action = action, full = opts.full == true or nil,
               force = opts.force == true or nil, by = by() } } })
    if not res then return nil, err end
    return { rollout = r.id, action = action, event_id = res.ids[1], phase_before = r.phase, step_before = r.step }
  end
  function rollouts_h.retry(id) return ro_command("retry", id) end
  h.rollouts = setmetatable(rollouts_h, { __call = function(_, f) return rollouts_h.list(f) end })
  function h.promote(id, opts) return ro_command("promote", id, opts) end
  function h.abort(id, opts) return ro_command("abort", id, opts) end

  -- ---- incidents (steward.alerting.incidents, docs/incidents.md) ----
  local inc_mod = function() return require "steward.alerting.incidents" end
  local function actor() return "repl:" .. tostring(session.uid) end
  local function inc_row(i)
    return { id = i.id, state = i.state, service = i.service, severity = i.severity, title = i.title,
      assignee = i.assignee, created = iso(i.created_at),
      age = M.human_duration(time.now() - i.created_at), acked_by = i.acked_by }
  end
  local function changed(i, err, cur)
    if i then return inc_row(i) end
    return nil, cur and (tostring(err) .. " (state " .. cur.state .. ")") or err
  end
  local incidents_h = {}
  function incidents_h.list(f)
    if f ~= nil and type(f) ~= "table" then error("incidents.list: filter: table expected", 2) end
    local res, err = inc_mod().list(st(), f or {})
    if not res then return nil, err end
    local rows = {}
    for i, x in ipairs(res.incidents) do rows[i] = inc_row(x) end
    return M.rows(rows, { "id", "state", "service", "severity", "title", "assignee", "age", "acked_by" })
  end
  function incidents_h.show(id)
    if type(id) ~= "string" then error("incidents.show: id: string expected", 2) end
    local i, err = inc_mod().get(st(), id)
    if not i then return nil, err or ("no incident " .. id) end
    local tl = assert(inc_mod().timeline(st(), id))
    local rows = {}
    for n, e in ipairs(tl) do
      local d = e.data or {}
      local what = d.message or d.state or d.assignee and ("assignee " .. d.assignee) or nil
      if e.kind == "notification" then
        what = format("step %s %s via %s: %s%s", tostring(d.step or "-"), tostring(d.target), tostring(d.channel),
          tostring(d.outcome), d.error and (" (" .. d.error .. ")") or "")
      elseif e.kind == "notification_attempt" then
        what = format("step %s %s via %s: attempt %s %s%s%s", tostring(d.step or "-"), tostring(d.target),
          tostring(d.channel), tostring(d.attempt), tostring(d.outcome), d.error and (" (" .. d.error .. ")") or "",
          d.retry_in and format(", next in %.1fs", d.retry_in) or "")
      end
      rows[n] = { at = iso(e.at), kind = e.kind, actor = e.actor, what = what or compact(d, 80) }
    end
    local view = inc_row(i)
    view.key, view.escalation, view.summary, view.labels = i.key, i.escalation, i.summary, i.labels
    view.resolved_by, view.revision = i.resolved_by, i.revision
    view.timeline = M.rows(rows, { "at", "kind", "actor", "what" })
    return view
  end
  function incidents_h.ack(id)
    admin("incidents.ack")
    if type(id) ~= "string" then error("incidents.ack: id: string expected", 2) end
    return changed(inc_mod().ack(st(), id, actor()))
  end
  function incidents_h.resolve(id)
    admin("incidents.resolve")
    if type(id) ~= "string" then error("incidents.resolve: id: string expected", 2) end
    return changed(inc_mod().resolve(st(), id, actor()))
  end
  function incidents_h.reassign(id, user)
    admin("incidents.reassign")
    if type(id) ~= "string" then error("incidents.reassign: id: string expected", 2) end
    if type(user) ~= "string" then error("incidents.reassign: user: string expected", 2) end
    return changed(inc_mod().reassign(st(), id, user, actor()))
  end
  function incidents_h.trigger(spec)
    admin("incidents.trigger")
    if type(spec) ~= "table" then error("incidents.trigger: spec: table expected", 2) end
    local s = {}
    for k, v in pairs(spec) do s[k] = v end
    s.source = s.source or actor()
    local i, created = inc_mod().trigger(st(), s)
    if not i then return nil, created end
    local row = inc_row(i)
    row.created_new = created
    return row
  end
  h.incidents = setmetatable(incidents_h, { __call = function(_, f) return incidents_h.list(f) end })

  function h.notifications(q)
    if q ~= nil and type(q) ~= "table" then error("notifications: filter: table expected", 2) end
    local f = { store = st() }
    for k, v in pairs(q or {}) do f[k] = v end
    local rows = require("steward.notify").history(f)
    local out = {}
    for i, r in ipairs(rows or {}) do
      out[i] = { id = r.id, channel = r.channel, key = r.key, status = r.status, attempts = r.attempts,
        response = r.response_status, created = iso(r.created), summary = r.summary, error = r.last_error }
    end
    return M.rows(out, { "id", "created", "channel", "status", "attempts", "response", "key", "summary", "error" })
  end

  -- ---- approvals (steward.deploy.approvals, docs/deploy/approvals.md) ----
  local apr_mod = function() return require "steward.deploy.approvals" end
  local function apr_row(a)
    return { id = a.id, state = a.state, subject = a.subject, step = a.step, approvers = table.concat(a.approvers or {}, ","),
      created = iso(a.created_at), expires = iso(a.expires_at), decided_by = a.decided_by, via = a.decided_via,
      comment = a.comment }
  end
  function h.approvals(f)
    if f ~= nil and type(f) ~= "table" then error("approvals: filter: table expected", 2) end
    local q = {}
    for k, v in pairs(f or { state = "pending" }) do q[k] = v end
    local list, err = apr_mod().list(st(), q)
    if not list then return nil, err end
    local rows = {}
    for i, a in ipairs(list) do rows[i] = apr_row(a) end
    return M.rows(rows, { "id", "state", "subject", "step", "approvers", "expires", "decided_by", "via", "comment" })
  end
  local function decide(what, id, comment)
    admin(what)
    if type(id) ~= "string" then error(what .. ": id: string expected", 3) end
    if comment ~= nil and type(comment) ~= "string" then error(what .. ": comment: string expected", 3) end
    local a, err, cur = apr_mod().decide(st(), id, what, { actor = actor(), role = session.role or "admin", via = "repl",
      comment = comment, uid = session.uid, session = session.id, audit_actor = actor() })
    if a then return apr_row(a) end
    return nil, cur and (tostring(err) .. " (state " .. cur.state .. ")") or err
  end
  function h.approve(id, comment) return decide("approve", id, comment) end
  function h.deny(id, comment) return decide("deny", id, comment) end
  -- Supervised services (steward.deploy.supervisor, docs/deploy/services.md).
  function h.services(name)
    if name ~= nil and type(name) ~= "string" then error("services: name: string expected", 2) end
    local list = require("steward.deploy.supervisor").status()
    local rows = {}
    for _, svc in ipairs(list) do
      if name == nil or svc.name == name then
        for _, i in ipairs(svc.instances) do
          rows[#rows + 1] = { service = svc.name, revision = i.revision, index = i.index, state = i.state,
            ready = i.ready, pid = i.pid, port = i.port, restarts = i.restarts, started = iso(i.started_at),
            reason = i.reason }
        end
      end
    end
    return M.rows(rows, { "service", "revision", "index", "state", "ready", "pid", "port", "restarts", "started", "reason" })
  end

  -- Autoscalers (steward.scaling, docs/scaling/autoscaler.md): one row each; with a service,
  -- its whole view (spec, last decision, state).
  function h.scaling(service)
    if service ~= nil and type(service) ~= "string" then error("scaling: service: string expected", 2) end
    local list = require("steward.scaling.view").all(ctx.policies, st(), service)
    if service then return list[1] or nil, list[1] == nil and ("no autoscaler for service " .. service) or nil end
    local rows = {}
    for _, a in ipairs(list) do
      local last = a.last_decision or {}
      rows[#rows + 1] = { service = a.service, revision = a.revision, current = a.current, desired = a.desired,
        status = a.status, last = last.held or (last.current and format("%s -> %s %s", tostring(last.current),
          tostring(last.desired), last.limited_by and ("(" .. last.limited_by .. ")") or "")),
        reason = last.reason, decision_id = last.decision_id }
    end
    return M.rows(rows, { "service", "revision", "current", "desired", "status", "last", "reason", "decision_id" })
  end

  -- ---- capacity and cost (steward.capacity, docs/scaling/capacity.md, docs/scaling/cost.md; h5) ----
  local cap_mod = function() return require "steward.capacity" end
  local function days(v) return v and format("%.1f", v) or nil end
  function h.capacity(service)
    if service ~= nil and type(service) ~= "string" then error("capacity: service: string expected", 2) end
    local list, err = cap_mod().report(service)
    if not list then return nil, err end
    if service then list = { list } end
    local rows = {}
    for i, r in ipairs(list) do
      rows[i] = { service = r.service, metric = r.metric, current = r.current and format("%.4g", r.current) or nil,
        limit = format("%.4g", r.limit), days = r.horizon and days(r.horizon.days) or nil,
        interval = r.horizon and format("%s-%s", days(r.horizon.low) or "?", days(r.horizon.high) or "?") or nil,
        lead = days(r.lead_time_days), model = r.model,
        mape = r.error and r.error.mape and format("%.1f%%", r.error.mape) or nil, status = r.status, reason = r.reason }
    end
    return M.rows(rows, { "service", "metric", "current", "limit", "days", "interval", "lead", "model", "mape", "status" })
  end
  function h.cost(o)
    if o ~= nil and type(o) ~= "table" then error("cost: options: table expected ({from=, to=, by=})", 2) end
    local c, err = cap_mod().cost(o)
    if not c then return nil, err end
    local rows = {}
    for i, r in ipairs(c.rows) do
      rows[i] = { key = r.key, tenant = r.tenant, instance_hours = r.instance_hours, amount = r.amount .. " " .. c.currency,
        by_price = r.by_price }
    end
    rows[#rows + 1] = { key = "total", amount = c.total .. " " .. c.currency }
    return M.rows(rows, { "key", "tenant", "instance_hours", "amount", "by_price" })
  end
  function h.defer(o)
    admin("defer")
    if type(o) ~= "table" then error("defer: options: table expected ({name=, duration=, deadline=, event=})", 2) end
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    c.actor, c.source = actor(), "repl"
    local r, err = cap_mod().defer(c)
    if not r then return nil, err end
    return { name = r.name, start = iso(r.start), ends = r.ends and iso(r.ends) or nil, price = r.price,
      amount = r.amount, now_amount = r.now_amount, currency = r.currency, existing = r.existing }
  end
  function h.deferred()
    local list, err = cap_mod().deferred()
    if not list then return nil, err end
    local rows = {}
    for i, j in ipairs(list) do rows[i] = { name = j.name, start = iso(j.start), event = j.event and j.event.type } end
    return M.rows(rows, { "name", "start", "event" })
  end


  -- ---- customer success (steward.success, docs/customer-success.md; h11) ----
  -- health() each tenant's latest score; health("acme") its history, newest first
  function h.health(tenant)
    if tenant ~= nil and type(tenant) ~= "string" then error("health: tenant: string expected", 2) end
    local hm = require "steward.success.health"
    local list, err
    if tenant then list, err = hm.history(st(), tenant, 20) else list, err = hm.latest(st()) end
    if not list then return nil, err end
    local rows = {}
    for i, r in ipairs(list) do
      local parts = {}
      for name, p in pairs(r.parts) do parts[#parts + 1] = format("%s=%s", name, tostring(p.points)) end
      table.sort(parts)
      rows[i] = { tenant = r.tenant, at = iso(r.at), score = r.score, parts = concat(parts, " ") }
    end
    return M.rows(rows, { "tenant", "at", "score", "parts" })
  end
  -- tickets{tenant=, state=, queue=, limit=}: tickets, newest first
  function h.tickets(f)
    if f ~= nil and type(f) ~= "table" then error("tickets: filter: table expected", 2) end
    local list, err = require("steward.success.tickets").list(st(), f or {})
    if not list then return nil, err end
    local rows = {}
    for i, t in ipairs(list) do
      rows[i] = { id = t.id, tenant = t.tenant, state = t.state, queue = t.queue, severity = t.severity,
        subject = t.subject, breached = t.breached or nil, age = M.human_duration(time.now() - t.created) }
    end
    return M.rows(rows, { "id", "tenant", "state", "queue", "severity", "subject", "breached", "age" })
  end

  require("steward.tenants.repl").install(h, { rows = M.rows, admin = admin }) -- docs/tenants.md
  require("steward.billing.repl").install(h, { rows = M.rows, admin = admin, st = st }) -- docs/billing/subscriptions.md
  return h
end

return M
