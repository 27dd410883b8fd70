-- steward.deploy.metrics.{prometheus,events,slo}: the analysis metric providers, on the fake
-- clock: Prometheus answers through HTTP stubs in the wire format of its HTTP API (a real
-- Prometheus answers the same queries in tests/e2e/deploy_metrics_prometheus.t), events and SLOs
-- come from the spec's own store; then each provider drives an analysis run, and a policy meets
-- the capability checks. Run by `steward test`; under prove it hands itself to the same runner.
if not describe then
  -- An error, not os.exit: os.exit skips closing the Lua state, which the ASan build reports as leaks.
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local json = require "steward.json"
local prometheus = require "steward.deploy.metrics.prometheus"
local emetrics = require "steward.deploy.metrics.events"
local smetrics = require "steward.deploy.metrics.slo"
local analysis = require "steward.deploy.analysis"
local slo = require "steward.slo"
local events = require "steward.events"

local PROM = "http://prom.test:9090"

local function vector(...)
  local result = {}
  for i, v in ipairs { ... } do
    result[i] = { metric = { instance = "i" .. i }, value = { clock.now(), v } }
  end
  return { status = 200, headers = { ["content-type"] = "application/json" },
    body = json.encode { status = "success", data = { resultType = "vector", result = json.array(result) } } }
end

describe("metrics.prometheus", function()
  local q = 'sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))'
  it("a single-sample vector is its number; the query runs at the clock's now", function()
    http_stub.on("GET", PROM .. "/api/v1/query*", vector("0.0125"))
    local fn = prometheus.provider { url = PROM, query = q }
    assert.equal(fn(), 0.0125)
    local url = captured.http[1].url
    assert.match(url, "^http://prom%.test:9090/api/v1/query%?query=sum%%28rate%%28http_requests_total%%7Bcode%%3D~%%225%.%.%%22")
    assert.match(url, "&time=" .. clock.now() .. "%.000$")
  end)
  it("a scalar is its number", function()
    http_stub.on("GET", PROM .. "/api/v1/query*", { body = json.encode { status = "success",
      data = { resultType = "scalar", result = { clock.now(), "42" } } } })
    assert.equal(prometheus.provider { url = PROM, query = "scalar(x)" }(), 42)
  end)
  local errors = {
    { "an empty vector is no data", function() return vector() end, "no data %(empty result or NaN%) for: up" },
    { "NaN is no data", function() return vector("NaN") end, "no data" },
    { "two series are an error", function() return vector("1", "2") end, "returned 2 series, one expected" },
    { "a bad query names Prometheus's reason", function()
      return { status = 400, body = json.encode { status = "error", errorType = "bad_data", error = "parse error" } }
    end, "query failed %(HTTP 400, bad_data: parse error%)" },
    { "a transport failure", function() return { error = "Connection refused", kind = "connect" } end, "Connection refused" },
  }
  for _, c in ipairs(errors) do
    it(c[1], function()
      http_stub.on("GET", PROM .. "/api/v1/query*", c[2]())
      local v, err = prometheus.provider { url = PROM, query = "up" }()
      assert.equal(v, nil)
      assert.match(err, c[3])
    end)
  end
  it("bad arguments name the field", function()
    assert.error(function() prometheus.provider { url = "prom:9090", query = "up" } end, "url: http")
    assert.error(function() prometheus.provider { url = PROM } end, "query: PromQL string expected")
    assert.error(function() prometheus.provider { url = PROM, query = "up", step = "1m" } end, "unknown field 'step'")
  end)
  it("drives an analysis: an error rate above 5% fails the canary at the second failure", function()
    local rates = { "0.01", "0.02", "0.09", "0.12" }
    local i = 0
    http_stub.on("GET", PROM .. "/api/v1/query*", function() i = i + 1 return vector(rates[i]) end)
    local spec = { metrics = { { name = "error-rate", interval = "1m", count = 10, failure_limit = 1,
      provider = prometheus.provider { url = PROM, query = q }, failure_condition = function(v) return v > 0.05 end } } }
    local run = analysis.run(spec)
    local due = clock.now()
    while due do
      clock.set(due)
      run, due = analysis.step(run, clock.now(), spec)
    end
    assert.same({ run.phase, i, run.results["error-rate"].failed }, { "Failed", 4, 2 })
  end)
  it("Prometheus down: consecutive errors end the run in Error after the limit", function()
    http_stub.on("GET", PROM .. "/api/v1/query*", { error = "Connection refused", kind = "connect" })
    local spec = { metrics = { { name = "error-rate", interval = "1m", consecutive_error_limit = 2,
      provider = prometheus.provider { url = PROM, query = q } } } }
    local run = analysis.run(spec)
    local due, steps = clock.now(), 0
    while due do
      steps = steps + 1
      clock.set(due)
      run, due = analysis.step(run, clock.now(), spec)
    end
    assert.same({ run.phase, steps }, { "Error", 3 })
    assert.match(run.message, "consecutive_errors %(3%) > consecutive_error_limit %(2%)")
  end)
end)

