-- steward.alerting.engine: the notification engine. Turns the alert.firing/alert.resolved
-- events of the Alertmanager API into notifications with Alertmanager 0.25's dispatch
-- semantics: routes, aggregation groups (group_wait / group_interval / repeat_interval), the
-- notification log, send_resolved, mute stages (inhibition, time intervals, silences,
-- maintenance, flapping) — plus correlation and repeat backoff. Group state lives in the store
-- and flushes are durable timers (`alerting.flush` events), so a restart loses and repeats
-- nothing. The engine expects ONE writer: every alert and flush event it handles must run
-- under the same dispatch key (the shipped policy uses the constant key "alerting"). Sends
-- leave that key: a flush commits them as `alerting.notify` events (an outbox), handled under
-- a key per group and integration, so a slow receiver delays only its own notifications.
local sutil = require "steward.runtime.store.util"
local config = require "steward.alerting.config"
local astore = require "steward.alerting.store"
local groups = require "steward.alerting.engine.groups"
local flush = require "steward.alerting.engine.flush"
local flap = require "steward.alerting.engine.flap"
local correlate = require "steward.alerting.engine.correlate"
local util = require "steward.alerting.engine.util"
local journal = require "steward.alerting.engine.journal"
local timers = require "steward.runtime.store.timers"
require "steward.alerting.schema"
require "steward.alerting.engine.schema"

local type, ipairs, pairs, tostring, pcall, error, setmetatable, max, format =
  type, ipairs, pairs, tostring, pcall, error, setmetatable, math.max, string.format

local M = {}

M.FLUSH_EVENT = "alerting.flush"
M.NOTIFY_EVENT = flush.NOTIFY_EVENT
M.RETENTION = 120 * 3600

local Engine = {}
Engine.__index = Engine

