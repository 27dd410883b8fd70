-- steward.httpd from Lua: the router API, parse_query, listen's argument checks and errors,
-- and requests through steward.http against a server in the same process (request fields,
-- repeated headers, decoded parameters, handler errors and bad results, stats, close), and
-- srv:wait_closed (a slow handler in flight, timeouts, cancellation of the waiting task).
local tap = require "steward.tap"
local httpd = require "steward.httpd"
local http = require "steward.http"
local json = require "steward.json"
local task = require "steward.task"
local time = require "steward.time"

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

-- admit: sees the head of a request with a body before the body is read, and may refuse it
tap.raises(function() httpd.listen{port = 0, handler = r, admit = 5} end, "admit: function expected",
  "admit must be a function")
tap.raises(function() httpd.listen{port = 0, handler = r, limits = {max_body_bytes = 1000, max_body_bytes_in_flight = 999}} end,
  "max_body_bytes_in_flight", "the body budget must hold one body of max_body_bytes")
local seen, handled = {}, 0
local asrv = assert(httpd.listen{port = 0, handler = function(req) handled = handled + 1; return 200, {}, req.body end,
  admit = function(req)
    seen[#seen + 1] = { path = req.path, body = req.body, auth = req.headers.authorization }
    if req.path == "/boom" then error("admit blew up") end
    if req.headers.authorization ~= "Bearer good" then
      return 401, "unauthorized", "no", { ["www-authenticate"] = "Bearer" }
    end
  end})
local abase = "http://127.0.0.1:" .. asrv:port()
res = assert(http.request{url = abase .. "/up", method = "POST", body = "payload", headers = {authorization = "Bearer good"}})
tap.ok(res.status == 200 and res.body == "payload", "an admitted body is read and handled")
tap.ok(seen[1] and seen[1].path == "/up" and seen[1].body == "" and seen[1].auth == "Bearer good",
  "admit gets the head: path and headers, no body")
res = assert(http.request{url = abase .. "/up", method = "POST", body = "payload", headers = {authorization = "Bearer bad"}})
local adoc = json.decode(res.body)
tap.ok(res.status == 401 and res.headers["www-authenticate"] == "Bearer" and adoc.error.code == "unauthorized"
  and adoc.error.message == "no" and handled == 1, "a refused body is answered with admit's status, code, message and headers")
res = assert(http.request{url = abase .. "/boom", method = "POST", body = "x"})
tap.is(res.status, 500, "an error in admit refuses the body (500)")
local before = #seen
res = assert(http.request{url = abase .. "/up"})
tap.ok(res.status == 200 and #seen == before, "a request without a body is not asked about")
tap.ok(asrv:stats().refused == 2 and asrv:stats().body_bytes_in_flight == 0, "stats: refused, no body bytes left in flight")
asrv:close()

local st = srv:stats()
tap.ok(st.requests >= 9 and st.responses["2xx"] >= 3 and st.responses["5xx"] == 3
  and st.responses["4xx"] == 3, "stats count requests and answers by class")
tap.ok(st.connections_accepted >= 1, "stats count connections")
srv:close()
tap.is(srv:stats().closing, true, "close marks the server closing")
tap.is(srv:port(), 0, "a closed server has no port")
local _, cerr = http.request{url = base .. "/late", timeout = 2}
tap.ok(cerr ~= nil, "a closed server refuses connections")

-- srv:wait_closed. A gate is a task that sleeps until cancelled: join() awaits the event,
-- cancel() signals it (no polling).
local function gate() return task.spawn(function() time.sleep(3600) end) end
local started, release = gate(), gate()
local handler_done = false
local wsrv = assert(httpd.listen{port = 0, handler = function(req)
  started:cancel("open")
  release:join()
  handler_done = true
  return 200, {}, "slow done"
end})
local wbase = "http://127.0.0.1:" .. wsrv:port()
local client = task.spawn(function() return http.request{url = wbase .. "/slow", timeout = 10} end)
started:join()
wsrv:close()
local wok, werr = wsrv:wait_closed("50ms")
tap.ok(wok == nil and werr == "timeout", "wait_closed times out while a handler is in flight")
tap.is(wsrv:closed(), false, "the in-flight request keeps its connection open")
local waiter = task.spawn(function()
  local a, b = wsrv:wait_closed(10)
  return a, b, handler_done, wsrv:closed(), wsrv:stats().connections_open
end)
local doomed = task.spawn(function() return wsrv:wait_closed() end)
local timed = task.spawn({timeout = "20ms"}, function() return wsrv:wait_closed() end)
tap.is(doomed:cancel("stop"), true, "a task waiting in wait_closed can be cancelled")
tap.is_deeply({doomed:join()}, {false, "stop"}, "the cancelled waiter ends with the reason")
tap.is_deeply({timed:join()}, {false, "timeout"}, "a waiter whose task times out ends too")
tap.is(waiter:status(), "running", "the other waiter still waits")
release:cancel("open")
local cok, res = client:join()
tap.ok(cok and res and res.status == 200 and res.body == "slow done",
  "the slow handler's answer is written after close")
tap.is(res and res.headers.connection, "close", "with Connection: close")
tap.is_deeply({waiter:join()}, {true, true, nil, true, true, 0},
  "wait_closed returns true after the handler ended and the connection closed")
tap.is(wsrv:wait_closed(), true, "wait_closed on a settled server returns true at once")
tap.raises(function() wsrv:wait_closed("soon") end, "srv:wait_closed: timeout",
  "the timeout must be a duration")
tap.raises(function() coroutine.wrap(function() return wsrv:wait_closed() end)() end,
  "srv:wait_closed: must be called from inside a task", "wait_closed outside a task raises")

-- wait_closed before close: it waits for the close as well
local lsrv = assert(httpd.listen{port = 0, handler = function() return 204 end})
local early = task.spawn(function() return lsrv:wait_closed(10) end)
tap.is(early:status(), "running", "wait_closed before close waits")
lsrv:close()
tap.is_deeply({early:join()}, {true, true}, "and returns true once the server has closed")

-- A handler still running after its connection is gone (the client reset it): the server
-- reports closed, but wait_closed waits for the handler, whose answer is then dropped.
local proc = require "steward.proc"
local started3, release3 = gate(), gate()
local done3 = false
local dsrv = assert(httpd.listen{port = 0, handler = function(req)
  if req.path == "/started" then started3:join(); return 200, {}, "started" end
  started3:cancel("open")
  release3:join()
  done3 = true
  return 200, {}, "too late"
end})
local rst_client = [[
import socket, struct, sys
port = int(sys.argv[1])
s1 = socket.create_connection(("127.0.0.1", port))
s1.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
s2 = socket.create_connection(("127.0.0.1", port))
s2.sendall(b"GET /started HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
while s2.recv(4096): pass
s1.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s1.close()
]]
local pr = assert(proc.run{cmd = {"/usr/bin/python3", "-c", rst_client, tostring(dsrv:port())},
  timeout = 10})
tap.is(pr.code, 0, "the resetting client ran" .. (pr.code ~= 0 and (": " .. pr.stderr) or ""))
dsrv:close()
-- No event tells when the server has seen the reset: check for it, bounded.
for _ = 1, 500 do if dsrv:closed() then break end time.sleep(0.01) end
tap.ok(dsrv:closed() and not done3, "the server has closed while the handler still runs")
wok, werr = dsrv:wait_closed("30ms")
tap.ok(wok == nil and werr == "timeout", "wait_closed still waits for that handler")
release3:cancel("open")
tap.is(dsrv:wait_closed(5), true, "and returns true once it has ended")
tap.ok(done3 and dsrv:stats().dropped == 1, "its answer was dropped")
tap.done()
