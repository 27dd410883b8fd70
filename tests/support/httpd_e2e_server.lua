-- A steward script serving the routes tests/e2e/httpd_server.t probes, with short limits.
-- Prints "PORT SMALL_PORT" (the second server allows 2 connections) and runs until
-- POST /shutdown; then closes both servers gracefully, and the script ends when the loop
-- has nothing left to do.
local httpd = require "steward.httpd"
local time = require "steward.time"
local json = require "steward.json"

local finished = {} -- tag -> true once /slow?tag=... or /hold/{tag} has finished its handler
local started, released = {}, {}

-- Server-side waits for an event another request causes (the loop polls between checks).
local function await(t, k) while not t[k] do time.sleep(0.01) end end

local router = httpd.router()
local srv, small

router:add("GET", "/hello", function(req)
  return 200, {["content-type"] = "text/plain"}, "hello"
end)
router:add("GET", "/slow", function(req)
  local q = httpd.parse_query(req.query)
  time.sleep((tonumber(q.ms) or 200) / 1000)
  if q.tag then finished[q.tag] = true end
  return 200, {}, "slow:" .. (q.tag or "")
end)
router:add("GET", "/fast/{n}", function(req)
  return 200, {}, "fast:" .. req.params.n
end)
router:add("POST", "/echo", function(req)
  return 200, {["x-body-length"] = tostring(#req.body)}, req.body
end)
router:add("GET", "/boom", function() error("deliberate failure") end)
-- Waits (server side) until the /slow handler with this tag has finished, then reports stats.
router:add("GET", "/await/{tag}", function(req)
  await(finished, req.params.tag)
  return 200, {["content-type"] = "application/json"}, json.encode(srv:stats())
end)
-- /hold/{tag} runs until /release/{tag}; /started/{tag} answers once it is running.
router:add("GET", "/hold/{tag}", function(req)
  started[req.params.tag] = true
  await(released, req.params.tag)
  finished[req.params.tag] = true
  return 200, {}, "held:" .. req.params.tag
end)
router:add("GET", "/started/{tag}", function(req)
  await(started, req.params.tag)
  return 200, {}, "started"
end)
router:add("GET", "/release/{tag}", function(req)
  released[req.params.tag] = true
  await(finished, req.params.tag)
  return 200, {["content-type"] = "application/json"}, json.encode(srv:stats())
end)
router:add("POST", "/shutdown", function()
  time.after(0, function() srv:close(); small:close() end)
  return 200, {}, "bye"
end)

local limits = {max_header_bytes = 1024, max_body_bytes = 1024, header_timeout = "300ms",
                body_timeout = "300ms", idle_timeout = "5s", max_pipelined = 8}
srv = assert(httpd.listen{host = "127.0.0.1", port = 0, handler = router, limits = limits})
small = assert(httpd.listen{host = "127.0.0.1", port = 0, handler = router,
                            limits = {max_connections = 2}})
print(srv:port() .. " " .. small:port())
io.stdout:flush()
