-- steward.runtime.store_health: can the daemon's store be reached right now? The store's native
-- handle is wrapped so that every request's outcome is seen at no extra round trip: a
-- failure with code "unavailable" (PostgreSQL gone, a connection lost, a COMMIT whose outcome
-- is unknown) marks the store down, a success marks it up. While it is down a probe
-- (SELECT 1) runs every second, so readiness comes back without waiting for traffic.
-- /readyz, the HTTP API's 503 answers and the steward_store_up gauge read it.
-- A store can also hang without failing (an SQLite lock held by another process, a stopped
-- PostgreSQL): ready(bound) runs a real read and says "not ready" when it does not complete
-- within the bound.
local time = require "steward.time"
local task = require "steward.task"
local log = require "steward.log"

local setmetatable, type, tostring, running = setmetatable, type, tostring, coroutine.running
local format = string.format

local M = {}

local H = {}
H.__index = H

local UNAVAILABLE = "unavailable"

local attached = setmetatable({}, { __mode = "k" })

function H:mark_down(err)
  self.last_error = tostring(err)
  if not self.up then return end
  self.up = false
  self.down_since = time.now()
  self.outages = self.outages + 1
  log.warn("store unavailable; requests that need it answer 503 until it is back",
    { error = self.last_error })
end

function H:mark_up()
  if self.up then return end
  self.up = true
  log.info("store available again", { down_seconds = string.format("%.3f", time.now() - self.down_since) })
  self.down_since = nil
end

-- The result of one store call: notes the outcome and passes the values on unchanged.
function H:observe(res, err, code)
  if res == nil then
    if code == UNAVAILABLE then
      self:mark_down(err)
      -- The request (task) that saw it, so that its HTTP answer can be a 503.
      local co = running()
      if co then self.failed[co] = err end
    end
  elseif not self.up then
    self:mark_up()
  end
  return res, err, code
end

-- take_failure() -> the unavailable error the current task met since the last call, or nil.
function H:take_failure()
  local co = running()
  if not co then return nil end
  local err = self.failed[co]
  if err then self.failed[co] = nil end
  return err
end

-- The probe: cheap, and only while the store is down.
function H:probe()
  if self.up then return true end
  local rows, err, code = self.native:query("SELECT 1")
  if rows then
    self:mark_up()
    return true
  end
  if code == UNAVAILABLE then self.last_error = tostring(err) end
  return false
end

-- The readiness read touches a table, so SQLite takes its read lock (SELECT 1 would not).
local READY_SQL = "SELECT 1 FROM schema_version LIMIT 1"

-- ready(bound) -> true, or false, reason. One probe runs at a time and every caller waits
-- for it up to bound seconds, so a stuck store is not queued one more read per /readyz.
-- A probe still running after bound is the answer for later callers too, until it ends.
function H:ready(bound)
  local p, now = self.ready_probe, time.monotonic()
  if p and now - p.started >= bound then
    return false, format("a store read has not completed for %.1fs (ready_timeout %gs)", now - p.started, bound)
  end
  if not p then
    p = { started = now }
    self.ready_probe = p
    p.handle = task.spawn({ name = "store readiness probe" }, function()
      local rows, err, code = self:observe(self.native:query(READY_SQL))
      if self.ready_probe == p then self.ready_probe = nil end
      if rows then return true end
      return false, format("store read failed: %s%s", tostring(err), code and " (" .. tostring(code) .. ")" or "")
    end)
  end
  local waiter = task.spawn({ name = "store readiness wait", timeout = bound - (now - p.started) },
    function() return p.handle:join() end)
  local joined, probe_ran, ok, reason = waiter:join()
  if not joined then -- the bound passed first
    return false, format("a store read did not complete within %gs (ready_timeout)", bound)
  end
  if not probe_ran then return false, "store readiness probe failed: " .. tostring(ok) end
  return ok, reason
end

-- start([interval]) -> the time.every handle running the probe (cancel it at shutdown).
function H:start(interval)
  return time.every(interval or "1s", function() self:probe() end)
end

-- status() -> {up, backend, error, code, down_since, outages} for /readyz.
function H:status()
  return { up = self.up, backend = self.backend, error = not self.up and self.last_error or nil,
           down_since = self.down_since, outages = self.outages }
end

local function wrap(h, db)
  local proxy = setmetatable({}, {
    __index = function(_, k)
      local v = db[k]
      if type(v) ~= "function" then return v end
      return function(_, ...) return v(db, ...) end
    end,
    __tostring = function() return tostring(db) end,
  })
  -- The request paths, spelled out: they run for every event batch.
  function proxy.query(_, ...) return h:observe(db:query(...)) end
  function proxy.exec(_, ...) return h:observe(db:exec(...)) end
  function proxy.batch(_, list) return h:observe(db:batch(list)) end
  return proxy
end

-- attach(st) -> health: wraps st.db (once per store; later calls return the same object).
function M.attach(st)
  if type(st) ~= "table" or not st.db then error("store_health.attach: store expected", 2) end
  local h = attached[st]
  if h then return h end
  local db = st.db
  h = setmetatable({ up = true, outages = 0, native = db, failed = setmetatable({}, { __mode = "k" }),
                     backend = db.backend and db:backend() or "?" }, H)
  st.db = wrap(h, db)
  attached[st] = h
  return h
end

function M.get(st) return attached[st] end

return M
