-- What capability checks cost (gh-12): the per-call price of each guarded check, against the
-- CPU one decide costs (the threshold policy run as POST /v1/decide runs it: guard.run in the
-- policy's sandbox). A policy that calls no guarded function pays nothing per decide; one
-- that does pays the check of each call. Prints key=value lines.
-- Usage: steward script bench/capabilities.lua [N]
local caps = require "steward.runtime.policy.capabilities"
local guards = require "steward.runtime.policy.guards"
local policies = require "steward.runtime.policies"
local guard = require "steward.runtime.guard"
local fs = require "steward.fs"
require("steward.log").set_level("error")

local N = tonumber(arg and arg[1]) or 200000

local function per_call(n, fn)
  local t0 = os.clock()
  for i = 1, n do fn(i) end
  return (os.clock() - t0) / n * 1e6 -- µs
end

-- One decide of the threshold policy, as the daemon runs it.
local p = assert(policies.load_file("bench/policies/threshold.lua", "bench.threshold", { grants = {} }))
local input = { tenant = "t42", metric = "error_rate", value = 0.07, labels = { region = "eu" } }
local decide_us = per_call(N, function() guard.run(p.budget, p.decide, input, {}) end)

-- The checks a guarded call makes before it acts.
local http_scope = { "https://hooks.slack.com/services/", "api.example.com", "http://127.0.0.1:9093/" }
local url_us = per_call(N, function() return caps.url_in(http_scope, "https://hooks.slack.com/services/T0/B0/x") end)
local proc_scope = { "/usr/bin/id", { exe = "/usr/bin/git", args = { "^status$", "^%-%-short$" } } }
local proc_us = per_call(N, function() return caps.proc_in(proc_scope, { "/usr/bin/git", "status", "--short" }) end)
local type_us = per_call(N, function() return caps.type_in({ "deploy.*", "billing.charge" }, "deploy.requested") end)
local dir = os.tmpname(); os.remove(dir); assert(fs.mkdir(dir))
local fs_scope = { dir }
local path_us = per_call(N / 10, function() return caps.path_in(fs_scope, dir .. "/sub/file.txt", guards.resolve) end)
os.remove(dir)

print(string.format("decide_us=%.3f", decide_us))
print(string.format("check_http_us=%.3f check_proc_us=%.3f check_emit_us=%.3f check_fs_us=%.3f",
  url_us, proc_us, type_us, path_us))
print(string.format("http_check_pct_of_decide=%.2f emit_check_pct_of_decide=%.2f fs_check_pct_of_decide=%.2f",
  url_us / decide_us * 100, type_us / decide_us * 100, path_us / decide_us * 100))