describe("metrics.events", function()
  local function emit_requests(list)
    local evs = {}
    for i, r in ipairs(list) do
      evs[i] = { type = "http.request", tenant = r.tenant, time = clock.now() - r.ago, data = { code = r.code, route = r.route or "/" } }
    end
    assert(events.emit(evs))
  end
  before_each(function()
    emit_requests {
      { ago = 30, code = 200 }, { ago = 40, code = 503 }, { ago = 50, code = 200, route = "/pay" },
      { ago = 299, code = 500 }, { ago = 301, code = 500 }, -- the last one is outside a 5m window
      { ago = 10, code = 200, tenant = "acme" },
      { ago = 0, code = 500 }, -- at now: counts next time (windows are [now - w, now))
    }
  end)
  it("count over a window", function()
    assert.equal(emetrics.provider { type = "http.request", window = "5m" }(), 5)
    assert.equal(emetrics.provider { type = "http.request", window = "1m" }(), 4)
  end)
  it("a match table compares data fields; a function sees the event", function()
    assert.equal(emetrics.provider { type = "http.request", window = "5m", match = { code = 500 } }(), 1)
    assert.equal(emetrics.provider { type = "http.*", window = "5m", match = function(ev) return ev.data.route == "/pay" end }(), 1)
  end)
  it("rate per second and ratio", function()
    assert.equal(emetrics.provider { type = "http.request", window = "5m", select = "rate" }(), 5 / 300)
    assert.equal(emetrics.provider { type = "http.request", window = "5m", ratio = function(ev) return ev.data.code >= 500 end }(), 2 / 5)
  end)
  it("tenant narrows to one tenant's events", function()
    assert.equal(emetrics.provider { type = "http.request", window = "5m", tenant = "acme" }(), 1)
  end)
  it("a ratio over no events is an error (an analysis counts it)", function()
    local v, err = emetrics.provider { type = "deploy.none", window = "5m", ratio = function() return true end }()
    assert.equal(v, nil)
    assert.match(err, "no deploy.none events in the last 5m")
  end)
  it("bad arguments name the field", function()
    assert.error(function() emetrics.provider { type = "x y", window = "5m" } end, "type: event type")
    assert.error(function() emetrics.provider { type = "a.b", window = "soon" } end, "window: positive duration")
    assert.error(function() emetrics.provider { type = "a.b", window = "5m", select = "ratio" } end, "ratio: function")
    assert.error(function() emetrics.provider { type = "a.b", window = "5m", select = "sum" } end, "select:")
  end)
end)

