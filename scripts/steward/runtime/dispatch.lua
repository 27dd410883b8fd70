-- The dispatcher: hands committed events to the policies whose `on` patterns match them.
-- Per (policy, key) events run one at a time in log order; different keys run concurrently
-- up to a cap. Handling is at-least-once: a completion record per (policy, seq) is written
-- after the handler succeeds, so after a crash only unfinished handlings run again. A
-- handler that keeps failing is retried with exponential backoff and jitter, then parked as
-- a dead letter with its error.
-- In cluster mode (several daemons on one PostgreSQL, steward.runtime.cluster) the cluster module
-- decides which (policy, key) this instance may handle: keys hash into buckets, each bucket
-- leased by one instance; events reach the queues through D:offer from the cluster's log
-- scanner instead of straight from notify.
local task = require "steward.task"
local time = require "steward.time"
local log = require "steward.log"
local json = require "steward.json"
local store = require "steward.runtime.store"
local events = require "steward.runtime.events"
local metrics = require "steward.metrics"
local policy_ctx = require "steward.runtime.policy_ctx"
local guard = require "steward.runtime.guard"
local taps = require "steward.runtime.taps"
local effects = require "steward.runtime.effects"
local emit = require "steward.runtime.policy.emit"
local shutdown = require "steward.runtime.shutdown"
local fairness = require "steward.tenants.fairness"

local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall
local random, min, floor = math.random, math.min, math.floor
local format = string.format

local M = {}

local COMMON = [[
  CREATE TABLE handled (
    policy TEXT NOT NULL, seq BIGINT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, finished DOUBLE PRECISION NOT NULL, PRIMARY KEY (policy, seq));
  CREATE TABLE dispatch_cursor (policy TEXT PRIMARY KEY, seq BIGINT NOT NULL);
  CREATE INDEX dead_letters_open ON dead_letters (requeued, id);
]]
store.register_migrations("dispatch", {
  { version = 1, sql = {
    sqlite = [[CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT, policy TEXT NOT NULL, seq BIGINT NOT NULL,
        event_id TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,
        created DOUBLE PRECISION NOT NULL, requeued DOUBLE PRECISION);]] .. COMMON,
    postgres = [[CREATE TABLE dead_letters (
        id BIGSERIAL PRIMARY KEY, policy TEXT NOT NULL, seq BIGINT NOT NULL,
        event_id TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,
        created DOUBLE PRECISION NOT NULL, requeued DOUBLE PRECISION);]] .. COMMON,
  } },
})

local m_runs = metrics.counter("steward_handler_runs_total", "Handler runs by policy and outcome", { "policy", "outcome" })
local m_latency = metrics.histogram("steward_handler_duration_seconds", "Handler run time", { "policy" })
-- (a batch run, handle_batch, is one run of many events: this counts the events)
local m_handled = metrics.counter("steward_handled_events_total", "Events whose handling completed, by policy", { "policy" })
local m_dead = metrics.counter("steward_dead_letters_total", "Events parked as dead letters", { "policy" })
local m_queue = metrics.gauge("steward_dispatch_queue_depth", "Events waiting for a handler", {})
local m_active = metrics.gauge("steward_dispatch_active_keys", "Keys being handled now", {})

local D = {}
D.__index = D

-- A backlog (handlers slower than ingest) must not hold every event's body in memory: past
-- this many queued events, new ones are queued as {seq, id} and read back from the log when
-- their turn comes.
M.SPILL = 2000

local function own_budget(p) return p.budget or { name = p.name } end

