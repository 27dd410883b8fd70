-- The CPU/memory guard's cost on a small policy (the threshold policy of the decide
-- benchmark): decide() calls per second with the JIT on (unguarded, as before the sandbox),
-- interpreted (the sandbox's JIT-off chunk), and interpreted under guard.run (hook armed).
-- Prints key=value lines. Usage: steward script bench/guard.lua [POLICY_FILE] [N]
local guard = require "steward.runtime.guard"
local sandbox = require "steward.runtime.policy.sandbox"
local fs = require "steward.fs"

local file = arg and arg[1] or "../shared/bench/policy.lua"
local N = tonumber(arg and arg[2]) or 1000000
local src = assert(fs.read(file))
local evs = {
  { tenant = "t42", metric = "error_rate", value = 0.07, labels = { region = "eu", service = "api" } },
  { tenant = "t7", metric = "latency_p99_ms", value = 450, labels = { service = "web" } },
  { tenant = "t1", metric = "cpu_util", value = 0.5 },
}

local function rate(decide, wrap)
  local sink = 0
  local t0 = os.clock()
  if wrap then
    for i = 1, N do
      local _, d = guard.run(wrap, decide, evs[i % 3 + 1])
      if d.route then sink = sink + 1 end
    end
  else
    for i = 1, N do
      local d = decide(evs[i % 3 + 1])
      if d.route then sink = sink + 1 end
    end
  end
  assert(sink == N)
  return N / (os.clock() - t0)
end

local jit_fn = assert(loadstring(src, "=policy"))()
local env = sandbox.new_env({ name = "bench" })
local box_fn = assert(sandbox.compile(env, src, "=policy"))()
local budget = { cpu = 1, memory = 64 * 2 ^ 20, name = "bench" }

rate(jit_fn.decide) -- warm up
local jit_on = rate(jit_fn.decide)
local interp = rate(box_fn.decide)
local guarded = rate(box_fn.decide, budget)
local jit_guarded = rate(jit_fn.decide, budget)
print(string.format("guard_calls=%d", N))
print(string.format("guard_jit_on_calls_per_s=%.0f", jit_on))
print(string.format("guard_jit_off_calls_per_s=%.0f", interp))
print(string.format("guard_jit_off_guarded_calls_per_s=%.0f", guarded))
print(string.format("guard_jit_on_guarded_calls_per_s=%.0f", jit_guarded))
print(string.format("guard_cost_per_call_ns=%.0f", (1 / guarded - 1 / jit_on) * 1e9))
print(string.format("guard_cost_vs_jit_pct=%.1f", (jit_on / guarded - 1) * 100))
