-- steward.runtime.cluster: several daemons on one PostgreSQL store (docs/operations.md). Every
-- instance ingests; handling is split by leases the database arbitrates, never by a protocol
-- of our own:
--  * (policy, key) pairs hash into BUCKETS buckets; a bucket is leased (dispatch_buckets,
--    lease_until in the database's clock) by one instance, which alone handles its keys, in
--    log order. Leases are renewed with the heartbeat; a dead instance's run out and the
--    survivors take its buckets, first rescanning the log from the lowest mark of any
--    instance (dispatch_marks) so nothing unhandled is skipped. Buckets are spread evenly:
--    an instance over its fair share finishes the bucket's running events, then lets it go.
--  * Every instance scans the shared log (events after its position) and offers each event to
--    dispatch, which queues the ones whose bucket it holds. Sequence numbers are handed out
--    before commit, so a gap may still fill: gaps are re-read for GAP_WAIT seconds.
--  * One leader runs the singleton duties (durable timers, cron, retention, moving the
--    dispatch cursors): pg_try_advisory_lock on a dedicated session (steward.pg), so the
--    lock goes when the leader's session does; without steward.pg, a lease row.
--  * Policy changes are announced with NOTIFY in the transaction that records them
--    (policy_reload); the dedicated session LISTENs; a full comparison runs every 30 s.
local task = require "steward.task"
local time = require "steward.time"
local log = require "steward.log"
local json = require "steward.json"
local events = require "steward.runtime.events"
local metrics = require "steward.metrics"
local bit = require "bit"

local pairs, ipairs, tostring, tonumber, pcall, type = pairs, ipairs, tostring, tonumber, pcall, type
local format, concat, min, max, ceil, floor = string.format, table.concat, math.min, math.max, math.ceil, math.floor

local M = {}

M.BUCKETS = 64
-- The lease clock is the database's: PostgreSQL's for instances on several hosts, the
-- machine's (SQLite's julianday, milliseconds) for worker processes sharing one SQLite file.
-- One store per process, so M.new sets it once for the module.
local PG_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
local SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
local NOW = PG_NOW
local LOCK_KEY = 1937012581 -- "stwd" + 1: the migration lock is 1937012580
local CHANNEL = "steward_policies"
local TOKENS = "steward_tokens"
local GAP_WAIT = 10      -- seconds a missing seq may still commit
local MAX_GAPS = 20000
local SCAN_PAGE = 1000
local RECONCILE = 30
local COLS = "seq, id, type, tenant, time, source, data, received, depth"

local m_leader = metrics.gauge("steward_cluster_leader", "1 while this instance is the cluster leader", {})
local m_buckets = metrics.gauge("steward_cluster_buckets", "Dispatch buckets this instance holds", {})
local m_takeovers = metrics.counter("steward_cluster_bucket_takeovers_total", "Buckets taken from an expired lease", {})

-- FNV-1a, 32 bits (the multiply split so every step stays exact in a double).
local function bucket_of(policy, key)
  local h = -2128831035 -- 2166136261 as int32
  local s = policy .. "\0" .. key
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(h * 403 + bit.lshift(h, 24))
  end
  return bit.band(h, 0x7fffffff) % M.BUCKETS
end
M.bucket_of = bucket_of

-- Several instances on PostgreSQL always coordinate; worker processes (workers > 1) do on
-- either backend, and the daemon turns it on for them.
function M.enabled(st) return st:backend() == "postgres" end