-- new{store, concurrency, handler_timeout, retry_attempts, retry_base, retry_max, spill,
--     tenant_weight, tenant_budget}: tenant_weight(tenant) -> the tenant's share of the runners
-- when keys wait for one (default 1 each); tenant_budget(p) -> the budget table guard.run
-- gets for policy p (default p.budget) — steward.tenants.limits in the daemon.
function M.new(opts)
  local d = setmetatable({
    st = opts.store,
    dlog = opts.decision_log,
    cap = opts.concurrency or 256,
    handler_timeout = opts.handler_timeout or 30,
    attempts = opts.retry_attempts or 5,
    retry_base = opts.retry_base or 0.2,
    retry_max = opts.retry_max or 60,
    policies = {},     -- name -> policy
    queues = {},       -- policy name -> key -> { items, head, tail, running, key }
    -- Keys waiting for a free runner: a FIFO per tenant, served by deficit round robin
    -- (steward.tenants.fairness), so one tenant's thousands of keys cannot make another
    -- tenant's key wait behind all of them. Within a key, order is the key queue's own.
    ready = fairness.new(opts.tenant_weight),
    budget_of = opts.tenant_budget or own_budget,
    active = 0,        -- runners
    depth = 0,         -- events queued or running
    inflight = {},     -- policy -> { [seq] = true } (queued or running)
    high = {},         -- policy -> highest seq handed to it
    saved = {},        -- policy -> cursor last written
    done_buf = {},     -- completions not yet written
    unflushed = {},    -- "policy:seq" -> true: a completion not yet written (in done_buf)
    stopping = false,
    idle_waiters = {},
    running = {},      -- handler task -> true
    cluster = nil,     -- steward.runtime.cluster instance, in cluster mode
    health = opts.store_health, -- steward.runtime.store_health: while the store is down, handlers wait
    bucket_load = {},  -- bucket -> events queued or running (cluster mode)
    spill = opts.spill or M.SPILL, -- queued events held whole; past it only their seq and id
    held = {},         -- key queue -> policy: stopped at an event of a suspended tenant
  }, D)
  return d
end

function D:set_policies(list)
  self.policies = list
  for name in pairs(list) do
    self.queues[name] = self.queues[name] or {}
    self.inflight[name] = self.inflight[name] or {}
  end
end

local function backoff(d, attempt)
  local base = min(d.retry_max, d.retry_base * 2 ^ (attempt - 1))
  return base / 2 + random() * base / 2 -- "equal jitter": never less than half the step
end

-- Completion records are written in groups: one INSERT for every handling that ended in the
-- last few milliseconds. A crash before the write means those handlers run again, which
-- at-least-once allows; it never means an unfinished handler is taken for done.
-- Records that could not be written while the store was down are kept and written once it is
-- back (d.unflushed names them, so that a cluster rescan meanwhile does not queue those events
-- again, behind later events of their key).
local FLUSH_DELAY, FLUSH_ROWS = 0.005, 400

