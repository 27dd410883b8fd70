-- steward.store_health: can the daemon's store be reached right now? The store's native
-- handle is wrapped so that every request's outcome is seen at no extra round trip: a
-- failure with code "unavailable" (PostgreSQL gone, a connection lost, a COMMIT whose outcome
-- is unknown) marks the store down, a success marks it up. While it is down a probe
-- (SELECT 1) runs every second, so readiness comes back without waiting for traffic.
-- /readyz, the HTTP API's 503 answers and the steward_store_up gauge read it.
local time = require "steward.time"
local log = require "steward.log"

local setmetatable, type, tostring, running = setmetatable, type, tostring, coroutine.running

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
