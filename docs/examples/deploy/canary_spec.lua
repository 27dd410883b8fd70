-- Spec of the tutorial's rollout policy (docs/examples/deploy/canary.lua), run by `steward test
-- docs/examples/deploy`: the real rollout engine and store on the fake clock; the supervisor,
-- HAProxy and the HAProxy metric are spec doubles that record what they are asked.
local rollout = require "steward.deploy.rollout"
local rstore = require "steward.deploy.rollout_store"

local calls, error_rate = {}, 0
local function rec(name) return function(_, rev, x) calls[#calls + 1] = name .. " " .. tostring(rev); return true end end
package.loaded["steward.deploy.supervisor"] = { instances = function() return {} end,
  start = rec("start"), scale = rec("scale"), stop = rec("stop"), wait_ready = rec("wait_ready"),
  endpoints = function() return { { host = "127.0.0.1", port = 9101 } } end }
package.loaded["steward.deploy.haproxy"] = { sync = rec("sync"), drain = rec("drain"), remove = rec("remove"),
  set_weights = function(_, w)
    local keys = {}
    for k, v in pairs(w) do keys[#keys + 1] = k .. "=" .. v end
    table.sort(keys)
    calls[#calls + 1] = "weights " .. table.concat(keys, " ")
    return true
  end }
package.loaded["steward.deploy.metrics.haproxy"] = function() return function() return error_rate end end
-- steward.deploy.analysis when the tree has it; else a double of its interface (measure each
-- metric every interval; failure_limit; count reached: Successful).
if not pcall(require, "steward.deploy.analysis") then
  package.loaded["steward.deploy.analysis"] = {
    run = function(_, now) return { phase = "Running", n = 0, failed = 0, due = now } end,
    step = function(s, now, spec)
      if now < s.due then return s, s.due end
      local m = spec.metrics[1]
      local v = m.provider()
      if not m.success_condition(v) then s.failed = s.failed + 1 end
      if s.failed > (m.failure_limit or 0) then s.phase = "Failed"; return s end
      s.n = s.n + 1
      if s.n >= m.count then s.phase = "Successful"; return s end
      s.due = now + require("steward.time").parse_duration(m.interval)
      return s, s.due
    end,
    terminate = function(s) return s end,
  }
end

describe("deploy.web (the tutorial's canary)", function()
  local p
  before_each(function()
    calls, error_rate = {}, 0
    rollout.services = { web = { run = { instances = 2 }, haproxy = { socket = "var/haproxy.sock", backend = "web" } } }
    p = policy.load("canary.lua")
  end)

  local function admit()
    p:handle({ id = "req-1", type = "deploy.admitted", data = { service = "web", revision = "v2", stable = "v1" } })
    return rollout.rollout_id("web", "v2", "req-1")
  end

  it("declares the deploy capability for its service", function()
    assert.same(p.def.capabilities, { deploy = { "web" } })
    assert.truthy(p:matches("deploy.admitted"))
    assert.truthy(p:matches("rollout.tick"))
    assert.truthy(p:matches("approval.granted"))
  end)

  it("walks the canary and waits for a person at the end", function()
    local id = admit()
    assert.same(calls, { "scale v2", "wait_ready v2", "sync v2", "weights v1=80 v2=20" })
    clock.advance("1m")
    clock.advance("30s")
    local r = rstore.get(store, id)
    assert.equal(r.phase, "Paused")
    assert.equal(r.step, 5)
    assert.equal(calls[#calls], "weights v1=50 v2=50")
    p:handle({ type = "rollout.command", data = { rollout = id, action = "promote", by = "ana" } })
    r = rstore.get(store, id)
    assert.equal(r.phase, "Completed")
    assert.equal(calls[#calls], "weights v1=0 v2=100")
  end)

  it("aborts on errors: traffic back at once, the canary stopped after 30 s", function()
    local id = admit()
    error_rate = 0.2
    clock.advance("1m")
    local r = rstore.get(store, id)
    assert.equal(r.phase, "Aborted")
    assert.equal(calls[#calls], "weights v1=100 v2=0")
    clock.advance("30s")
    assert.same({ calls[#calls - 1], calls[#calls] }, { "remove v2", "stop v2" })
  end)
end)