-- The dispatcher stops at drain(), or already when the daemon begins to stop (a handler's
-- back-off, its own or a notify channel's, then ends early; steward.runtime.shutdown).
local function stopping(d)
  if not d.stopping and shutdown.stopping() then d.stopping = true end
  return d.stopping
end

local function await_store(d)
  while d.health and not d.health.up and not d.stopping do time.sleep(0.25) end
end

-- flush_done(d) -> true, or false when some records were kept for another try.
local function flush_done(d)
  local keep = {}
  while #d.done_buf > 0 do
    local buf = d.done_buf
    d.done_buf = {}
    local now = time.now()
    for first = 1, #buf, FLUSH_ROWS do
      local last = min(first + FLUSH_ROWS - 1, #buf)
      local values, stmt, n = {}, { false }, 1
      for i = first, last do
        local r = buf[i]
        values[#values + 1] = format("($%d,$%d,'done',$%d,$%d)", n, n + 1, n + 2, n + 3)
        stmt[n + 1], stmt[n + 2], stmt[n + 3], stmt[n + 4] = r[1], r[2], r[3], now
        n = n + 4
      end
      stmt[1] = "INSERT INTO handled (policy, seq, status, attempts, finished) VALUES " ..
        table.concat(values, ",") ..
        " ON CONFLICT (policy, seq) DO UPDATE SET status = 'done', attempts = excluded.attempts, finished = excluded.finished"
      local ok, err = d.st:batch({ stmt })
      local kept = not ok and d.health and not d.health.up and not d.stopping
      if kept then
        for i = first, last do keep[#keep + 1] = buf[i] end
        log.warn("cannot record completions yet; they are written when the store is back",
          { count = last - first + 1, error = err })
      else
        if not ok then log.error("cannot record completions", { count = last - first + 1, error = err }) end
        for i = first, last do d.unflushed[buf[i][1] .. ":" .. buf[i][2]] = nil end
      end
    end
  end
  if #keep == 0 then return true end
  d.done_buf = keep
  return false
end

local function record_done(d, p, ev, attempts)
  m_handled:inc(1, p.name)
  local buf = d.done_buf
  buf[#buf + 1] = { p.name, ev.seq, attempts }
  d.unflushed[p.name .. ":" .. ev.seq] = true
  if d.flushing then return end
  d.flushing = task.spawn({ name = "dispatch.flush" }, function()
    time.sleep(FLUSH_DELAY)
    while not flush_done(d) do
      await_store(d)
      if d.stopping then break end -- drain() makes the last attempt
    end
    d.flushing = nil
  end)
end

local function park(d, p, ev, err, attempts)
  local ok, serr = d.st:batch({
    { "INSERT INTO dead_letters (policy, seq, event_id, error, attempts, created) VALUES ($1, $2, $3, $4, $5, $6)",
      p.name, ev.seq, ev.id, tostring(err), attempts, time.now() },
    { "INSERT INTO handled (policy, seq, status, attempts, finished) VALUES ($1, $2, 'dead', $3, $4) " ..
      "ON CONFLICT (policy, seq) DO UPDATE SET status = 'dead', attempts = $3, finished = $4",
      p.name, ev.seq, attempts, time.now() },
  })
  if not ok then log.error("cannot park a dead letter", { policy = p.name, seq = ev.seq, error = serr }) end
  m_dead:inc(1, p.name)
  log.warn("dead letter", { policy = p.name, tenant = ev.tenant, event = ev.id, seq = ev.seq, attempts = attempts, error = tostring(err) })
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  local mt = getmetatable(v)
  if mt then setmetatable(c, mt) end -- json.array marks
  return c
end

local function copy_event(ev)
  return { id = ev.id, type = ev.type, tenant = ev.tenant, time = ev.time, source = ev.source,
           seq = ev.seq, received = ev.received, depth = ev.depth, data = deep_copy(ev.data) }
end

-- The task body: guard.run returns true, results... or false, err, kind; a budget overrun
-- is reported as the handler's failure.
local function guard_run(budget, p, ev, ctx, fx)
  -- The handler's HTTP calls, mails, timers and events go to its decision (steward.runtime.effects).
  fx.list = effects.begin()
  -- emit.run_handler: what the handler emits is bounded and one deeper than ev.
  return guard.run(budget, emit.run_handler, p.handle, ev, ctx)
end

-- Runs one event through one policy, with retries; returns when it is done or dead, or false
-- when it was left unfinished because the dispatcher is stopping (it stays in flight, so the
-- shutdown's checkpoint keeps the cursor below it and it runs again after the restart).
-- While the store cannot be reached, a handler neither starts nor spends its retries: it
-- waits (the health probe notices the store's return within a second).
-- (bucket: cluster mode.) A bucket lost while its handler waited for the store (the lease
-- ran out meanwhile) is no longer ours to run: the event is left, unrecorded, to the bucket's
-- next owner, which rescans from our mark, still below it (possibly this instance again).
local function handle_one(d, p, ev, bucket)
  local attempt = 0
  while true do
    await_store(d)
    if d.stopping then return false end
    if bucket and not d.cluster:may_run(bucket) then return end
    attempt = attempt + 1
    local t0 = time.monotonic()
    local ctx = policy_ctx.new(p, { event_id = ev.id, tenant = ev.tenant, attempt = attempt })
    local fx = {}
    -- Each run gets its own copy of the event: a policy cannot change what the next sees.
    -- Policy code runs under its CPU and memory budgets (steward.runtime.guard); handler_timeout
    -- bounds the whole run, waits included.
    local h = task.spawn({ name = p.name, timeout = p.timeout or d.handler_timeout }, guard_run, d.budget_of(p), p, copy_event(ev), ctx, fx)
    d.running[h] = true -- drain cancels what is still running at the shutdown deadline
    local joined, gok, gerr, kind = h:join()
    d.running[h] = nil
    local ok, err = true, nil
    if not joined then
      ok, err = false, gok -- the task failed outside the guard, timed out or was cancelled
      if err == "timeout" then kind = "timeout" end
    elseif gok == false then
      ok, err = false, gerr -- the handler raised, or went over its CPU or memory budget
    end
    local outcome = ok and "ok" or ((kind == "cpu" or kind == "timeout") and "timeout" or "error")
    local took = time.monotonic() - t0
    m_latency:observe(took, p.name)
    if d.dlog then
      d.dlog:record({ policy = p.name, version = p.version, tenant = ev.tenant, event_id = ev.id, duration = took,
        outcome = outcome, error = not ok and err or nil,
        side_effects = fx.list and #fx.list > 0 and fx.list or nil })
    end
    if ok then
      m_runs:inc(1, p.name, "ok")
      record_done(d, p, ev, attempt)
      return
    end
    m_runs:inc(1, p.name, outcome)
    if stopping(d) then return false end -- not recorded: runs again after the restart
    local store_down = d.health and not d.health.up
    if store_down then
      -- It failed while the store was down (likely because of it): not counted as an attempt;
      -- the loop waits for the store, then runs it again.
      attempt = attempt - 1
      log.info("handler failed while the store is unavailable; it runs again when the store is back",
        { policy = p.name, event = ev.id, error = tostring(err):match("^[^\n]*") })
    elseif attempt >= d.attempts then
      park(d, p, ev, err, attempt)
      return
    else
      local wait = backoff(d, attempt)
      log.info("handler failed, will retry", { policy = p.name, tenant = ev.tenant, event = ev.id, attempt = attempt,
        retry_in = format("%.3fs", wait), error = tostring(err):match("^[^\n]*") })
      -- ends early when the daemon stops: the event is not recorded and runs after the restart
      shutdown.sleep(wait)
    end
    if stopping(d) then return false end
  end
end

-- A policy with `handle_batch` gets the queued events of one key together, in log order, as
-- ONE handler run (one decision-log row naming every event, one completion record each): a
-- handler that journals its state can then write many events' changes in one store unit.
-- The run's effects are all or nothing for dispatch: if it fails, none of its events is
-- recorded and each runs again alone through `handle`, with the usual retries and dead
-- letters, so one bad event cannot hold back the others. Returns true when every event is
-- done, false when the dispatcher stops first, or a list {[i] = finished} after the
-- one-by-one fallback.
local function handle_batch(d, p, list, bucket)
  await_store(d)
  if d.stopping then return false end
  if bucket and not d.cluster:may_run(bucket) then return true end
  local t0 = time.monotonic()
  local first = list[1]
  local ctx = policy_ctx.new(p, { event_id = first.id, tenant = first.tenant, attempt = 1 })
  local fx, copies, ids, depth = {}, {}, {}, 0
  for i, ev in ipairs(list) do
    copies[i] = copy_event(ev)
    ids[i] = ev.id
    if type(ev.depth) == "number" and ev.depth > depth then depth = ev.depth end
  end
  -- emit.run_handler learns the run's depth from its event: the deepest of the batch.
  local carrier = { depth = depth }
  local function run(_, c) return p.handle_batch(copies, c) end
  local h = task.spawn({ name = p.name, timeout = p.timeout or d.handler_timeout }, function()
    fx.list = effects.begin()
    return guard.run(d.budget_of(p), emit.run_handler, run, carrier, ctx)
  end)
  d.running[h] = true
  local joined, gok, gerr, kind = h:join()
  d.running[h] = nil
  local ok, err = joined and gok ~= false, nil
  if not joined then err = gok; if err == "timeout" then kind = "timeout" end
  elseif gok == false then err = gerr end
  local outcome = ok and "ok" or ((kind == "cpu" or kind == "timeout") and "timeout" or "error")
  local took = time.monotonic() - t0
  m_latency:observe(took, p.name)
  if d.dlog then
    d.dlog:record({ policy = p.name, version = p.version, tenant = first.tenant, event_id = first.id,
      input = { batch = ids }, duration = took, outcome = outcome, error = not ok and err or nil,
      side_effects = fx.list and #fx.list > 0 and fx.list or nil })
  end
  m_runs:inc(1, p.name, outcome)
  if ok then
    for _, ev in ipairs(list) do record_done(d, p, ev, 1) end
    return true
  end
  if stopping(d) then return false end
  log.info("batch run failed; its events run one at a time", { policy = p.name, events = #list,
    error = tostring(err):match("^[^\n]*") })
  local finished = {}
  for i, ev in ipairs(list) do
    if d.stopping then break end
    finished[i] = handle_one(d, p, ev, bucket) ~= false
  end
  return finished
end

-- The whole event of a spilled queue entry, from the log (waiting while the store is down).
local function unspill(d, stub)
  while true do
    await_store(d)
    local ev, err = events.get(d.st, stub.id)
    if ev then return ev end
    if err == nil then
      -- Not in the log any more: nothing to run; the entry still completes in order.
      log.warn("a queued event is no longer in the log; skipped", { event = stub.id, seq = stub.seq })
      return { seq = stub.seq, id = stub.id, type = "", missing = true }
    end
    log.warn("cannot read a queued event back; retrying", { event = stub.id, error = tostring(err) })
    time.sleep(1)
    if d.stopping then return { seq = stub.seq, id = stub.id, type = "", missing = true } end
  end
end

local function wake_idle(d)
  if d.depth == 0 then
    for i, w in ipairs(d.idle_waiters) do d.idle_waiters[i] = nil; w:cancel("idle") end
  end
end

-- An emptied key queue is dropped (with key = ev.id every event has its own key: kept, they
-- grew the heap by one table per event). A later event of the key makes a new one.
local function release_queue(d, p, q)
  if q.head <= q.tail then return end
  local qs = d.queues[p.name]
  if qs and qs[q.key] == q then qs[q.key] = nil end
end

-- A key waits for a runner in its tenant's line (once: q.waiting).
local function ready_push(d, p, q)
  if q.waiting then return end
  q.waiting = true
  d.ready:push(q.tenant, { p = p, q = q })
end

-- The next key that waits for a runner (marked running), or nil. An entry whose queue was
-- drained meanwhile, or that another runner took, is skipped.
local function next_ready(d)
  while true do
    local e = d.ready:pop()
    if not e then return nil end
    e.q.waiting = false
    if e.q.head <= e.q.tail and not e.q.running then
      e.q.running = true
      return e.p, e.q
    end
  end
end

-- A suspended tenant's events are held (steward.tenants.suspension): the key's queue stops at
-- the first of them, unhandled and so unrecorded (the cursor stays below it; a restart queues
-- it again), and a watcher restarts the queue once the tenant is resumed, in log order.
local suspension = require "steward.tenants.suspension"

local function held_head(d, q)
  if not suspension.any() then return false end
  local ev = q.items[q.head]
  if ev.spilled then ev = unspill(d, ev); q.items[q.head] = ev end
  -- The tenant's lifecycle events (tenant.suspended, tenant.removed...) are about it, not its
  -- own: the platform's policies get them while it is suspended.
  return ev.tenant ~= nil and suspension.get(ev.tenant) ~= nil and ev.type:sub(1, 7) ~= "tenant."
end

-- Takes up to the policy's batch_max queued events of q (in log order) and runs them as one
-- batch; each event leaves the queue's accounting as handle_one's would.
local function run_batch(d, p, cur, q)
  local taken, run = {}, {}
  while q.head <= q.tail and #taken < cur.batch_max do
    if #taken > 0 and held_head(d, q) then break end
    local ev = q.items[q.head]
    q.items[q.head] = nil
    q.head = q.head + 1
    taken[#taken + 1] = ev
  end
  -- Spilled events come back from the log in one range read, not one read each.
  local lo, hi, want = nil, nil, {}
  for _, ev in ipairs(taken) do
    if ev.spilled then
      want[ev.seq] = true
      if not lo or ev.seq < lo then lo = ev.seq end
      if not hi or ev.seq > hi then hi = ev.seq end
    end
  end
  local back = {}
  if lo then
    local ok = pcall(function()
      for ev in events.replay(d.st, { from_seq = lo, to_seq = hi, page = 2000 }) do
        if want[ev.seq] then back[ev.seq] = ev end
      end
    end)
    if not ok then back = {} end -- unspill below retries each one
  end
  for i, ev in ipairs(taken) do
    if ev.spilled then
      ev = back[ev.seq] or unspill(d, ev)
      taken[i] = ev
    end
    if not ev.missing then run[#run + 1] = ev end
  end
  local res = true
  if #run > 0 and (not q.bucket or d.cluster:may_run(q.bucket)) then
    res = handle_batch(d, cur, run, q.bucket)
  end
  local done = {}
  if res == true then
    for _, ev in ipairs(taken) do done[ev.seq] = true end
  elseif res then
    for i, ev in ipairs(run) do if res[i] then done[ev.seq] = true end end
    for _, ev in ipairs(taken) do if ev.missing then done[ev.seq] = true end end
  else
    for _, ev in ipairs(taken) do if ev.missing then done[ev.seq] = true end end
  end
  for _, ev in ipairs(taken) do
    if done[ev.seq] then d.inflight[p.name][ev.seq] = nil end
    d.depth = d.depth - 1
    if q.bucket then d.bucket_load[q.bucket] = d.bucket_load[q.bucket] - 1 end
  end
  m_queue:set(d.depth)
end

-- Runs the next queued event of q alone.
local function run_next(d, p, cur, q)
  local ev = q.items[q.head]
  q.items[q.head] = nil
  q.head = q.head + 1
  if ev.spilled then ev = unspill(d, ev) end
  -- A bucket whose lease ran out may already be another instance's: its queued events
  -- are left to that owner, which rescans from before them.
  local finished = true
  if not ev.missing and (not q.bucket or d.cluster:may_run(q.bucket)) then
    finished = handle_one(d, cur, ev, q.bucket) ~= false
  end
  if finished then d.inflight[p.name][ev.seq] = nil end
  d.depth = d.depth - 1
  if q.bucket then d.bucket_load[q.bucket] = d.bucket_load[q.bucket] - 1 end
  m_queue:set(d.depth)
end

local runner

-- Gives key queue q a runner when one is free, else a place in its tenant's line.
local function start_queue(d, p, q)
  if d.active < d.cap then
    q.running = true
    d.active = d.active + 1
    m_active:set(d.active)
    task.spawn({ name = "dispatch" }, runner, d, p, q)
  else
    ready_push(d, p, q)
  end
end

local function watch_held(d)
  if d.held_watch then return end
  d.held_watch = true
  task.spawn({ name = "dispatch.held" }, function()
    while next(d.held) and not d.stopping do
      shutdown.sleep(0.2)
      local list = {} -- held_head may yield (a spilled event is read back): iterate a copy
      for q, p in pairs(d.held) do list[#list + 1] = { q = q, p = p } end
      for _, h in ipairs(list) do
        local q, p = h.q, h.p
        if q.head > q.tail or not held_head(d, q) then
          d.held[q] = nil
          if not q.running and q.head <= q.tail then start_queue(d, p, q) end
        end
      end
    end
    d.held_watch = false
  end)
end

-- A runner drains one key's queue, then takes the next ready key, until none is left. While
-- other keys wait for a runner, it hands its key back to the line after each run (its
-- tenant's turn in the round robin is then over), so a tenant whose keys hold every runner
-- cannot keep them: the key's next event still runs after this one, by whichever runner.
function runner(d, p, q)
  while q do
    local handed_back = false
    while q.head <= q.tail and not d.stopping do
      if held_head(d, q) then
        d.held[q] = p
        watch_held(d)
        break
      end
      local cur = d.policies[p.name] or p -- a reloaded policy handles the next event
      if cur.handle_batch and q.head < q.tail then
        run_batch(d, p, cur, q)
      else
        run_next(d, p, cur, q)
      end
      if q.head <= q.tail and d.ready:len() > 0 then handed_back = true; break end
    end
    q.running = false
    if handed_back and not d.stopping then ready_push(d, p, q) else release_queue(d, p, q) end
    if d.stopping then break end
    -- next ready key, if any
    p, q = next_ready(d)
  end
  d.active = d.active - 1
  m_active:set(d.active)
  wake_idle(d)
end

local function key_of(p, ev)
  local ok, k = pcall(p.key, ev)
  if not ok then
    log.warn("policy key function failed; using the empty key", { policy = p.name, error = tostring(k) })
    return ""
  end
  return k == nil and "" or tostring(k)
end

-- Queues a committed event (with seq) for one policy. (bucket, key: cluster mode.)
function D:enqueue(p, ev, bucket, key)
  local inflight = self.inflight[p.name]
  if inflight[ev.seq] then return end
  inflight[ev.seq] = true
  if (self.high[p.name] or 0) < ev.seq then self.high[p.name] = ev.seq end
  local qs = self.queues[p.name]
  key = key or key_of(p, ev)
  local q = qs[key]
  if not q then
    -- (tenant: whose line the key waits in for a runner; a tenant's policy is its tenant's)
    q = { items = {}, head = 1, tail = 0, running = false, bucket = bucket, key = key,
          tenant = p.tenant or ev.tenant or "" }
    qs[key] = q
  end
  if bucket then self.bucket_load[bucket] = (self.bucket_load[bucket] or 0) + 1 end
  q.tail = q.tail + 1
  if self.depth >= self.spill then ev = { seq = ev.seq, id = ev.id, spilled = true } end
  q.items[q.tail] = ev
  self.depth = self.depth + 1
  m_queue:set(self.depth)
  if not q.running then start_queue(self, p, q) end
end

-- A policy's `when(event)` filter, under its budgets; an error or a budget overrun counts
-- as "no" (logged), so a broken filter cannot stop dispatch.
local function wanted(d, p, ev)
  -- A tenant's policy sees its tenant's events only.
  if p.tenant and ev.tenant ~= p.tenant then return false end
  -- A policy's schedule slots are its own (steward.runtime.policies: the `schedule` field).
  if ev.type == "policy.schedule" and not (type(ev.data) == "table" and ev.data.policy == p.name) then return false end
  if not p.when then return true end
  local ok, yes, err = guard.run(d.budget_of(p), p.when, copy_event(ev))
  if not ok or (yes == false and err) then
    log.warn("policy when() failed; the event is skipped for it", { policy = p.name, event = ev.id, error = tostring(err or yes) })
    return false
  end
  return yes == true
end

-- wants(type) -> whether notify has anything to do with a committed event of this type: a
-- tap listens, the cluster scanner is poked, or a policy's `on` matches. (The C ingest path
-- builds event tables for notify only when it does.)
function D:wants(t)
  if self.cluster or taps.count("event") > 0 then return true end
  for _, p in pairs(self.policies) do
    if p.handle and p.matches(t) then return true end
  end
  return false
end

-- notify(list): events just committed, in seq order.
function D:notify(list)
  for _, ev in ipairs(list) do taps.publish("event", ev) end
  if self.stopping then return end
  if self.cluster then return self.cluster:poke() end -- the log scanner offers them
  for _, ev in ipairs(list) do
    if ev.seq then
      for _, p in pairs(self.policies) do
        if p.handle and p.matches(ev.type) and wanted(self, p, ev) then self:enqueue(p, ev) end
      end
    end
  end
end

-- offer(ev, takes, done): cluster mode. Queues ev for every policy that wants it and whose
-- (policy, key) falls in a bucket takes(bucket) accepts; done["policy:seq"] marks handlings
-- already recorded (by this instance or an earlier owner).
function D:offer(ev, takes, done)
  if self.stopping then return end
  local bucket_of = self.cluster.bucket_of
  for name, p in pairs(self.policies) do
    local id = name .. ":" .. ev.seq
    if p.handle and p.matches(ev.type) and not (done and done[id]) and not self.unflushed[id] then
      local key = key_of(p, ev)
      local b = bucket_of(name, key)
      if takes(b) and wanted(self, p, ev) then self:enqueue(p, ev, b, key) end
    end
  end
end

-- low_mark(high): every event at or below it that this instance took is finished.
function D:low_mark(high)
  local low = high
  for _, set in pairs(self.inflight) do
    for seq in pairs(set) do
      if seq - 1 < low then low = seq - 1 end
    end
  end
  return low
end

function D:set_cluster(c) self.cluster = c end

-- Where each policy's recovery scan starts: every event at or below it is handled.
function D:load_cursors()
  local rows, err = self.st:sql("SELECT policy, seq FROM dispatch_cursor")
  if not rows then return nil, err end
  local cursors = {}
  for _, r in ipairs(rows) do cursors[r.policy] = r.seq end
  return cursors
end

-- recover(): queue every event after each policy's cursor that has no completion record.
-- A policy seen for the first time starts at the current end of the log.
function D:recover()
  local cursors, err = self:load_cursors()
  if not cursors then return nil, err end
  local last = events.last_seq(self.st) or 0
  local total = 0
  for name, p in pairs(self.policies) do
    local from = cursors[name]
    if not from then
      local ok, cerr = self.st:sql("INSERT INTO dispatch_cursor (policy, seq) VALUES ($1, $2) " ..
        "ON CONFLICT (policy) DO NOTHING", name, last)
      if not ok then return nil, cerr end
      from = last
    end
    -- Cluster mode: each bucket's owner rescans when it takes the bucket (steward.runtime.cluster).
    if self.cluster then goto next_policy end
    local done = {}
    local rows, herr = self.st:sql("SELECT seq FROM handled WHERE policy = $1 AND seq > $2", name, from)
    if not rows then return nil, herr end
    for _, r in ipairs(rows) do done[r.seq] = true end
    for ev in events.replay(self.st, { from_seq = from + 1, to_seq = last }) do
      if p.handle and p.matches(ev.type) and not done[ev.seq] and wanted(self, p, ev) then
        self:enqueue(p, ev)
        total = total + 1
      end
    end
    self.high[name] = math.max(self.high[name] or 0, last)
    ::next_policy::
  end
  return total
end

-- Moves each policy's cursor up to just below its oldest unfinished event, so the next
-- recovery scans little, and completion records below it can be purged.
function D:checkpoint()
  if self.cluster then return true end -- the cluster's leader moves the cursors
  for name in pairs(self.policies) do
    local low
    for seq in pairs(self.inflight[name] or {}) do
      if not low or seq < low then low = seq end
    end
    local upto = low and (low - 1) or self.high[name]
    if upto and upto > (self.saved[name] or -1) then
      -- Completion records at or below the cursor are no longer needed by recovery.
      local ok, err = self.st:batch({
        { "UPDATE dispatch_cursor SET seq = $2 WHERE policy = $1 AND seq < $2", name, upto },
        { "DELETE FROM handled WHERE policy = $1 AND seq <= $2 AND status = 'done'", name, upto },
      })
      if not ok then return nil, err end
      self.saved[name] = upto
    end
  end
  return true
end

function D:stats()
  return { queued = self.depth, active = self.active, ready = self.ready:len() }
end

-- dead_letters{policy, limit, cursor} -> {dead_letters, next_cursor}
function D:dead_letters(q)
  q = q or {}
  local limit = math.min(tonumber(q.limit) or 100, 1000)
  local after = tonumber(q.cursor) or 0
  local sql = "SELECT d.id, d.policy, d.seq, d.event_id, d.error, d.attempts, d.created " ..
              "FROM dead_letters d WHERE d.requeued IS NULL AND d.id > $1"
  local args = { after }
  if q.policy then sql = sql .. " AND d.policy = $2"; args[2] = q.policy end
  if q.tenant then
    sql = sql .. " AND EXISTS (SELECT 1 FROM events e WHERE e.seq = d.seq AND e.tenant = $" .. (#args + 1) .. ")"
    args[#args + 1] = q.tenant
  end
  sql = sql .. " ORDER BY d.id LIMIT " .. floor(limit)
  local rows, err = self.st:sql(sql, unpack(args))
  if not rows then return nil, err end
  return { dead_letters = rows, next_cursor = #rows == limit and tostring(rows[#rows].id) or nil }
end

-- requeue(id [, tenant]) -> true, or nil, "not found"
function D:requeue(id, tenant)
  local rows, err = self.st:sql("SELECT id, policy, seq, event_id FROM dead_letters WHERE id = $1 AND requeued IS NULL", tonumber(id))
  if not rows then return nil, err end
  local dl = rows[1]
  if not dl then return nil, "not found" end
  local ev
  ev, err = events.get(self.st, dl.event_id)
  if not ev then return nil, err or "not found" end
  if tenant and ev.tenant ~= tenant then return nil, "not found" end
  local p = self.policies[dl.policy]
  if not p then return nil, "policy " .. dl.policy .. " is not loaded" end
  local ok
  ok, err = self.st:batch({
    { "UPDATE dead_letters SET requeued = $2 WHERE id = $1", dl.id, time.now() },
    { "DELETE FROM handled WHERE policy = $1 AND seq = $2", dl.policy, dl.seq },
  })
  if not ok then return nil, err end
  if self.cluster then return self.cluster:redo(dl.policy, dl.seq) end -- the key's owner runs it
  self:enqueue(p, ev)
  return true
end

local function wait_idle(d, deadline)
  while d.active > 0 and time.monotonic() < deadline do
    local w = task.spawn(function() time.sleep(0.05) end)
    d.idle_waiters[#d.idle_waiters + 1] = w
    w:join()
  end
end

-- drain(deadline) -> true, or false when handlers were still running at the deadline: stop
-- taking events; wait for running handlers until the deadline, then cancel the rest (not
-- recorded, they run again at the next start) so that none outlives the store.
function D:drain(timeout)
  self.stopping = true
  wait_idle(self, time.monotonic() + (timeout or 10))
  local drained = self.active == 0
  if not drained then
    for h in pairs(self.running) do h:cancel("shutdown") end
    wait_idle(self, time.monotonic() + 1) -- their runners record the cancelled runs and end
  end
  if self.flushing then self.flushing:join() end
  flush_done(self)
  return drained
end

return M
