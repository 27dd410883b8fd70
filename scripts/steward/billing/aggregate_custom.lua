-- steward.billing.aggregate_custom: a metric's own Lua formula, compiled in an environment of
-- pure functions only (string, math without random, table, decimal) and run under an
-- instruction budget, so a formula from an API request can neither reach the daemon nor hold
-- the loop. Errors name the metric (the chunk is "metric:<code>").
local decimal = require "steward.decimal"

local type, pcall, load, setfenv, error, tostring = type, pcall, load, setfenv, error, tostring
local pairs, debug, jit = pairs, debug, rawget(_G, "jit")

local M = {}

M.DEFAULT_BUDGET = 1000000 -- VM instructions per aggregation run
local STEP = 1000          -- the count hook's period: the budget is checked every STEP instructions

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
    decimal = decimal,
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, assert = assert, unpack = unpack,
  }
end

-- compile(code, src) -> the formula (function(state, event) -> state, units), or nil, err.
-- src is a function expression ("function(state, event) ... end") or a chunk returning one.
function M.compile(code, src)
  if type(src) ~= "string" or src == "" then return nil, "custom: Lua source expected" end
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
  local ok, fn = M.guarded(M.DEFAULT_BUDGET, code, chunk)
  if not ok then return nil, "custom: " .. tostring(fn) end
  if type(fn) ~= "function" then
    return nil, "custom: the source must be a function(state, event) or return one, got " ..
                (direct and type(fn) or "a chunk returning " .. type(fn))
  end
  if jit then jit.off(fn, true) end
  return fn
end

-- guarded(budget, code, fn, ...) -> pcall's results, with fn stopped after `budget` VM
-- instructions. Inside a policy's guarded run the policy's CPU budget bounds it instead:
-- LuaJIT has one hook for the whole VM and ours would unseat the guard's.
function M.guarded(budget, code, fn, ...)
  local has_guard, guard = pcall(require, "steward.runtime.guard")
  if has_guard and type(guard) == "table" and guard.covered and guard.covered() then return pcall(fn, ...) end
  local left = budget
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
      error("custom aggregation over its budget of " .. budget .. " instructions", 2)
    end
  end
  debug.sethook(hook, "", STEP)
  local r = { pcall(fn, ...) }
  if old then debug.sethook(old, mask, count) else debug.sethook() end
  return unpack(r, 1, table.maxn(r))
end

return M
