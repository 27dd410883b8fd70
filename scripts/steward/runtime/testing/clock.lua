-- steward.runtime.testing.clock: the fake clock of `steward test`. It builds a replacement for the
-- steward.time module (installed in package.loaded before a spec loads anything) whose now,
-- monotonic, sleep, after and every follow a clock the spec moves with clock.advance; durable
-- timers (time.after with an event table) still go to the spec's store through the real
-- steward.runtime.store.timers, and fire — as events handed to the runner — when the clock passes
-- their due time.
local native = require "steward.time.native"

local type, error, select, unpack, max = type, error, select, unpack, math.max

local M = {}

-- 2026-01-01T00:00:00Z: a fixed start so that specs see the same times on every run.
M.EPOCH = 1767225600
local MONO_START = 1000

local current -- the clock of the spec file being run, or nil (then the real clock answers)

local Clock = {}
Clock.__index = Clock

local Timer = {}
Timer.__index = Timer

function Timer:cancel()
  local was = not self.done
  self.done = true
  return was
end

function Timer:pending() return not self.done end

-- new{store = st, on_fire = function(events), on_arm = function(timer), spawn = function(fn, ...)} -> clock
function M.new(opts)
  return setmetatable({
    t = M.EPOCH,      -- wall clock, seconds
    mono = MONO_START,
    timers = {},      -- in-memory timers: {due, every, fn, args, done, seq}
    seq = 0,
    fired = {},       -- durable timer events fired so far, in order
    armed = {},       -- durable timers armed: {id, due_at, event}
    store = opts.store,
    on_fire = opts.on_fire,
    on_arm = opts.on_arm,
    pause = opts.pause,
    spawn = opts.spawn,
  }, Clock)
end

function M.set_current(c) current = c end
function M.current() return current end

function Clock:now() return self.t end
function Clock:monotonic() return self.mono end

-- set(t): moves the wall clock to t without firing anything (as an NTP step would); the
-- monotonic clock does not move.
function Clock:set(t)
  if type(t) ~= "number" then error("clock.set: t: number expected, got " .. type(t), 2) end
  self.t = t
end

local function earliest_memory(self, limit)
  local best
  for _, tm in ipairs(self.timers) do
    if not tm.done and tm.due <= limit and (not best or tm.due < best.due or
        (tm.due == best.due and tm.seq < best.seq)) then
      best = tm
    end
  end
  return best
end

local function move_to(self, t)
  if t > self.t then
    self.mono = self.mono + (t - self.t)
    self.t = t
  end
end

-- advance(d): moves both clocks forward by d; every in-memory timer and every durable timer
-- that falls due on the way fires in due order, the clock standing at its due time.
function Clock:advance(d)
  local secs, err = native.parse_duration(d)
  if not secs then error("clock.advance: d: " .. tostring(err), 2) end
  if secs < 0 then error("clock.advance: d: the clock does not go back", 2) end
  local target = self.t + secs
  local timers = require "steward.runtime.store.timers"
  while true do
    local tm = earliest_memory(self, target)
    local durable_due
    if self.store then
      durable_due = timers.next_due(self.store)
      if durable_due and durable_due > target then durable_due = nil end
    end
    if not tm and not durable_due then break end
    if durable_due and (not tm or durable_due <= tm.due) then
      move_to(self, durable_due)
      if self.pause then self.pause(true) end
      local list, ferr = timers.fire_due(self.store, self.t)
      if self.pause then self.pause(false) end
      if not list then error("clock.advance: cannot fire durable timers: " .. tostring(ferr), 2) end
      for _, ev in ipairs(list) do self.fired[#self.fired + 1] = ev end
      if #list > 0 and self.on_fire then self.on_fire(list) end
    else
      move_to(self, tm.due)
      if tm.every then
        tm.due = tm.due + tm.every
      else
        tm.done = true
      end
      self.spawn(tm.fn, unpack(tm.args, 1, tm.args.n))
    end
  end
  move_to(self, target)
  return self.t
end

-- Durable timers still waiting in the spec's store.
function Clock:pending()
  if not self.store then return {} end
  return assert(require("steward.runtime.store.timers").pending(self.store))
end

local function add_timer(self, secs, every, fn, ...)
  self.seq = self.seq + 1
  local tm = setmetatable({ due = self.t + secs, every = every, fn = fn,
                            args = { n = select("#", ...), ... }, seq = self.seq }, Timer)
  self.timers[#self.timers + 1] = tm
  return tm
end

-- The replacement steward.time module. Functions look up the current clock when called, so
-- one module serves every spec file (modules capture it once, at their first require).
function M.fake_module()
  local real = require "steward.time"
  local T = {}
  for k, v in pairs(real) do T[k] = v end
  T.parse_duration = native.parse_duration
  function T.now()
    if current then return current.t end
    return native.now()
  end
  function T.monotonic()
    if current then return current.mono end
    return native.monotonic()
  end
  -- sleep(d): moves the clock by d at once (firing what falls due), then yields once so that
  -- other tasks run, as a real sleep would let them.
  function T.sleep(d)
    if not current then return native.sleep(d) end
    local secs, err = native.parse_duration(d)
    if not secs then error("time.sleep: d: " .. tostring(err), 2) end
    current:advance(secs)
    return native.sleep(0)
  end
  function T.after(d, what, ...)
    if not current then return real.after(d, what, ...) end
    if type(what) == "table" then
      -- A durable timer: the real code path, into the spec's store (the default store).
      local id, err = real.after(d, what, ...)
      if id then
        local st = current.store
        local rows = st and st.db:query("SELECT due_at FROM timers WHERE id = $1", id)
        local rec = { id = id, due_at = rows and rows[1] and rows[1].due_at, event = what }
        current.armed[#current.armed + 1] = rec
        if current.on_arm then current.on_arm(rec) end
      end
      return id, err
    end
    local secs, err = native.parse_duration(d)
    if not secs then error("time.after: d: " .. tostring(err), 2) end
    if type(what) ~= "function" then error("time.after: fn: function expected, got " .. type(what), 2) end
    return add_timer(current, secs, nil, what, ...)
  end
  function T.every(d, fn, ...)
    if not current then return real.every(d, fn, ...) end
    local secs, err = native.parse_duration(d)
    if not secs then error("time.every: d: " .. tostring(err), 2) end
    if secs <= 0 then error("time.every: d: positive duration expected", 2) end
    if type(fn) ~= "function" then error("time.every: fn: function expected, got " .. type(fn), 2) end
    return add_timer(current, secs, secs, fn, ...)
  end
  return T
end

return M
