-- steward.deploy.rollout_ports.resolve: a metric provider named by a policy ({haproxy = {...}})
-- is one instance per (run, metric) for as long as the run goes on, whatever the garbage
-- collector does between two measurements — a counter provider (HAProxy's error_rate) answers
-- for the requests since its previous sample, and a new instance has none: it would answer for
-- every request since the server was added. Released when the run ends.
-- Run by `steward test`; under prove it hands itself to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local ports = require "steward.deploy.rollout_ports"

-- A provider module whose every instance counts its own calls: a second instance starts at 1.
local made = 0
package.loaded["steward.deploy.metrics.spec_counter"] = {
  provider = function()
    made = made + 1
    local calls = 0
    return function()
      calls = calls + 1
      return calls
    end
  end,
}

local SPEC = { metrics = { { name = "m", provider = { spec_counter = {} } } } }

local function measure(key)
  -- a fresh resolve per measurement, as the engine does in each handler run
  return ports.resolve(SPEC, key, "web", "v2").metrics[1].provider()
end

describe("rollout_ports.resolve", function()
  it("keeps a run's provider instance across a full garbage collection between measurements", function()
    made = 0
    assert.equal(measure("web~v2/a1/s2"), 1)
    collectgarbage("collect")
    collectgarbage("collect")
    assert.equal(measure("web~v2/a1/s2"), 2)
    assert.equal(made, 1)
  end)

  it("another run has its own instance; a released run starts again", function()
    made = 0
    assert.equal(measure("web~v2/a1/s4"), 1)
    assert.equal(measure("web~v2/a2/s4"), 1)
    assert.equal(measure("web~v2/a1/s4"), 2)
    ports.release("web~v2/a1/s4")
    assert.equal(measure("web~v2/a1/s4"), 1)
    assert.equal(measure("web~v2/a2/s4"), 2)
    assert.equal(made, 3)
  end)
end)
