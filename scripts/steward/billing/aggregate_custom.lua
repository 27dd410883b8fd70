-- steward.billing.aggregate_custom: a metric's own Lua formula, compiled in an environment of
-- pure functions only (string, math without random, table, decimal) and run under CPU and
-- memory budgets, so a formula from an API request can neither reach the daemon, hold the
-- loop nor fill the heap. Errors name the metric (the chunk is "metric:<code>").
local decimal = require "steward.decimal"

local type, pcall, load, setfenv, error, tostring = type, pcall, load, setfenv, error, tostring
local pairs, setmetatable, debug, jit = pairs, setmetatable, debug, rawget(_G, "jit")

local M = {}

local STEP = 1000 -- the count hook's period: its budget is checked every STEP instructions

local function copy(t, except)
  local out = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then out[k] = v end
  end
  return out
end

-- A fresh environment per compile: a formula cannot leave anything behind for another one.
local function env()
  return {
    string = copy(string, { dump = true }),
    -- random would make the same usage bill differently twice
    math = copy(math, { random = true, randomseed = true }),
    table = copy(table),
    -- a copy: a formula assigning decimal.new would change every bill of the daemon
    decimal = setmetatable(copy(decimal), { __call = function(_, v) return decimal.new(v) end }),
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, assert = assert, unpack = unpack,
  }
end

-- compile(code, src) -> the formula (function(state, event) -> state, units), or nil, err.
-- src is a function expression ("function(state, event) ... end") or a chunk returning one.
M.MAX_SOURCE = 65536

function M.compile(code, src)
  if type(src) ~= "string" or src == "" then return nil, "custom: Lua source expected" end
  if #src > M.MAX_SOURCE then return nil, "custom: at most " .. M.MAX_SOURCE .. " bytes of source" end
  local name = "=metric:" .. tostring(code)
  local e = env()
  local chunk = load("return " .. src, name, "t", e)
  local direct = chunk ~= nil
  if not chunk then
    local err
    chunk, err = load(src, name, "t", e)
    if not chunk then return nil, "custom: " .. tostring(err) end
  end
  setfenv(chunk, e)
  if jit then jit.off(chunk, true) end -- hooks never fire inside compiled traces
  local ok, fn = M.guarded(nil, code, chunk)
  if not ok then return nil, "custom: " .. tostring(fn) end
  if type(fn) ~= "function" then
    return nil, "custom: the source must be a function(state, event) or return one, got " ..
                (direct and type(fn) or "a chunk returning " .. type(fn))
  end
  if jit then jit.off(fn, true) end
  return fn
end

-- budget(n, opts) -> the budget of a run over n events: 1 s of CPU and 64 MiB (or 10 M VM
-- instructions) for the run, plus 100 us, 1 KiB (1,000 instructions) per event, so a month of
-- heavy usage is not cut short while a runaway formula still is; opts.budget overrides.
function M.budget(n, o)
  o = o or {}
  return { cpu = o.cpu or (1 + n * 1e-4), memory = o.memory or (64 * 1024 * 1024 + n * 1024),
           instructions = o.instructions or (10000000 + n * 1000) }
end

-- guarded(budget, code, fn, ...) -> pcall's results, fn stopped past its budget
-- ({cpu = seconds, memory = bytes, instructions = n}).
-- Three cases, because LuaJIT has one hook for the whole VM:
-- * inside a policy's guarded run, the policy's CPU and memory budgets bound the formula (a
--   hook of ours would unseat the guard's);
-- * elsewhere in a task or the main chunk (the HTTP API, steward script, the REPL), a guarded
--   run of its own: CPU time and memory, so a doubling string cannot take the daemon's heap;
-- * in a plain coroutine, where the guard cannot run, a count hook of `instructions`.
local function counted(limit, code, fn, ...)
  local left = limit
  local old, mask, count = debug.gethook()
  local source = "=metric:" .. tostring(code)
  local getinfo = debug.getinfo
  local hook
  hook = function()
    left = left - STEP
    -- only the formula's own code is stopped: the hook also fires in ours, until it is removed
    if left < 0 and getinfo(2, "S").source == source then
      -- from now on every instruction of the formula raises, so it cannot catch the stop
      debug.sethook(hook, "", 1)
      error("custom aggregation over its budget of " .. limit .. " instructions", 2)
    end
  end
  debug.sethook(hook, "", STEP)
  local r = { pcall(fn, ...) }
  if old then debug.sethook(old, mask, count) else debug.sethook() end
  return unpack(r, 1, table.maxn(r))
end

function M.guarded(budget, code, fn, ...)
  budget = budget or M.budget(0)
  local has_guard, guard = pcall(require, "steward.runtime.guard")
  if has_guard and type(guard) == "table" and guard.run then
    if guard.covered() then return pcall(fn, ...) end
    local r = { pcall(guard.run, { name = "metric:" .. tostring(code), cpu = budget.cpu, memory = budget.memory }, fn, ...) }
    if r[1] then
      if r[2] then return true, unpack(r, 3, table.maxn(r)) end
      local err = tostring(r[3])
      if r[4] == "cpu" or r[4] == "memory" then err = "custom aggregation: " .. err end
      return false, err
    end
    if not tostring(r[2]):find("must be called from a task or the main chunk", 1, true) then return false, r[2] end
  end
  return counted(budget.instructions, code, fn, ...)
end

return M
