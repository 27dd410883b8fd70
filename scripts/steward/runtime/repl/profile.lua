-- steward.runtime.repl.profile: profile(seconds) in the REPL. Samples the whole daemon with LuaJIT's
-- low-level profiler (jit.profile) while the session's task sleeps, then ranks functions and
-- policies by samples. A policy is charged for a sample when one of its files is on the
-- sampled stack, so time in a library it calls counts for the policy that called it.
local time = require "steward.time"
local helpers_rows -- steward.runtime.repl.helpers.rows, required lazily (helpers requires us lazily too)

local format, floor = string.format, math.floor

local M = {}

local VMSTATES = { N = "compiled", I = "interpreted", C = "C code", G = "garbage collector", J = "JIT compiler" }

local running = false

-- run(seconds, {interval_ms, top}, policies_dir, track) -> {samples, functions, policies, vm}.
-- track(closer) registers a closer the session runs if the command is interrupted (a
-- cancelled task does not unwind, so the profiler must be stopped from outside).
function M.run(seconds, opts, policies_dir, track)
  seconds = seconds or 5
  if type(seconds) ~= "number" or seconds <= 0 or seconds > 300 then
    error("profile: seconds: a number from 0 to 300 expected", 3)
  end
  opts = opts or {}
  local interval = floor(tonumber(opts.interval_ms) or 2)
  local top = floor(tonumber(opts.top) or 15)
  if running then return nil, "a profile is already running (one at a time: the profiler is process-wide)" end
  local profile = require "jit.profile"
  helpers_rows = helpers_rows or require("steward.runtime.repl.helpers").rows
  local funcs, pols, vm, total = {}, {}, {}, 0
  local dir = (policies_dir or "policies"):gsub("^%./", "") .. "/"
  running = true
  local stopped = false
  local function stop()
    if stopped then return end
    stopped = true
    profile.stop()
    running = false
  end
  if track then track({ close = stop }) end
  profile.start("fi" .. interval, function(thread, samples, vmstate)
    total = total + samples
    vm[vmstate] = (vm[vmstate] or 0) + samples
    local f = profile.dumpstack(thread, "F", 1)
    funcs[f] = (funcs[f] or 0) + samples
    -- The whole stack, one "file:line" per frame, to find the policy running.
    local stack = profile.dumpstack(thread, "l\n", -40)
    local file = stack:match("[@]?(" .. dir:gsub("%p", "%%%0") .. "[^:\n]+)%.lua")
    if file then
      local name = file:sub(#dir + 1)
      pols[name] = (pols[name] or 0) + samples
    end
  end)
  time.sleep(seconds)
  stop()
  local function ranked(t, key)
    local list = {}
    for k, n in pairs(t) do list[#list + 1] = { [key] = k, samples = n } end
    table.sort(list, function(a, b) return a.samples > b.samples or (a.samples == b.samples and a[key] < b[key]) end)
    for i = top + 1, #list do list[i] = nil end
    for _, r in ipairs(list) do r.share = format("%.1f%%", total > 0 and 100 * r.samples / total or 0) end
    return list
  end
  local vmrows = {}
  for k, n in pairs(vm) do vmrows[#vmrows + 1] = { state = VMSTATES[k] or k, samples = n } end
  table.sort(vmrows, function(a, b) return a.samples > b.samples end)
  return {
    seconds = seconds, samples = total,
    functions = helpers_rows(ranked(funcs, "fn"), { "fn", "samples", "share" }),
    policies = helpers_rows(ranked(pols, "policy"), { "policy", "samples", "share" }),
    vm = helpers_rows(vmrows, { "state", "samples" }),
  }
end

return M