-- The libpq connection string of a store URL, without steward's own pool options.
function M.dsn(url)
  local s = url:gsub("^postgresql:", "postgres:")
  if s:match("^postgres://") then
    local base, q = s:match("^([^?]*)%??(.*)$")
    local keep = {}
    for kv in q:gmatch("[^&]+") do
      local k = kv:match("^([^=]*)")
      if k ~= "pool_size" and k ~= "pool_timeout" then keep[#keep + 1] = kv end
    end
    return #keep > 0 and (base .. "?" .. concat(keep, "&")) or base
  end
  s = s:gsub("^postgres:", ""):gsub("%f[%w]pool_size%s*=%s*%S+", ""):gsub("%f[%w]pool_timeout%s*=%s*%S+", "")
  return s
end

local C = {}
C.__index = C

local function hostname()
  local ffi = require "ffi"
  pcall(ffi.cdef, "int gethostname(char *name, size_t len);")
  local buf = ffi.new("char[256]")
  if ffi.C.gethostname(buf, 255) == 0 then return ffi.string(buf) end
  return "unknown"
end

-- new{store, dispatch, registry, url, pid, on_leader = fn(bool), lease, heartbeat, poll}
-- (the durations come from the config's `cluster` table)
function M.new(opts)
  local pg_store = opts.store:backend() == "postgres"
  NOW = pg_store and PG_NOW or SQLITE_NOW
  local lease = opts.lease or 5
  local host = hostname()
  local c = setmetatable({
    st = opts.store, d = opts.dispatch, registry = opts.registry, url = opts.url,
    host = host, pid = opts.pid, on_leader = opts.on_leader, on_tokens = opts.on_tokens,
    id = format("%s-%d-%s", host, opts.pid, require("steward.crypto").hex(require("steward.crypto").random(3))),
    lease = lease,
    beat = opts.heartbeat or lease / 5,
    poll = opts.poll or 0.1,
    owned = {},      -- bucket -> local deadline (monotonic) of our lease
    releasing = {},  -- bucket -> mark cap: we give it up (or lost it); nothing after cap is ours
    floors = {},     -- rescan under way -> the seq it has finished (the mark stays at or below)
    high = 0,        -- every seq <= high was read (or is in gaps)
    gaps = {}, ngaps = 0, -- seq -> monotonic time first missed
    leader = false, leader_deadline = 0,
    stats = { scanned = 0, takeovers = 0 },
    -- Without NOTIFY (SQLite), policy changes are found by comparing versions, every second.
    reconcile_every = pg_store and RECONCILE or 1,
    worker = opts.worker,
    bg = {},
  }, C)
  c.bucket_of = bucket_of
  return c
end

-- may_run(b): whether we still hold b. A lease whose local deadline passed is lost here and
-- now, not at the loop's next step: the caller is about to skip an event of b (a queued one
-- it drops, a scanned one it does not queue), and the mark must be capped below that event
-- while it is still counted (in flight, or above our scan position), or nobody would run it.
function C:may_run(b)
  local dl = self.owned[b]
  if dl == nil then return false end
  if dl > time.monotonic() then return true end
  self:lose(b)
  return false
end
function C:takes(b) return self:may_run(b) and not self.releasing[b] end
function C:is_leader() return self.leader and (self.session_leader or self.leader_deadline > time.monotonic()) end

function C:poke()
  local w = self.waiter
  if w then self.waiter = nil; w:cancel("poke") end
end

local function set_leader(self, yes)
  if self.leader == yes then return end
  self.leader = yes
  m_leader:set(yes and 1 or 0)
  log.info(yes and "cluster: this instance is now the leader" or "cluster: leadership lost", { instance = self.id })
  if self.on_leader then self.on_leader(yes) end
end

local function load_numbers(self)
  local s = self.d:stats()
  local n = 0
  for b in pairs(self.owned) do if not self.releasing[b] then n = n + 1 end end
  m_buckets:set(n)
  return { queued = s.queued, active = s.active, buckets = n, scanned = self.stats.scanned,
           takeovers = self.stats.takeovers, gaps = self.ngaps, tasks = task.count(),
           memory_kb = floor(collectgarbage("count")) }
end

function C:heartbeat()
  local st = self.st
  local ok, err = st:exec("INSERT INTO cluster_instances (id, host, pid, address, started, last_heartbeat, leader, load) " ..
    "VALUES ($1, $2, $3, $4, " .. NOW .. ", " .. NOW .. ", $5, $6) ON CONFLICT (id) DO UPDATE SET " ..
    "last_heartbeat = excluded.last_heartbeat, leader = excluded.leader, load = excluded.load, address = excluded.address",
    self.id, self.host, self.pid, self.address or json.null, self:is_leader() and 1 or 0, json.encode(load_numbers(self)))
  if not ok then log.warn("cluster: heartbeat failed", { error = tostring(err) }) end
  return ok
end

-- Renews our bucket leases; a bucket the database no longer gives us is lost at once.
-- Only the buckets we still hold are renewed: one whose local deadline passed (the store was
-- out of reach longer than the margin) dropped its queued events, so it must come back through
-- balance(), which rescans it, and not be kept alive silently while nobody handles it.
function C:renew()
  local held = {}
  for b in pairs(self.owned) do held[#held + 1] = format("%d", b) end
  if #held == 0 then return end
  local sent = time.monotonic()
  local res, err = self.st:exec("UPDATE dispatch_buckets SET lease_until = " .. NOW .. " + $2 WHERE owner = $1 " ..
    "AND bucket IN (" .. concat(held, ",") .. ") RETURNING bucket", self.id, self.lease)
  if not res then
    log.warn("cluster: lease renewal failed", { error = tostring(err) })
    return
  end
  -- Our deadline starts when the request left, before the database stamped the lease, and
  -- keeps a margin: we stop before anyone else may start.
  local deadline = sent + self.lease * 0.8
  local back = {}
  for _, r in ipairs(res.rows or {}) do back[r.bucket] = true end
  for b in pairs(self.owned) do
    if back[b] then self.owned[b] = deadline else self:lose(b) end
  end
end

-- The highest seq at or below which every event we took is finished: what is in flight, the
-- gaps that may still commit, the caps of buckets we lost, and the floor of a rescan under way
-- (the events it has not reached are neither in flight nor below our position).
local function local_low(self)
  local low = self.d:low_mark(self.high)
  for seq in pairs(self.gaps) do if seq - 1 < low then low = seq - 1 end end
  for _, cap in pairs(self.releasing) do if cap < low then low = cap end end
  for _, floor in pairs(self.floors) do if floor < low then low = floor end end
  return low
end

function C:lose(b)
  if not self.owned[b] then return end
  self.owned[b] = nil
  -- Queued events of b are dropped by the runner; the new owner rescans from our mark, which
  -- must stay at or below them until then.
  local cap = local_low(self)
  if not self.releasing[b] or self.releasing[b] > cap then self.releasing[b] = cap end
  log.warn("cluster: bucket lease lost", { bucket = b })
end

function C:write_mark()
  local ok, err = self.st:exec("INSERT INTO dispatch_marks (instance, low, updated) VALUES ($1, $2, " .. NOW .. ") " ..
    "ON CONFLICT (instance) DO UPDATE SET low = excluded.low, updated = excluded.updated", self.id, local_low(self))
  if not ok then log.warn("cluster: cannot write the dispatch mark", { error = tostring(err) }) end
end

-- handled records for seqs in [lo, hi] (or a list), as a set "policy:seq".
local function done_set(st, lo, hi, list)
  local rows
  if list then
    local marks = {}
    for i = 1, #list do marks[i] = "$" .. i end
    rows = st:query("SELECT policy, seq FROM handled WHERE seq IN (" .. concat(marks, ",") .. ")", unpack(list))
  else
    rows = st:query("SELECT policy, seq FROM handled WHERE seq >= $1 AND seq <= $2", lo, hi)
  end
  if not rows then return nil end
  local set = {}
  for _, r in ipairs(rows) do set[r.policy .. ":" .. r.seq] = true end
  return set
end

-- Queues what the new buckets hold after `from` up to our scan position: events their former
-- owner never finished, or that nobody held.
function C:rescan(new, from)
  local cursors = {}
  local rows = self.st:query("SELECT policy, seq FROM dispatch_cursor")
  for _, r in ipairs(rows or {}) do cursors[r.policy] = r.seq end
  local d, n = self.d, 0
  local function takes(b) return new[b] and self:takes(b) end
  local after = from
  -- The buckets were just claimed and their caps cleared: until their events are queued, this
  -- floor keeps our mark below them (a lease lost meanwhile caps its bucket at the floor).
  local token = {}
  self.floors[token] = after
  while after < self.high do
    local page = self.st:query("SELECT " .. COLS .. " FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
      after, self.high, SCAN_PAGE)
    if not page or #page == 0 then break end
    local done = done_set(self.st, page[1].seq, page[#page].seq) or {}
    for _, r in ipairs(page) do
      local ev = events.row_event(r)
      -- A policy met for the first time starts at the end of the log (its cursor).
      for name, c in pairs(cursors) do if ev.seq <= c then done[name .. ":" .. ev.seq] = true end end
      d:offer(ev, takes, done)
      n = n + 1
    end
    after = page[#page].seq
    self.floors[token] = after
  end
  self.floors[token] = nil
  return n
end

-- Claims free or expired buckets up to our fair share; gives up what is over it.
function C:balance()
  local st = self.st
  local rows = st:query("SELECT bucket, owner, CASE WHEN lease_until < " .. NOW .. " THEN 1 ELSE 0 END AS expired FROM dispatch_buckets")
  local live = st:query("SELECT COUNT(*) AS n FROM cluster_instances WHERE stopped IS NULL AND last_heartbeat > " ..
    NOW .. " - $1", self.lease)
  if not rows or not live then return end
  local fair = ceil(M.BUCKETS / max(1, live[1].n))
  local row_of = {}
  for _, r in ipairs(rows) do row_of[r.bucket] = r end
  for b, _ in pairs(self.releasing) do
    local r = row_of[b]
    if r and r.owner ~= self.id then self.releasing[b] = nil end -- someone took it: their mark covers it
  end
  local mine = 0
  for b in pairs(self.owned) do if not self.releasing[b] then mine = mine + 1 end end
  if mine > fair then
    -- Give up the least busy buckets; each is released once its running events are done.
    local list = {}
    for b in pairs(self.owned) do if not self.releasing[b] then list[#list + 1] = b end end
    table.sort(list, function(a, b) return (self.d.bucket_load[a] or 0) < (self.d.bucket_load[b] or 0) end)
    for i = 1, mine - fair do self.releasing[list[i]] = self.high end
  end
  for b, _ in pairs(self.releasing) do
    if self.owned[b] and (self.d.bucket_load[b] or 0) == 0 then
      local ok = st:exec("UPDATE dispatch_buckets SET lease_until = 0 WHERE bucket = $1 AND owner = $2", b, self.id)
      if ok then self.owned[b] = nil end
    end
  end
  if mine >= fair then return end
  -- Free: never held, expired, or still ours in the database although we lost it here (our
  -- local deadline keeps a margin before the database's): nobody else can hold it, so we take
  -- it back at once, with a rescan, instead of waiting for the lease to run out.
  local free = {}
  for b = 0, M.BUCKETS - 1 do
    local r = row_of[b]
    if (not r or r.expired == 1 or r.owner == self.id) and not self.owned[b] then free[#free + 1] = b end
  end
  if #free == 0 then return end
  for i = #free, 2, -1 do -- shuffled, so instances starting together do not collide
    local j = math.random(i)
    free[i], free[j] = free[j], free[i]
  end
  local want = min(#free, fair - mine)
  local values, args = {}, { self.id, self.lease }
  for i = 1, want do
    args[#args + 1] = free[i]
    values[i] = format("(CAST($%d AS INTEGER), $1, %s + $2, %s)", #args, NOW, NOW)
  end
  -- One transaction: take the buckets, read the lowest mark (where the rescan starts), and
  -- lower our own mark to it, so the cursor cannot pass the rescan before our next mark.
  local sent = time.monotonic()
  local res, err = st:batch({
    { "INSERT INTO dispatch_buckets (bucket, owner, lease_until, since) VALUES " .. concat(values, ",") ..
      " ON CONFLICT (bucket) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until, " ..
      "since = excluded.since WHERE dispatch_buckets.lease_until < " .. NOW .. " OR dispatch_buckets.owner = $1 " ..
      "RETURNING bucket", unpack(args) },
    { "SELECT MIN(low) AS low FROM dispatch_marks" },
    { "UPDATE dispatch_marks SET low = (SELECT MIN(low) FROM dispatch_marks) WHERE instance = $1 " ..
      "AND low > (SELECT MIN(low) FROM dispatch_marks)", self.id },
  })
  if not res then
    log.warn("cluster: cannot claim buckets", { error = tostring(err) })
    return
  end
  local new, got = {}, 0
  for _, r in ipairs(res[1].rows or {}) do
    new[r.bucket] = true
    got = got + 1
    self.owned[r.bucket] = sent + self.lease * 0.8
    self.releasing[r.bucket] = nil
    if row_of[r.bucket] and row_of[r.bucket].owner ~= self.id then
      self.stats.takeovers = self.stats.takeovers + 1
      m_takeovers:inc(1)
    end
  end
  if got == 0 then return end
  local from = res[2].rows and res[2].rows[1] and res[2].rows[1].low or self.high
  local okr, n = pcall(self.rescan, self, new, from)
  if not okr then
    -- A rescan cut short: give the buckets up again (capped at its floor) and clear the floor,
    -- so the next claim rescans them from there.
    for b in pairs(new) do self:lose(b) end
    self.floors = {}
    log.warn("cluster: rescan failed; the buckets are given up", { error = tostring(n) })
    return
  end
  log.info("cluster: buckets taken", { count = got, rescan_from = from, rescanned = n,
    took_over = self.stats.takeovers })
end

-- Offers the events of seqs we passed while they were not yet visible (a transaction that
-- took its seq before a later one committed) that are visible now; a seq still missing after
-- GAP_WAIT was a rolled-back insert (or a duplicate id) and is forgotten.
local function offer_gaps(self, takes)
  local st, d = self.st, self.d
  local now, list = time.monotonic(), {}
  for seq, t0 in pairs(self.gaps) do
    if now - t0 > GAP_WAIT then
      self.gaps[seq] = nil
      self.ngaps = self.ngaps - 1
    elseif #list < 500 then
      list[#list + 1] = seq
    end
  end
  if #list == 0 then return end
  table.sort(list)
  local marks = {}
  for i = 1, #list do marks[i] = "$" .. i end
  local rows = st:query("SELECT " .. COLS .. " FROM events WHERE seq IN (" .. concat(marks, ",") .. ") ORDER BY seq", unpack(list))
  if not rows or #rows == 0 then return end
  local seqs = {}
  for i, r in ipairs(rows) do seqs[i] = r.seq end
  local done = done_set(st, nil, nil, seqs)
  if not done then return end
  for _, r in ipairs(rows) do
    if self.gaps[r.seq] then
      d:offer(events.row_event(r), takes, done) -- still a gap meanwhile: see scan
      self.gaps[r.seq] = nil
      self.ngaps = self.ngaps - 1
    end
  end
end

-- Reads the log past our position (and the gaps below it) and offers each event to dispatch.
-- Gaps are looked at after each page is read and before it is offered: an event that
-- committed before a later one of its key was even written (the client waited for the first
-- one's acknowledgement) is then visible, and is queued first.
function C:scan()
  local st, d = self.st, self.d
  local function takes(b) return self:takes(b) end
  while true do
    local rows = st:query("SELECT " .. COLS .. " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2", self.high, SCAN_PAGE)
    if not rows or #rows == 0 then break end
    local done = done_set(st, rows[1].seq, rows[#rows].seq)
    if not done then break end
    if self.ngaps > 0 then offer_gaps(self, takes) end
    local now = time.monotonic()
    for _, r in ipairs(rows) do
      local seq = r.seq
      if seq > self.high + 1 and self.ngaps < MAX_GAPS then
        for g = self.high + 1, min(seq - 1, self.high + MAX_GAPS - self.ngaps) do
          self.gaps[g] = now
          self.ngaps = self.ngaps + 1
        end
      end
      -- (offered before our position passes it: a lease lost while offering it caps its
      -- bucket below it)
      d:offer(events.row_event(r), takes, done)
      self.high = seq
    end
    self.stats.scanned = self.stats.scanned + #rows
    if #rows < SCAN_PAGE then break end
  end
  if self.ngaps > 0 then offer_gaps(self, takes) end
end

-- Dead letters requeued anywhere are run by the owner of their key.
function C:redo(policy, seq)
  local ok, err = self.st:exec("INSERT INTO dispatch_redo (policy, seq, created) VALUES ($1, $2, " .. NOW .. ") " ..
    "ON CONFLICT (policy, seq) DO NOTHING", policy, seq)
  if not ok then return nil, err end
  return true
end

function C:run_redo()
  local rows = self.st:query("SELECT r.policy, r.seq, e.id, e.type, e.tenant, e.time, e.source, e.data, e.received " ..
    "FROM dispatch_redo r JOIN events e ON e.seq = r.seq ORDER BY r.seq LIMIT 100")
  if not rows or #rows == 0 then return end
  local d = self.d
  for _, r in ipairs(rows) do
    local p = d.policies[r.policy]
    local ev = events.row_event(r)
    if p then
      local ok, key = pcall(p.key, ev)
      key = (ok and key ~= nil) and tostring(key) or ""
      local b = bucket_of(r.policy, key)
      if self:takes(b) then
        local del = self.st:exec("DELETE FROM dispatch_redo WHERE policy = $1 AND seq = $2", r.policy, r.seq)
        if del and del.changes > 0 then d:enqueue(p, ev, b, key) end
      end
    end
  end
end

-- Leader only: move the dispatch cursors to the lowest mark, purge what is below, forget the
-- marks of dead instances that hold no bucket any more.
function C:leader_duties()
  local st = self.st
  st:exec("DELETE FROM dispatch_marks WHERE instance IN (SELECT id FROM cluster_instances WHERE " ..
    "(stopped IS NOT NULL OR last_heartbeat < " .. NOW .. " - $1) AND id NOT IN " ..
    "(SELECT owner FROM dispatch_buckets))", 3 * self.lease)
  st:exec("DELETE FROM cluster_instances WHERE last_heartbeat < " .. NOW .. " - 600")
  local n = st:query("SELECT COUNT(*) AS n FROM dispatch_buckets")
  if not n or n[1].n < M.BUCKETS then return end -- a bucket nobody ever held: its events wait
  local rows = st:query("SELECT MIN(low) AS low FROM dispatch_marks")
  local low = rows and rows[1] and rows[1].low
  if not low then return end
  local ok, err = st:batch({
    { "UPDATE dispatch_cursor SET seq = $1 WHERE seq < $1", low },
    { "DELETE FROM handled WHERE seq <= $1 AND status = 'done'", low },
  })
  if not ok then log.warn("cluster: cannot move the dispatch cursors", { error = tostring(err) }) end
end

-- The leader lease row, used when steward.pg (a dedicated session) is not available.
function C:lease_leader()
  local sent = time.monotonic()
  local res = self.st:exec("INSERT INTO cluster_leader (id, holder, lease_until, since) VALUES (1, $1, " .. NOW ..
    " + $2, " .. NOW .. ") ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until, " ..
    "since = CASE WHEN cluster_leader.holder = excluded.holder THEN cluster_leader.since ELSE excluded.since END " ..
    "WHERE cluster_leader.holder = excluded.holder OR cluster_leader.lease_until < " .. NOW .. " RETURNING holder",
    self.id, self.lease)
  if res and res.rows and res.rows[1] then
    self.leader_deadline = sent + self.lease * 0.8
    set_leader(self, true)
  elseif res or self.leader_deadline <= time.monotonic() then
    set_leader(self, false)
  end
end

-- The dedicated session: holds the advisory lock while leader, LISTENs for policy changes.
local function session_loop(self, pg)
  local dsn = M.dsn(self.url)
  while not self.stopping do
    local db, err = pg.connect(dsn)
    if not db then
      log.warn("cluster: cannot open the leader session", { error = tostring(err) })
      time.sleep(1)
    else
      self.session = db
      local ok = db:listen(CHANNEL)
      if ok == nil then log.warn("cluster: LISTEN failed") end
      -- Token changes (steward.runtime.auth) reach this instance within a notification's latency.
      if self.on_tokens and db:listen(TOKENS) == nil then log.warn("cluster: LISTEN failed", { channel = TOKENS }) end
      while not self.stopping do
        if not self.leader then
          local rows, qerr = db:query("SELECT pg_try_advisory_lock($1) AS got", LOCK_KEY)
          if not rows then log.warn("cluster: leader session failed", { error = tostring(qerr) }); break end
          local got = rows[1] and (rows[1].got == true or rows[1].got == 1 or rows[1].got == "t")
          if got then self.session_leader = true; set_leader(self, true) end
        else
          local rows, qerr = db:query("SELECT 1 AS one")
          if not rows then
            self.session_leader = false
            set_leader(self, false) -- the session ended, and with it the lock
            log.warn("cluster: leader session failed", { error = tostring(qerr) })
            break
          end
        end
        local n, nerr = db:notification(1)
        if n and n.channel == TOKENS then
          if self.on_tokens then task.spawn({ name = "cluster.tokens" }, self.on_tokens) end
        elseif n then
          local msg = json.decode(n.payload or "") or {}
          if msg.instance ~= self.id and self.registry then
            task.spawn({ name = "cluster.reload" }, function() self.registry:reload("cluster notify") end)
          end
        elseif nerr ~= "timeout" then
          self.session_leader = false
          set_leader(self, false)
          log.warn("cluster: leader session failed", { error = tostring(nerr) })
          break
        end
      end
      self.session_leader = false
      set_leader(self, false)
      pcall(db.close, db)
      self.session = nil
      if not self.stopping then time.sleep(1) end
    end
  end
end

-- Every RECONCILE seconds: the versions this instance runs against the cluster's.
function C:reconcile()
  local reg = self.registry
  if not reg then return end
  local rows = self.st:query("SELECT name, version FROM policy_current")
  if not rows then return end
  local function differs()
    local out = {}
    for _, r in ipairs(rows) do
      local p = reg.set[r.name]
      if p and p.version ~= r.version then out[#out + 1] = r end
    end
    return out
  end
  if #differs() == 0 then return end
  reg:reload("cluster reconcile")
  for _, r in ipairs(differs()) do
    log.warn("cluster: this instance runs another version of a policy than the cluster's latest",
      { policy = r.name, here = reg.set[r.name].version, cluster = r.version })
  end
end

local function loop(self)
  local next_beat, next_reconcile = 0, time.monotonic() + self.reconcile_every
  local function step()
    local now = time.monotonic()
    for b, dl in pairs(self.owned) do if dl <= now then self:lose(b) end end
    if now >= next_beat then
      next_beat = now + self.beat
      if not self.pg then self:lease_leader() end
      self:heartbeat()
      self:renew()
      if not self.quiet then
        self:balance()
        self:run_redo()
      end
      self:write_mark()
      if self:is_leader() then self:leader_duties() end
    end
    if not self.quiet then self:scan() end
    if now >= next_reconcile and not self.quiet then
      next_reconcile = now + self.reconcile_every
      self:reconcile()
    end
  end
  while not self.stopping do
    local ok, err = pcall(step)
    if not ok then log.error("cluster: loop step failed", { error = tostring(err) }) end
    local w = task.spawn(function() time.sleep(self.poll) end)
    self.waiter = w
    w:join()
    self.waiter = nil
  end
end

-- start(): registers the instance and starts the loops. The scan starts at the end of the
-- log; earlier unfinished events come back through bucket rescans.
function C:start()
  self.high = events.last_seq(self.st) or 0
  local ok, err = self.st:batch({
    { "INSERT INTO cluster_instances (id, host, pid, started, last_heartbeat, leader) VALUES ($1, $2, $3, " ..
      NOW .. ", " .. NOW .. ", 0)", self.id, self.host, self.pid },
    { "INSERT INTO dispatch_marks (instance, low, updated) VALUES ($1, $2, " .. NOW .. ")", self.id, self.high },
  })
  if not ok then return nil, "cluster: cannot register this instance: " .. tostring(err) end
  local has, pg = pcall(require, "steward.pg")
  if self.st:backend() ~= "postgres" then
    log.info("cluster: worker processes on one SQLite store; the leader holds a lease row")
  elseif has and type(pg) == "table" and pg.connect then
    self.pg = pg
    self.bg[#self.bg + 1] = task.spawn({ name = "cluster.session" }, session_loop, self, pg)
  else
    log.info("cluster: steward.pg not available; the leader holds a lease row instead of an advisory lock")
  end
  self.main = task.spawn({ name = "cluster" }, loop, self)
  log.info("cluster: instance registered", { instance = self.id, lease = self.lease, buckets = M.BUCKETS })
  return true
end

-- quiesce(): stop taking events (shutdown); leases are still renewed while handlers drain.
function C:quiesce() self.quiet = true end

-- stop(): after the drain. Leaves our mark in place (the next owners rescan from it), lets
-- the leases go at once, and steps down.
function C:stop()
  self.stopping = true
  self:poke()
  if self.main then self.main:join() end
  for _, t in ipairs(self.bg) do t:cancel() end
  if self.session then pcall(self.session.close, self.session) end
  self:write_mark()
  self.st:batch({
    { "UPDATE dispatch_buckets SET lease_until = 0 WHERE owner = $1", self.id },
    { "UPDATE cluster_leader SET lease_until = 0 WHERE holder = $1", self.id },
    { "UPDATE cluster_instances SET stopped = " .. NOW .. ", leader = 0 WHERE id = $1", self.id },
  })
  self.leader = false
end

-- view(ctx) -> status, body: GET /v1/cluster.
function M.view(ctx)
  local st = ctx.store
  if not ctx.cluster then
    return 200, { mode = "single", backend = st:backend(), instances = json.array({}) }
  end
  local rows, err = st:query("SELECT id, host, pid, address, started, last_heartbeat, leader, load, stopped, " ..
    NOW .. " AS now FROM cluster_instances ORDER BY started, id")
  if not rows then return 503, { error = { code = "unavailable", message = tostring(err), details = json.null } } end
  local owned = {}
  for _, r in ipairs(st:query("SELECT owner, COUNT(*) AS n FROM dispatch_buckets WHERE lease_until > " .. NOW ..
    " GROUP BY owner") or {}) do owned[r.owner] = r.n end
  local c, list, leader = ctx.cluster, {}, json.null
  for _, r in ipairs(rows) do
    local age = r.now - r.last_heartbeat
    local state = r.stopped and "stopped" or (age <= c.lease and "alive" or "dead")
    if r.leader == 1 and state == "alive" then leader = r.id end
    list[#list + 1] = { id = r.id, host = r.host, pid = r.pid, address = r.address or json.null,
      started = r.started, last_heartbeat = r.last_heartbeat, heartbeat_age = age, state = state,
      leader = r.leader == 1 and state == "alive", buckets = owned[r.id] or 0,
      load = r.load and json.decode(r.load) or json.null, self = r.id == c.id or nil }
  end
  return 200, { mode = "cluster", backend = st:backend(), worker = c.worker, self = c.id, leader = leader,
    lease = c.lease, buckets = M.BUCKETS, instances = json.array(list) }
end

return M