-- compile(cfg [, opts]) -> engine | nil, err. opts (for tests and embedding): store,
-- now = function, arm = function(delay, event, key) (arms flush timers itself instead of the
-- timer rows written with the group's state), channel = function(kind, opts),
-- incidents = module, log = logger.
function M.compile(cfg, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("engine.compile: opts: table expected, got " .. type(opts), 2) end
  local c, err = config.compile(cfg)
  if not c then return nil, err end
  local eng = setmetatable(c, Engine)
  eng.store = opts.store
  eng.now = opts.now or require("steward.time").now
  eng.arm = opts.arm
  eng.incidents = opts.incidents
  -- Sends go through the event log (an outbox) unless the caller wants them inline.
  eng.outbox = opts.outbox ~= false
  eng.logger = opts.log
  local make = opts.channel or function(kind, o) return require("steward.notify").channel(kind, o) end
  for name, ints in pairs(eng.receivers) do
    for i, integ in ipairs(ints) do
      if integ.kind ~= "incident" then
        local o = {}
        for k, v in pairs(integ.options) do o[k] = v end
        o.name = o.name or (name .. "/" .. i)
        -- A failing receiver retries a little here, then through the policy run's retries.
        if o.retries == nil then o.retries = 2 end
        if o.timeout == nil then o.timeout = 10 end
        -- A send claims its key for the lease; after a crash mid-send the notification goes
        -- out again once the lease ends (flush.send): 1m outlasts a send's retries and timeouts.
        if o.lease == nil then o.lease = "1m" end
        if integ.kind == "webhook" then
          o.receiver = o.receiver or name
          o.external_url = o.external_url or eng.external_url
        end
        local ok, ch = pcall(make, integ.kind, o)
        if not ok then
          return nil, integ.where .. ": " .. tostring(ch):gsub("^.-notify%.channel%(%w+%): ", "")
        end
        integ.channel = ch
      end
    end
  end
  return eng
end

function Engine:incidents_module()
  return self.incidents or require("steward.alerting.incidents")
end

function Engine:log(level, msg, fields)
  local l = self.logger or self.ctx_log or require("steward.log")
  l[level](msg, fields)
end

local function must(ok, err, what)
  if not ok then error("alerting engine: " .. what .. ": " .. tostring(err), 0) end
  return ok
end

-- like must, but false is a valid answer (not found)
local function found(v, err, what)
  if v == nil then error("alerting engine: " .. (what or "store") .. ": " .. tostring(err), 0) end
  return v
end

-- The next flush of g as a durable timer (an `alerting.flush` event at `at`, key derived from
-- the group, its epoch and flush number, so arming twice arms once). With the default arming
-- the timer row is written in the same store unit as the group's state (-> statement);
-- an injected opts.arm (tests) arms at once (-> nil).
function Engine:timer(g, gen, at, now)
  local key = format("alerting.flush:%s:%s:%d", g.id, g.epoch, gen)
  local ev = { type = M.FLUSH_EVENT, data = { group = g.id, epoch = g.epoch, gen = gen } }
  if self.arm then
    must(self.arm(max(0, at - now), ev, key), "cannot arm", "flush timer")
    return nil
  end
  return { "INSERT INTO timers (id, due_at, event, created) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    "k:" .. key, at, timers.check_event(ev, "alerting engine"), now }
end

-- Flushes g now: its changes and notifications go into the run's journal unit (tx) with the
-- next flush timer. A crash before the run's commit re-runs the flush (its notifications
-- deduplicated by their keys); after it, nothing is left to do.
function Engine:flush(tx, g, r, now, extra)
  local res = must(flush.run(self, tx, g, r, now, extra))
  journal.add(tx, self:timer(g, g.gen, res.next_flush, now))
  return res
end

local function parse_time(v)
  if type(v) == "number" then return v end
  if type(v) == "string" then return sutil.parse_rfc3339(v) end
end

-- insert(tx, alert, ev_id, now): the alert goes to each route it matches; a new group
-- waits group_wait, or flushes at once when the alert started more than group_wait ago
-- (aggrGroup.insert) — with group_wait 0 that is always, inline, without a timer.
function Engine:insert(tx, a, ev_id, now)
  local state = tx.state
  for _, r in ipairs(self.tree:match(a.labels)) do
    local gk = r:group_key(a.labels)
    local id = groups.id(r.id, gk)
    local g = state.groups[id]
    local immediate = r.group_wait == 0 or (a.starts_at ~= nil and a.starts_at + r.group_wait < now)
    if not g then
      -- the epoch comes from the event: a re-run of this handling makes the same group
      g = { id = id, group_key = gk, route_id = r.id, receiver = r.receiver, labels = r:group_labels(a.labels),
        created_at = now, epoch = util.hash(tostring(ev_id) .. "\0" .. id):sub(1, 8),
        next_flush = now + r.group_wait, gen = 0, flushed = false, members = { [a.fingerprint] = true } }
      state.groups[id] = g
      journal.add_member(tx, id, a.fingerprint)
      if immediate then
        self:flush(tx, g, r, now, a.fingerprint)
      else
        journal.add(tx, journal.group_statement(g))
        journal.add(tx, self:timer(g, 0, g.next_flush, now))
      end
    else
      if not g.members[a.fingerprint] then
        g.members[a.fingerprint] = true
        journal.add_member(tx, id, a.fingerprint)
      end
      if immediate and not g.flushed then self:flush(tx, g, r, now, a.fingerprint) end
    end
  end
end

function Engine:on_alert(tx, ev, now)
  local st = tx.st
  local d = ev.data or {}
  if type(d.labels) ~= "table" or type(d.fingerprint) ~= "string" then
    error("alerting engine: " .. tostring(ev.type) .. ": data.labels and data.fingerprint expected", 0)
  end
  local a = { fingerprint = d.fingerprint, labels = d.labels, starts_at = parse_time(d.startsAt) }
  local state = ev.type == "alert.firing" and "firing" or "resolved"
  if self.flap then
    local stmt = found(flap.record(st, self.flap, a.fingerprint, state, now))
    if stmt then
      local ok, err = st.db:batch({ stmt })
      must(ok, err, "flap record")
    end
  end
  if state == "firing" and #self.correlation > 0 then
    must(correlate.on_firing(self, st, a, now))
  end
  self:insert(tx, a, ev.id, now)
end

-- A flush timer: stale ones (a group flushed inline meanwhile, deleted, or re-created) do nothing.
function Engine:on_flush(tx, ev, now)
  local d = ev.data or {}
  local g = tx.state.groups[tostring(d.group)]
  if not g or g.epoch ~= d.epoch or g.gen ~= d.gen then return false end
  local r = self.tree:find(g.route_id)
  if not r or r.receiver ~= g.receiver then
    -- The configuration changed under the group: route its alerts again, as Alertmanager
    -- does on reload (the notification log keeps them from being repeated).
    local fps = journal.members(g)
    tx.state.groups[g.id] = nil
    for _, s in ipairs(journal.delete_group_statements(g.id)) do journal.add(tx, s) end
    local rows = #fps > 0 and must(astore.get(tx.st, fps)) or {}
    for _, fp in ipairs(fps) do
      local row = rows[fp]
      if row then self:insert(tx, { fingerprint = fp, labels = row.labels, starts_at = row.starts_at }, ev.id, now) end
    end
    return true
  end
  self:flush(tx, g, r, now)
  return true
end

local function dry_run(self, ev)
  -- A dry run (policy simulate) writes and sends nothing: the engine's store writes and
  -- sends are its own, not the sandbox's recorded modules. It answers where the alert goes.
  if (ev.type == "alert.firing" or ev.type == "alert.resolved") and type(ev.data) == "table"
      and type(ev.data.labels) == "table" then
    local out = {}
    for _, r in ipairs(self.tree:match(ev.data.labels)) do
      out[#out + 1] = { receiver = r.receiver, route = r.id, group_key = r:group_key(ev.data.labels),
        group_wait = r.group_wait }
    end
    return { dry_run = true, routes = out }
  end
  return { dry_run = true }
end

-- handle_batch(list [, ctx]) -> {[i] = result of list[i]}: events in log order, handled on
-- the state in memory; every change they make is committed in one store unit at the end
-- (steward.alerting.engine.journal). A failure raises before that commit and drops the
-- state in memory, which the next run reloads from the journal: nothing half-done stays.
function Engine:handle_batch(list, ctx)
  if type(list) ~= "table" then error("engine:handle_batch: list: table of events expected, got " .. type(list), 2) end
  for i, ev in ipairs(list) do
    if type(ev) ~= "table" then error("engine:handle_batch: list[" .. i .. "]: event table expected, got " .. type(ev), 2) end
  end
  local st = self.store or require("steward.runtime.store").default()
  if not st then error("engine:handle_batch: no store (pass opts.store or run in the daemon)", 2) end
  self.ctx_log = ctx and ctx.log or nil -- tagged with the (first) event's id
  local out = {}
  if ctx and ctx.dry_run then
    for i, ev in ipairs(list) do out[i] = dry_run(self, ev) end
    return out
  end
  local now = self.now()
  local tx
  local ok, err = pcall(function()
    for i, ev in ipairs(list) do
      if ev.type == M.NOTIFY_EVENT then
        -- a failed send raises: the policy run is retried with backoff, then parked as a dead
        -- letter; this group's later notifications wait behind it (same key), others do not
        -- (two statements: must(flush.send(...), ...) would keep only the first result, and the
        -- dead letter would say "notification: nil" instead of why the send failed)
        local sent, serr = flush.send(self, ev)
        must(sent, serr, "notification")
        out[i] = true
      elseif ev.type == "alert.firing" or ev.type == "alert.resolved" or ev.type == M.FLUSH_EVENT then
        if not tx then
          local berr
          tx, berr = journal.begin(self, st, now)
          must(tx, berr, "journal read")
        end
        if ev.type == M.FLUSH_EVENT then
          out[i] = self:on_flush(tx, ev, now)
        else
          self:on_alert(tx, ev, now)
          out[i] = true
        end
      else
        out[i] = false
      end
    end
    if tx then
      local cok, cerr = journal.commit(tx)
      must(cok, cerr, "journal commit")
    end
  end)
  if not ok then
    self.state = nil
    error(err, 0)
  end
  return out
end

-- handle(ev [, ctx]) -> true when the event was for the engine.
function Engine:handle(ev, ctx)
  if type(ev) ~= "table" then error("engine:handle: ev: event table expected, got " .. type(ev), 2) end
  if ctx and ctx.dry_run then return dry_run(self, ev) end
  return self:handle_batch({ ev }, ctx)[1]
end

-- groups(st) -> the aggregation groups with their members (for the REPL and tests).
function Engine:groups(st)
  st = st or self.store or require("steward.runtime.store").default()
  local list = must(groups.list(st))
  for _, g in ipairs(list) do g.members = must(groups.members(st, g.id)) end
  return list
end

-- cleanup(st, {now, retention}) -> rows deleted | nil, err: resolved alerts announced
-- resolved and expired silences older than retention, notification log entries not written
-- for that long (Alertmanager's nflog retention), groups left without members, stale flap
-- and correlation rows. Leader-only in a cluster (steward.alerting.api runs it).
function M.cleanup(st, opts)
  opts = opts or {}
  local now = opts.now or require("steward.time").now()
  local before = now - (opts.retention or M.RETENTION)
  local n, err = astore.cleanup(st, before)
  if not n then return nil, err end
  local res
  res, err = st.db:batch({
    { "DELETE FROM alert_nlog WHERE sent_at < $1", before },
    { "DELETE FROM alert_group_members WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE alerts.fingerprint = alert_group_members.fingerprint)" },
    { "DELETE FROM alert_groups WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM alert_group_members WHERE group_id = alert_groups.id)", before },
    { "DELETE FROM alert_flaps WHERE updated_at < $1 AND held_until < $2", before, now },
    { "DELETE FROM alert_correlation_hits WHERE at < $1", before },
    { "DELETE FROM alert_correlations WHERE last_at < $1", before },
    -- the engine's memory reloads from what this left
    journal.touch_statement(),
  })
  if not res then return nil, err end
  for _, r in ipairs(res) do n = n + (r.changes or 0) end
  return n
end

return M
