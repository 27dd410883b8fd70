-- Spec for policies/scaling/capacity.lua: a service whose forecast reaches its limit within the
-- lead time fires CapacityHorizon (alert.firing, with the horizon in the summary); one beyond
-- its lead time does not; once the forecast moves past the lead time the alert resolves; a
-- service at its limit fires too. Run with `steward test policies/scaling`.
local capacity = require "steward.capacity"
local fingerprint = require "steward.alerting.fingerprint"
local astore = require "steward.alerting.store"

local fired = emitted -- steward test: the data of the events of a type

local DAY = 86400

-- 28 days of hourly samples ending now: a daily season of +-200 over +20 a day from 1000.
local function seed_series(name)
  local now = clock.now()
  local t0 = now - 28 * DAY
  local pts = {}
  for i = 0, 28 * 24 - 1 do
    local t = t0 + i * 3600
    local d = (t - t0) / DAY
    pts[#pts + 1] = { t, 1000 + 20 * d + 200 * math.sin(2 * math.pi * d) + (i % 7 - 3) * 4 }
  end
  assert(capacity.import(name, pts))
end

local function configure(lead)
  require("steward.capacity").configure({ capacity = { services = {
    api = { metric = "api:rps", limit = 2000, lead_time = lead },
    web = { metric = "web:rps", limit = 1000 },
  } } })
end

local function state_of(service)
  local fp = fingerprint.of({ alertname = "CapacityHorizon", service = service, severity = "warning" })
  local cur = astore.get(store, { fp })[fp]
  return cur and cur.announced
end

describe("scaling.capacity", function()
  local p
  before_each(function()
    p = policy.load("policies/scaling/capacity.lua")
    seed_series("api:rps")
    seed_series("web:rps")
  end)

  it("runs on its schedule and on capacity.check", function()
    assert.truthy(p:matches("capacity.check"))
    assert.equal(p.def.schedule, "*/15 * * * *")
  end)

  it("fires CapacityHorizon when the limit is within the lead time, and for a saturated service", function()
    configure("14d")
    local res = p:handle({ type = "capacity.check" })
    local f = fired("alert.firing")
    assert.count(f, 2)
    local by = {}
    for _, a in ipairs(f) do by[a.labels.service] = a end
    assert.same(by.api.labels, { alertname = "CapacityHorizon", service = "api", severity = "warning" })
    assert.match(by.api.annotations.summary, "^api reaches its capacity limit in 1[12]%.%d days %(")
    assert.equal(by.api.annotations.status, "warning")
    assert.equal(by.api.annotations.model, "holt_winters")
    assert.match(by.web.annotations.summary, "^web is at its capacity limit %(1000%)")
    assert.same(res.firing, { "api", "web" })
  end)

  it("does not fire beyond the lead time, and resolves once the horizon moves past it", function()
    configure("14d")
    p:handle({ type = "capacity.check" })
    assert.equal(state_of("api"), "firing")
    configure("7d")
    clock.advance("15m")
    local res = p:handle({ type = "policy.schedule" })
    assert.equal(state_of("api"), "resolved")
    assert.count(fired("alert.resolved"), 1)
    assert.same(res.ok, { "api" })
    assert.same(res.firing, { "web" })
  end)
end)