describe("metrics.slo", function()
  local function round(v) return v and math.floor(v * 1e9 + 0.5) / 1e9 end
  local function define()
    return slo.define { name = "checkout", objective = 0.99, period = "30d",
      source = slo.events { type = "http.request", good = function(ev) return ev.data.code < 500 end } }
  end
  before_each(function()
    local evs = {}
    for i = 1, 100 do
      evs[i] = { type = "http.request", time = clock.now() - 200 + i, data = { code = i <= 10 and 503 or 200 } }
    end
    for i = 1, 900 do
      evs[#evs + 1] = { type = "http.request", time = clock.now() - 86400 + i, data = { code = 200 } }
    end
    assert(events.emit(evs))
  end)
  it("burn rate over an alert window, SLI, budget", function()
    local s = define()
    assert.equal(round(smetrics.provider { slo = s, window = "5m" }()), 10) -- 10% errors / 1% allowed
    assert.equal(round(smetrics.provider { slo = s, value = "sli", window = "5m" }()), 0.9)
    assert.equal(round(smetrics.provider { slo = s }()), 1) -- 10 bad of 1000 over the period
    assert.equal(round(smetrics.provider { slo = s, value = "budget_remaining" }()), 0)
    assert.equal(round(smetrics.provider { slo = s, value = "budget_remaining_ratio" }()), 0)
  end)
  it("gates an analysis: a burn rate of 10 fails a canary that allows 2", function()
    local spec = { metrics = { { name = "burn", provider = smetrics.provider { slo = define(), window = "5m" },
      success_condition = function(v) return v < 2 end } } }
    local run = analysis.run(spec)
    analysis.step(run, clock.now(), spec)
    assert.same({ run.phase, round(run.results.burn.measurements[1].value) }, { "Failed", 10 })
  end)
  it("no data is an error", function()
    local s = slo.define { name = "quiet", objective = 0.99,
      source = slo.events { type = "none.here", good = function() return true end } }
    local v, err = smetrics.provider { slo = s, window = "1h" }()
    assert.equal(v, nil)
    assert.match(err, "quiet: no data for burn_rate over 1h")
  end)
  it("bad arguments name the field", function()
    local s = define()
    assert.error(function() smetrics.provider { slo = {} } end, "slo: an SLO from slo.define")
    assert.error(function() smetrics.provider { slo = s, window = "7m" } end, "window: 7m is not one of the SLO's alert windows")
    assert.error(function() smetrics.provider { slo = s, value = "budget" } end, "value:")
  end)
end)

describe("in a policy (capabilities)", function()
  local dir
  local function write_policy(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)
  local POLICY = [[
local prometheus = require "steward.deploy.metrics.prometheus"
local analysis = require "steward.deploy.analysis"
local spec = { metrics = { { name = "up", provider = prometheus.provider { url = "%s", query = "up" } } } }
return {
  capabilities = %s,
  decide = function()
    local run = analysis.run(spec)
    analysis.step(run, require("steward.time").now(), spec)
    return { phase = run.phase, message = run.results.up.measurements[1].message }
  end,
}
]]
  it("without the http capability the measurement is an error naming it", function()
    local p = policy.load(write_policy("gate.lua", POLICY:format(PROM, "{}")))
    local r = p:decide({})
    assert.equal(r.phase, "Running")
    assert.match(r.message, "capability 'http' not granted to gate %(Prometheus at http://prom%.test:9090%)")
    assert.count(captured.http, 0)
  end)
  it("with it the query runs", function()
    http_stub.on("GET", PROM .. "/api/v1/query*", vector("1"))
    local p = policy.load(write_policy("gate.lua", POLICY:format(PROM, '{ http = { "' .. PROM .. '/" } }')))
    assert.same(p:decide({}), { phase = "Successful" })
  end)
  it("a tenant's policy counts only its tenant's events", function()
    assert(events.emit { { type = "http.request", tenant = "acme", time = clock.now() - 5, data = { code = 200 } },
      { type = "http.request", tenant = "other", time = clock.now() - 5, data = { code = 200 } },
      { type = "http.request", time = clock.now() - 5, data = { code = 200 } } })
    local p = policy.load(write_policy("count.lua", [[
local em = require "steward.deploy.metrics.events"
local mine = em.provider { type = "http.request", window = "1m" }
local theirs = em.provider { type = "http.request", window = "1m", tenant = "other" }
return { tenant = "acme", decide = function() return { mine = mine(), theirs = { theirs() } } end }
]]))
    local r = p:decide({})
    assert.equal(r.mine, 1)
    assert.equal(r.theirs[1], nil)
    assert.match(r.theirs[2], "a policy of tenant acme reads only its tenant's events")
  end)
  it("a bad field in a policy's provider is reported at the policy's line", function()
    local path = write_policy("bad.lua", [[
local em = require "steward.deploy.metrics.events"
local m = em.provider { type = "http.request", window = "soon" }
return { decide = function() return m() end }
]])
    assert.error(function() policy.load(path) end, "bad%.lua:2: metrics%.events: window: positive duration")
  end)
end)
