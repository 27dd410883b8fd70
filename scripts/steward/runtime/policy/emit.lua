-- Bounds on the events policies emit, so one event cannot set off an unbounded number of
-- others: at most limits.emit_per_run per run (handler, decide, callback), at most
-- limits.emit_per_second per policy, and a cause depth (an event a policy emits while
-- handling an event of depth n has depth n + 1) of at most limits.max_cause_depth, past which
-- a cycle is assumed. The sandbox routes a policy's events.emit and durable time.after
-- through admit(); dispatch runs handlers through run_handler() so the run knows its event.
-- A refusal raises and ends the run (guard.stop), even when the policy catches the error.
local guard = require "steward.runtime.guard"
local metrics = require "steward.metrics"
local time = require "steward.time"

local type, pairs, select, unpack, error = type, pairs, select, unpack, error
local format, floor = string.format, math.floor

local M = {}

M.DEFAULTS = { per_run = 1000, per_second = 1000, max_depth = 16 }
local limits = { per_run = M.DEFAULTS.per_run, per_second = M.DEFAULTS.per_second, max_depth = M.DEFAULTS.max_depth }

local m_emitted = metrics.counter("steward_policy_events_emitted_total",
  "Events (and durable timers) policies emitted", { "policy" })
local m_refused = metrics.counter("steward_policy_emit_refused_total",
  "Policy runs an emit limit stopped: per_run, per_second or depth", { "policy", "limit" })

-- policy -> {second, count}: a fixed one-second window each.
local windows = {}

-- configure{per_run, per_second, max_depth}: the daemon's limits (unset fields keep theirs).
function M.configure(o)
  for k in pairs(M.DEFAULTS) do
    local v = o[k]
    if v ~= nil then
      if type(v) ~= "number" or v ~= floor(v) or v < 1 then
        error(format("emit.configure: %s: integer >= 1 expected", k), 2)
      end
      limits[k] = v
    end
  end
end

function M.limits() return { per_run = limits.per_run, per_second = limits.per_second, max_depth = limits.max_depth } end

-- The run ends with it as with a spent budget (guard.stop: pcall cannot swallow it), so a
-- policy retrying in a loop does not burn its CPU budget first. Counted once per run.
local function refuse(c, policy, limit, msg)
  if not (c and c.refused) then
    m_refused:inc(1, policy, limit)
    if c then
      c.refused = msg
      guard.stop(msg, "emit")
    end
  end
  error(msg, 0)
end

-- admit(n [, what]) -> the depth to give the n events about to be emitted, or raises naming
-- the limit. Called by the wrappers below, on the policy's side of events.emit / time.after.
function M.admit(n, what)
  local c = guard.context()
  local cur = guard.current()
  local policy = cur and cur.name or "?"
  what = what or "events.emit"
  local depth = (c and c.depth or 0) + 1
  if depth > limits.max_depth then
    refuse(c, policy, "depth", format("%s: event cause depth %d exceeds limits.max_cause_depth (%d): " ..
      "each event in the chain was emitted while handling the one before (a cycle between policies?)",
      what, depth, limits.max_depth))
  end
  local emitted = (c and c.emitted or 0) + n
  if emitted > limits.per_run then
    refuse(c, policy, "per_run", format("%s: this run would emit %d events, over limits.emit_per_run (%d)",
      what, emitted, limits.per_run))
  end
  local second = floor(time.monotonic())
  local w = windows[policy]
  if not w or w.second ~= second then
    w = { second = second, count = 0 }
    windows[policy] = w
  end
  if w.count + n > limits.per_second then
    refuse(c, policy, "per_second", format("%s: policy %s would emit %d events in one second, over " ..
      "limits.emit_per_second (%d)", what, policy, w.count + n, limits.per_second))
  end
  w.count = w.count + n
  if c then c.emitted = emitted end
  m_emitted:inc(n, policy)
  return depth
end

-- inherit() -> a function that makes the run calling it a continuation of the run current
-- now (same cause depth): for callbacks a policy hands to task.spawn or time.after, so a
-- chain cannot restart at depth 0 by emitting from a task of its own.
function M.inherit()
  local c = guard.context()
  local depth = c and c.depth
  return function()
    if not depth then return end
    local nc = guard.context()
    if nc and not nc.depth then nc.depth = depth end
  end
end

local function pack(...) return { n = select("#", ...), ... } end

-- run_handler(handle, ev, ctx): the handler, inside its guarded run, knowing its event's depth;
-- a refused emit the handler caught still fails the run.
function M.run_handler(handle, ev, ctx)
  local c = guard.context()
  if c then c.depth = type(ev) == "table" and type(ev.depth) == "number" and ev.depth or 0 end
  local r = pack(handle(ev, ctx))
  if c and c.refused then error(c.refused, 0) end
  return unpack(r, 1, r.n)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The limited functions, by module (as steward.runtime.effects records them).
local WRAPS = {
  ["steward.events"] = {
    emit = function(f)
      return function(evs, opts, ...)
        if type(evs) ~= "table" or (opts ~= nil and type(opts) ~= "table") then
          return f(evs, opts, ...) -- its own error names the argument
        end
        opts = opts and copy(opts) or {}
        opts.depth = M.admit(evs[1] ~= nil and #evs or 1, "events.emit") -- never the policy's own: it could reset a chain
        return f(evs, opts, ...)
      end
    end,
  },
  ["steward.time"] = {
    after = function(f)
      return function(d, what, opts, ...)
        if type(what) ~= "table" or (opts ~= nil and type(opts) ~= "table") then
          return f(d, what, opts, ...) -- an in-process callback, or a misuse its own error names
        end
        opts = opts and copy(opts) or {}
        opts.depth = M.admit(1, "time.after") -- the timer's event, when it fires, is this deep
        return f(d, what, opts, ...)
      end
    end,
  },
}

-- overrides(name, mod, o) -> o with limiting wrappers around the module's emitting functions
-- (around o's own override of a function when it has one).
function M.overrides(name, mod, o) return require("steward.runtime.effects").wrap(WRAPS, name, mod, o) end

return M
