-- steward.httpd from Lua: the router API, parse_query, listen's argument checks and errors,
-- and requests through steward.http against a server in the same process (request fields,
-- repeated headers, decoded parameters, handler errors and bad results, stats, close).
local tap = require "steward.tap"
local httpd = require "steward.httpd"
local http = require "steward.http"
local json = require "steward.json"

-- parse_query
tap.is_deeply(httpd.parse_query("a=1&b=x%20y&c=p+q"), {a = "1", b = "x y", c = "p q"},
  "parse_query decodes %XX and +")
tap.is_deeply(httpd.parse_query("?t=1&t=2&t=3&flag&=v&&"), {t = {"1", "2", "3"}, flag = true},
  "repeats become a list, a bare key is true, empty keys are skipped")
tap.is_deeply(httpd.parse_query("bad=%zz%4"), {bad = "%zz%4"}, "bad escapes stay as they are")
tap.is_deeply(httpd.parse_query(""), {}, "empty query")
tap.raises(function() httpd.parse_query(nil) end, "string expected", "parse_query needs a string")

-- router
local r = httpd.router()
local function h1() end
local function h2() end
tap.is(r:add("get", "/items/{id}", h1), r, "add returns the router (method upper-cased)")
r:add("POST", "/items", h2)
local f, params, pattern = r:match("GET", "/items/a%2Fb")
tap.is(f, h1, "match finds the handler")
tap.is_deeply(params, {id = "a/b"}, "parameters are percent-decoded")
tap.is(pattern, "/items/{id}", "and the pattern is returned")
local none, status, allow = r:match("DELETE", "/items")
tap.ok(none == nil and status == 405 and allow == "POST", "405 with the allowed methods")
none, status = r:match("GET", "/nope")
tap.ok(none == nil and status == 404, "404 for an unknown path")
tap.is_deeply(r:routes(), {{method = "GET", pattern = "/items/{id}"},
  {method = "POST", pattern = "/items"}}, "routes lists them in order")
tap.is(r:remove("POST", "/items"), true, "remove an existing route")
tap.is(r:remove("POST", "/items"), false, "remove a missing one: false")
tap.raises(function() r:add("GET", "items", h1) end, "pattern must start with /",
  "a bad pattern raises, naming the problem")
tap.raises(function() r:add("GET", "/x/{a}/{a}", h1) end, "duplicate parameter",
  "duplicate parameter names raise")
tap.raises(function() r:add("GET", "/x", "nope") end, "function expected",
  "the handler must be a function")

-- listen: misuse raises, failures return nil, err, code
tap.raises(function() httpd.listen{port = 0} end, "handler: router or function expected",
  "listen needs a handler")
tap.raises(function() httpd.listen{port = -1, handler = r} end, "port",
  "listen checks the port")
tap.raises(function() httpd.listen{port = 0, handler = r, limits = {max_body = 1}} end,
  "unknown field 'max_body'", "unknown limits are refused (typos)")
tap.raises(function() httpd.listen{port = 0, handler = r, limits = {idle_timeout = "soon"}} end,
  "idle_timeout", "timeouts are durations")

local calls = 0
local router = httpd.router()
router:add("POST", "/echo/{name}", function(req)
  calls = calls + 1
  return 200, {["content-type"] = "application/json", ["x-multi"] = {"a", "b"}},
    json.encode{method = req.method, path = req.path, query = req.query, body = req.body,
      params = req.params, remote = req.remote, version = req.http_version,
      accept = req.headers.accept, trace = req.headers["x-trace"]}
end)
router:add("GET", "/boom", function() error("handler exploded") end)
router:add("GET", "/bad-status", function() return "ok" end)
router:add("GET", "/bad-header", function() return 200, {["x-evil"] = "a\r\nInjected: 1"}, "" end)
router:add("GET", "/empty", function() return 204 end)

local srv = assert(httpd.listen{host = "127.0.0.1", port = 0, handler = router})
local port = srv:port()
tap.ok(port > 0, "port 0 picks a free port: " .. port)
local base = "http://127.0.0.1:" .. port

