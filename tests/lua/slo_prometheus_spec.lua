-- steward.slo over Prometheus: a fake Prometheus (steward.httpd on 127.0.0.1, port 0, started
-- here) answers canned HTTP API responses and records the query parameters it receives.
local t = require "steward.tap"
local slo = require "steward.slo"
local httpd = require "steward.httpd"
local json = require "steward.json"

local T = 1700000000
local GOOD = 'sum(rate(req_total{code!~"5.."}[$window]))'
local TOTAL = 'sum(rate(req_total[$window]))'
-- Hand-picked good amounts per window out of a total of 32: burn = 32 * (32 - good) / 32.
local good_by_window = { ["5m"] = 16, ["30m"] = 28, ["1h"] = 16, ["2h"] = 24, ["6h"] = 31, ["1d"] = 30, ["3d"] = 32, ["30d"] = 31 }

local seen, mode = {}, "ok"
local function vector(v) return { status = "success", data = { resultType = "vector", result = { { metric = {}, value = { T, v } } } } } end
local function answer(req)
  local q = httpd.parse_query(req.query)
  seen[#seen + 1] = { method = req.method, path = req.path, query = q.query, time = q.time }
  local win = q.query:match("%[(%w+)%]")
  local is_good = q.query:find("code!~", 1, true) ~= nil
  local body, status = nil, 200
  if mode == "ok" or mode == "calendar" then
    body = vector(is_good and tostring(good_by_window[win] or 32) or "32")
  elseif mode == "nodata" then
    if win == "5m" then body = { status = "success", data = { resultType = "vector", result = {} } }
    elseif win == "1h" then body = vector("NaN")
    else body = { status = "success", data = { resultType = "scalar", result = { T, "32" } } } end
  elseif mode == "bad_query" then
    status, body = 400, { status = "error", errorType = "bad_data", error = "1:5: parse error: unexpected character" }
  elseif mode == "two_series" then
    body = vector("1"); body.data.result[2] = body.data.result[1]
  elseif mode == "not_json" then
    return 502, { ["content-type"] = "text/html" }, "<html>bad gateway</html>"
  end
  return status, { ["content-type"] = "application/json" }, json.encode(body)
end
local srv = assert(httpd.listen { host = "127.0.0.1", port = 0, handler = answer })
local base = "http://127.0.0.1:" .. srv:port()

local s = slo.define { name = "api", objective = 1 - 1 / 32, period = "30d",
  source = slo.prometheus { url = base .. "/", good = GOOD, total = TOTAL } }
local e, err = s:evaluate(T)
t.ok(e, "evaluation succeeds" .. (err and (": " .. err) or ""))
e = e or { burn = {}, alerts = {}, budget = {} }
t.is_deeply(e.burn, { ["5m"] = 16, ["30m"] = 4, ["1h"] = 16, ["2h"] = 8, ["6h"] = 1, ["1d"] = 2, ["3d"] = 0, budget = 1 },
  "burn rates from good/total per window (by hand)")
t.is(e.sli["30m"], 28 / 32, "SLI = good / total")
local firing = {}
for _, a in ipairs(e.alerts) do if a.firing then firing[#firing + 1] = a.severity .. " " .. a.long .. "/" .. a.short end end
t.is_deeply(firing, { "page 1h/5m" }, "only the fast page fires (16,16 >= 14.4; 1d/2h = 2,8 < 3; 3d/6h = 0,1 < 1)")
t.is_deeply({ e.budget.total, e.budget.consumed, e.budget.remaining, e.budget.remaining_ratio }, { 1, 1, 0, 0 },
  "budget in the queries' units: allowed 32/32, spent 1")
t.is(#seen, 16, "one instant query per window for good and one for total (8 windows)")
local queries, ok_shape = {}, true
for _, r in ipairs(seen) do
  queries[r.query] = true
  if r.method ~= "GET" or r.path ~= "/api/v1/query" or r.time ~= "1700000000.000" then ok_shape = false end
end
t.ok(ok_shape, "every request is GET /api/v1/query with time=<now>")
t.ok(queries['sum(rate(req_total{code!~"5.."}[5m]))'], "$window replaced in the good query (URL-decoded by the server)")
t.ok(queries["sum(rate(req_total[30d]))"], "the budget window is the period")
t.ok(queries["sum(rate(req_total[3d]))"] and queries["sum(rate(req_total[30m]))"], "alert windows are queried")
local ch = s:changes(e)
t.is(#ch == 1 and ch[1].data.status .. " " .. ch[1].data.severity, "firing page", "the page becomes a slo.burn event")

-- calendar period: the range is the month so far, in seconds
mode, seen = "calendar", {}
local M0 = 1698796800
local sc = slo.define { name = "api-month", objective = 0.999, period = "month", source = s.source }
e = assert(sc:evaluate(M0 + 7200))
queries = {}
for _, r in ipairs(seen) do queries[r.query] = true end
t.ok(queries["sum(rate(req_total[7200s]))"], "a calendar month two hours in queries [7200s]")
t.is(e.budget.from, M0, "and its budget starts at the month's start")
seen = {}
e = assert(sc:evaluate(M0))
local zero = false
for _, r in ipairs(seen) do if r.query:find("[0s]", 1, true) then zero = true end end
t.ok(#seen == 14 and not zero, "at the month's first second the budget window is empty and not queried ([0s] is no PromQL)")
t.is(e.budget.remaining_ratio, nil, "and the budget has no data")

-- no data
mode = "nodata"
e = assert(s:evaluate(T))
t.is(e.burn["5m"], nil, "an empty vector is no data")
t.is(e.burn["1h"], nil, "NaN is no data")
t.is(e.burn["6h"], 0, "a scalar result is read")
t.is(e.alerts[1].firing, false, "no data: no alert")
ch = s:changes(e)
t.is(#ch == 1 and ch[1].data.status, "resolved", "the page resolves when its windows have no data")

-- errors
local function fails(m, pattern, name)
  mode = m
  local r, msg = s:evaluate(T)
  t.is(r, nil, name .. ": nil")
  t.like(msg or "", pattern, name .. ": message")
end
fails("bad_query", '^slo api: prometheus: query failed %(HTTP 400, bad_data: 1:5: parse error: unexpected character%): sum%(rate%(req_total',
  "a query error")
fails("two_series", "returned 2 series, one expected %(aggregate with sum%(%)%)", "several series")
fails("not_json", "HTTP 502 from http://127.0.0.1:%d+: response is not JSON", "a non-JSON answer")

local dead = assert(httpd.listen { host = "127.0.0.1", port = 0, handler = answer })
local dead_port = dead:port()
dead:close(); assert(dead:wait_closed("5s"))
local sd = slo.define { name = "down", objective = 0.99, source = slo.prometheus { url = "http://127.0.0.1:" .. dead_port, good = GOOD, total = TOTAL, timeout = "2s" } }
local r, msg = sd:evaluate(T)
t.is(r, nil, "an unreachable Prometheus: nil")
t.like(msg or "", "^slo down: prometheus: GET http://127%.0%.0%.1:%d+/api/v1/query%?query=sum%%28rate", "an unreachable Prometheus: the request is named")

t.raises(function() slo.prometheus { url = "prom:9090", good = GOOD, total = TOTAL } end, "url: http", "the URL needs a scheme")
t.raises(function() slo.prometheus { url = base, good = GOOD } end, "total: PromQL", "total is required")
t.is(require("steward.slo.prometheus").urlencode('a b{c!~"5.."}'), "a%20b%7Bc%21~%225..%22%7D", "queries are percent-encoded")

srv:close()
assert(srv:wait_closed("5s"))
t.done()
