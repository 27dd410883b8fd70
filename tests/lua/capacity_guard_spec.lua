-- steward.capacity in a policy's sandbox: a deferred job's event is held to the events.emit
-- rule (its type needs the capability, outside the policy's own namespace) and a tenant's
-- policy defers only its tenant's events; the daemon's duties (configure, start, flush) are
-- hidden from policies.
local t = require "steward.tap"
local fs = require "steward.fs"
local store = require "steward.runtime.store"
local policies = require "steward.runtime.policies"
local capacity = require "steward.capacity"
local timers = require "steward.runtime.store.timers"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st, dir = spec.st, spec.dir

local function main()
  store.set_default(st)
  capacity.configure({ costs = { prices = { { name = "flat", instance_hour = "0.10" } } } })
  local src = [[
local capacity = require "steward.capacity"
return {
  CAPS
  on = { "ops.jobs.request" },
  handle = function(ev)
    return capacity.defer{ name = ev.data.name, duration = "10m", deadline = "1h", event = { type = ev.data.type, tenant = ev.data.tenant } }
  end,
  decide = function(input)
    local ok, err = pcall(function() return capacity[input.fn]() end)
    return { ok = ok, err = tostring(err) }
  end,
}
]]
  assert(fs.write(dir .. "/job.lua", (src:gsub("CAPS", ""))))
  assert(fs.write(dir .. "/job2.lua", (src:gsub("CAPS", 'capabilities = { ["events.emit"] = { "batch.*" } },'))))
  local p = assert(policies.load_file(dir .. "/job.lua", "ops.jobs", { grants = {} }))
  local r, err = p.handle({ id = "e1", type = "ops.jobs.request", data = { name = "a", type = "batch.run" } }, {})
  t.is(r, nil, "without events.emit, a deferred batch.run is refused")
  t.like(err, "capability 'events.emit' not granted to ops%.jobs %(type batch%.run%)", "... naming the capability and the type")
  r = p.handle({ id = "e2", type = "ops.jobs.request", data = { name = "b", type = "ops.jobs.run" } }, {})
  t.ok(r and r.start, "its own namespace (ops.jobs.run) needs no grant")
  local granted = assert(policies.load_file(dir .. "/job2.lua", "ops.jobs",
    { grants = { ["ops.jobs"] = { ["events.emit"] = { "batch.*" } } } }))
  r = granted.handle({ id = "e3", type = "ops.jobs.request", data = { name = "c", type = "batch.run" } }, {})
  t.ok(r and r.start, "with events.emit batch.*, batch.run may be deferred")
  for _, fn in ipairs({ "configure", "start", "flush" }) do
    local res = p.decide({ fn = fn }, {})
    t.ok(not res.ok and res.err:match("capacity%." .. fn .. " is not available to policies"), fn .. " is hidden from policies")
  end
  local names = {}
  for _, tm in ipairs(assert(timers.pending(st))) do names[#names + 1] = tm.id end
  table.sort(names)
  t.is(table.concat(names, ","), "k:capacity.defer:b,k:capacity.defer:c", "only the allowed jobs were scheduled")
end

spec.run(main)