local again, err, code = httpd.listen{host = "127.0.0.1", port = port, handler = router}
tap.is(again, nil, "listening twice on a port fails")
tap.like(err, "^EADDRINUSE: address already in use: %a+ 127%.0%.0%.1:" .. port,
  "err names the error, the step and the address")
tap.is(code, "EADDRINUSE", "the code name comes third")
local bad = httpd.listen{host = "not an address", port = 0, handler = router}
tap.is(bad, nil, "a bad host fails")

local res = assert(http.request{url = base .. "/echo/caf%C3%A9?x=1&y=2", method = "POST",
  body = "payload", headers = {Accept = "application/json", ["X-Trace"] = "t1"}})
tap.is(res.status, 200, "routed request answered")
local doc = json.decode(res.body)
tap.is(doc.method, "POST", "req.method")
tap.is(doc.path, "/echo/caf%C3%A9", "req.path is raw")
tap.is(doc.query, "x=1&y=2", "req.query is the raw query string")
tap.is(doc.body, "payload", "req.body")
tap.is(doc.params.name, "café", "req.params decoded")
tap.is(doc.remote, "127.0.0.1", "req.remote")
tap.is(doc.version, "1.1", "req.http_version")
tap.is(doc.accept, "application/json", "headers by lower-cased name")
tap.is(res.headers["content-length"], tostring(#res.body), "Content-Length added")
tap.ok(res.headers["date"] ~= nil, "Date added")
tap.is(res.headers["x-multi"], "a, b", "a list value gives one header line per value")

res = assert(http.request{url = base .. "/boom"})
tap.is(res.status, 500, "a handler error answers 500")
doc = json.decode(res.body)
tap.is(doc.error.code, "handler_error", "with a JSON error body")
res = assert(http.request{url = base .. "/bad-status"})
tap.is(res.status, 500, "a bad result answers 500")
tap.like(json.decode(res.body).error.details.problem, "status", "naming the problem")
res = assert(http.request{url = base .. "/bad-header"})
tap.is(res.status, 500, "header injection refused with 500")
tap.is(res.headers["injected"], nil, "and nothing injected")
res = assert(http.request{url = base .. "/empty"})
tap.is(res.status, 204, "204 without headers or body")
res = assert(http.request{url = base .. "/echo/x", method = "GET"})
tap.is(res.status, 405, "wrong method: 405")
tap.is(res.headers["allow"], "POST", "with Allow")
tap.is(json.decode(res.body).error.code, "method_not_allowed", "and a JSON error")
res = assert(http.request{url = base .. "/nothing"})
tap.is(res.status, 404, "unknown path: 404")
tap.is(json.decode(res.body).error.code, "not_found", "with a JSON error")

-- routes added and removed while the server runs
router:add("GET", "/late", function() return 200, nil, "late" end)
res = assert(http.request{url = base .. "/late"})
tap.is(res.body, "late", "a route added at run time serves at once")
router:remove("GET", "/late")
res = assert(http.request{url = base .. "/late"})
tap.is(res.status, 404, "a removed route is gone")

-- a plain function as the handler
local fsrv = assert(httpd.listen{port = 0, handler = function(req)
  return 200, {}, req.method .. " " .. req.path .. " " .. tostring(next(req.params))
end})
res = assert(http.request{url = "http://127.0.0.1:" .. fsrv:port() .. "/any/thing"})
tap.is(res.body, "GET /any/thing nil", "a function handler gets every request, params empty")
fsrv:close()

local st = srv:stats()
tap.ok(st.requests >= 9 and st.responses["2xx"] >= 3 and st.responses["5xx"] == 3
  and st.responses["4xx"] == 3, "stats count requests and answers by class")
tap.ok(st.connections_accepted >= 1, "stats count connections")
srv:close()
tap.is(srv:stats().closing, true, "close marks the server closing")
tap.is(srv:port(), 0, "a closed server has no port")
local _, cerr = http.request{url = base .. "/late", timeout = 2}
tap.ok(cerr ~= nil, "a closed server refuses connections")
tap.done()
