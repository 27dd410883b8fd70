-- Taps: live copies of what flows through the daemon (committed events, decisions) for
-- whoever watches — the REPL's events.tail and policy.trace. Publishing costs one table
-- lookup while nobody watches. A subscriber's queue is bounded: a watcher that cannot keep
-- up loses the oldest items and is told how many, the daemon never waits for it.
local task = require "steward.task"
local time = require "steward.time"

local M = {}

local subs = { event = {}, decision = {} }
local MAX_QUEUE = 1000

local Sub = {}
Sub.__index = Sub

-- publish(topic, item): item is shared with every subscriber; they must not modify it.
function M.publish(topic, item)
  local list = subs[topic]
  if next(list) == nil then return end
  for sub in pairs(list) do
    if not sub.filter or sub.filter(item) then
      local q = sub.q
      sub.tail = sub.tail + 1
      q[sub.tail] = item
      if sub.tail - sub.head + 1 > MAX_QUEUE then
        q[sub.head] = nil
        sub.head = sub.head + 1
        sub.dropped = sub.dropped + 1
      end
      local w = sub.waiter
      if w then
        sub.waiter = nil -- before cancel: the woken task may wait again at once, setting a new one
        w:cancel("wake")
      end
    end
  end
end

-- subscribe(topic, filter) -> sub; filter(item) -> boolean selects what is queued.
function M.subscribe(topic, filter)
  local list = subs[topic]
  if not list then error("taps.subscribe: topic: unknown topic " .. tostring(topic), 2) end
  local sub = setmetatable({ topic = topic, filter = filter, q = {}, head = 1, tail = 0, dropped = 0 }, Sub)
  list[sub] = true
  return sub
end

-- sub:next(timeout) -> item, dropped_before | nil (timeout or closed). Yields until an item
-- arrives.
function Sub:next(timeout)
  local deadline = timeout and time.monotonic() + timeout
  if self.closed then return nil end
  while self.head > self.tail do
    if self.closed then return nil end
    local wait = deadline and deadline - time.monotonic() or 3600
    if wait <= 0 then return nil end
    local w = task.spawn({ name = "taps.wait" }, time.sleep, wait)
    self.waiter = w
    w:join()
    if self.waiter == w then self.waiter = nil end
  end
  local item = self.q[self.head]
  self.q[self.head] = nil
  self.head = self.head + 1
  if self.head > self.tail then self.q, self.head, self.tail = {}, 1, 0 end
  local dropped = self.dropped
  self.dropped = 0
  return item, dropped
end

function Sub:close()
  if self.closed then return end
  self.closed = true
  subs[self.topic][self] = nil
  local w = self.waiter
  self.waiter = nil
  if w then w:cancel("closed") end
end

-- count(topic) -> subscribers (for status displays and tests)
function M.count(topic)
  local n = 0
  for _ in pairs(subs[topic] or {}) do n = n + 1 end
  return n
end

return M
