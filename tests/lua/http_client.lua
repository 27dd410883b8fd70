-- steward.http against real servers on loopback, started by tests/e2e/http_client.t, which
-- passes their ports in HTTP_PORT (plain), HTTPS_PORT (TLS, self-signed) and HTTP_CAFILE.
local tap = require "steward.tap"
local http = require "steward.http"
local task = require "steward.task"
local json = require "steward.json"
local time = require "steward.time"

local base = "http://127.0.0.1:" .. assert(os.getenv("HTTP_PORT"), "HTTP_PORT not set")
local tls = "https://127.0.0.1:" .. assert(os.getenv("HTTPS_PORT"), "HTTPS_PORT not set")
local cafile = assert(os.getenv("HTTP_CAFILE"))

local function get(path, opts)
  opts = opts or {}
  opts.url = opts.url or base .. path
  return http.request(opts)
end

-- methods, request headers and bodies
do
  local res, err = get("/echo", {headers = {["X-Trace"] = "abc", Accept = "text/plain"}})
  tap.is(err, nil, "GET succeeds")
  tap.is(res.status, 200, "GET status")
  local doc = json.decode(res.body)
  tap.is(doc.method, "GET", "default method is GET")
  tap.is(doc.headers["x-trace"], "abc", "request header sent")
  tap.is(doc.headers.accept, "text/plain", "request header replaces libcurl's default")
  tap.like(doc.headers["user-agent"], "^steward/", "default User-Agent")
  doc = json.decode(get("/echo", {headers = {["X-Empty"] = "", ["User-Agent"] = "probe/1"}}).body)
  tap.is(doc.headers["x-empty"], "", "header with an empty value sent")
  tap.is(doc.headers["user-agent"], "probe/1", "User-Agent header overrides the default")

  res = get("/echo", {body = "a=1&b=2", headers = {["Content-Type"] = "text/plain"}})
  doc = json.decode(res.body)
  tap.is(doc.method, "POST", "a body without a method means POST")
  tap.is(doc.body, "a=1&b=2", "POST body arrives intact")
  tap.is(doc.headers["content-type"], "text/plain", "Content-Type header sent")
  tap.is(doc.headers.expect, nil, "no Expect: 100-continue")

  local big = string.rep("0123456789", 200000)
  res = get("/echo", {method = "PUT", body = big})
  doc = json.decode(res.body)
  tap.is(doc.method, "PUT", "PUT")
  tap.is(#doc.body, #big, "2 MB PUT body arrives whole")

  res = get("/echo", {method = "DELETE"})
  tap.is(json.decode(res.body).method, "DELETE", "DELETE")
  res = get("/echo", {method = "PATCH", body = "{}"})
  tap.is(json.decode(res.body).method, "PATCH", "PATCH with body")
  res = get("/echo", {method = "HEAD"})
  tap.is(res.status, 200, "HEAD status")
  tap.is(res.body, "", "HEAD has no body")
  tap.ok(tonumber(res.headers["content-length"]) > 0, "HEAD keeps headers")
end

-- response headers and bodies
do
  local res = get("/multi")
  tap.is(res.headers["set-cookie"], "a=1; Path=/, b=2", "repeated headers joined with ', '")
  tap.is(res.headers["x-thing"], "one, two", "names are lower-cased")
  local cookies = {}
  for _, h in ipairs(res.headers_list) do
    if h[1] == "set-cookie" then cookies[#cookies + 1] = h[2] end
  end
  tap.is_deeply(cookies, {"a=1; Path=/", "b=2"}, "headers_list keeps every Set-Cookie")

  res = get("/chunked")
  tap.is(res.body, "alpha-beta-gamma", "chunked body reassembled")
  tap.is(res.headers["transfer-encoding"], "chunked", "chunked transfer-encoding seen")

  res = get("/large?n=8388608")
  tap.is(#res.body, 8388608, "8 MiB body whole")
  tap.ok(res.body:match("^a+$") ~= nil, "8 MiB body content intact")

  res = get("/nolength")
  tap.is(res.body, "until close", "body delimited by connection close")

  local r429 = get("/status/429")
  tap.is(r429.status, 429, "429 is a response, not an error")
  tap.is(r429.headers["retry-after"], "7", "Retry-After readable")
  tap.is(get("/status/503").status, 503, "503 is a response")
  tap.is(get("/status/404").body, "status 404", "error status keeps its body")
end

-- max_body
do
  local res, err, kind = get("/large?n=100000", {max_body = 1000})
  tap.is(res, nil, "body over max_body (Content-Length) fails")
  tap.like(err, "exceeds max_body %(1000 bytes%)", "max_body error message")
  tap.is(kind, "max_body", "max_body error kind")
  res, err = get("/chunked", {max_body = 5})
  tap.like(err, "exceeds max_body %(5 bytes%)", "chunked body over max_body fails, not truncated")
  res = get("/large?n=1000", {max_body = 1000})
  tap.is(res and #res.body, 1000, "body of exactly max_body is fine")
end

-- redirects
do
  local res = get("/redirect/3")
  tap.is(res.status, 200, "redirects followed by default")
  tap.is(res.body, "landed", "final body after redirects")
  tap.like(res.url, "/redirect/0$", "res.url is the final URL")
  res = get("/redirect/3", {follow_redirects = false})
  tap.is(res.status, 302, "follow_redirects=false returns the 3xx")
  tap.is(res.headers.location, "/redirect/2", "Location readable")
  local _, err, kind = get("/loop")
  tap.is(kind, "redirects", "redirect loop stops at the limit")
  tap.like(err, "/loop", "redirect error names the URL")
  _, err = get("/redirect/3", {follow_redirects = 2})
  tap.like(err, "Maximum %(2%) redirects", "follow_redirects = N sets the limit")
end

-- failures
do
  local t0 = time.monotonic()
  local res, err, kind = get("/slow?ms=3000", {timeout = "200ms"})
  local took = time.monotonic() - t0
  tap.is(res, nil, "timeout fails the request")
  tap.is(kind, "timeout", "timeout kind")
  tap.like(err, "^GET http://127%.0%.0%.1:%d+/slow%?ms=3000: Timeout was reached", "timeout names URL and reason")
  tap.ok(took < 2, "timeout fires on time (" .. took .. "s)")

  res, err, kind = get("/broken")
  tap.is(res, nil, "connection closed mid-body fails")
  tap.is(kind, "io", "broken body kind")
  tap.like(err, "Transferred a partial file", "broken body reason from libcurl")

  res, err, kind = http.request{url = "http://127.0.0.1:1/x"}
  tap.is(kind, "connect", "refused connection kind")
  tap.like(err, "^GET http://127%.0%.0%.1:1/x: Couldn't connect to server", "refused names URL")

  res, err, kind = http.request{url = "ftp://127.0.0.1/x"}
  tap.is(kind, "url", "non-HTTP scheme refused")
  res, err = http.request{url = "http://no-such-host.invalid/"}
  tap.like(err, "resolve", "unresolvable host fails with nil, err")
end

-- keep-alive: one multi handle per runtime, so the connection is reused
do
  local a = get("/conn").body
  local b = get("/conn").body
  tap.is(a, b, "sequential requests reuse the connection (client port " .. tostring(a) .. ")")
end

-- concurrency
do
  local N = 200
  local handles = {}
  for i = 1, N do
    handles[i] = task.spawn(function()
      local res, err = get("/echo?i=" .. i)
      if not res then return nil, err end
      return res.status == 200 and json.decode(res.body).path == "/echo?i=" .. i
    end)
  end
  local good, firsterr = 0, nil
  for i = 1, N do
    local ok, v, err = handles[i]:join()
    if ok and v then good = good + 1 else firsterr = firsterr or err or v end
  end
  tap.is(good, N, N .. " concurrent requests from " .. N .. " tasks all succeed" ..
    (firsterr and (" (" .. tostring(firsterr) .. ")") or ""))
end

-- cancellation: the task goes away mid-request; the transfer is dropped
do
  local h = task.spawn({timeout = "50ms"}, function() return get("/slowbody?ms=1000") end)
  local ok, err = h:join()
  tap.is(ok, false, "task with a timeout is cancelled mid-request")
  tap.is(err, "timeout", "cancel reason")
  local h2 = task.spawn(function() return get("/slow?ms=1000") end)
  time.sleep("50ms")
  h2:cancel()
  tap.is(h2:status(), "cancelled", "task:cancel() mid-request")
  time.sleep("100ms")
  local res = get("/echo")
  tap.is(res and res.status, 200, "requests still work after cancellations")
end

-- TLS
do
  local res, err, kind = http.request{url = tls .. "/echo"}
  tap.is(res, nil, "self-signed certificate rejected by default")
  tap.is(kind, "tls", "TLS failure kind")
  tap.like(err, "^GET https://127%.0%.0%.1:%d+/echo: ", "TLS error names the URL")
  res, err = http.request{url = tls .. "/echo", cafile = cafile}
  tap.is(res and res.status, 200, "verified with cafile" .. (err and (": " .. err) or ""))
  res = http.request{url = tls .. "/echo", insecure = true}
  tap.is(res and res.status, 200, "insecure = true skips verification")
  res, err = http.request{url = "https://localhost:" .. os.getenv("HTTPS_PORT") .. "/echo", cafile = cafile}
  tap.is(res and res.status, 200, "hostname in SAN verified")
end

-- misuse raises, naming the field
do
  tap.raises(function() http.request{} end, "http.request: url: string expected", "url missing")
  tap.raises(function() http.request{url = 5} end, "url: string expected", "url wrong type")
  tap.raises(function() http.request("http://x/") end, "table expected", "argument not a table")
  tap.raises(function() http.request{url = base, method = 5} end, "method: string expected", "method wrong type")
  tap.raises(function() http.request{url = base, method = "GE T"} end, "method: bad method name", "bad method name")
  tap.raises(function() http.request{url = base, headers = "x"} end, "headers: table expected", "headers wrong type")
  tap.raises(function() http.request{url = base, headers = {X = {}}} end, "headers: value of 'X'", "header value wrong type")
  tap.raises(function() http.request{url = base, headers = {X = "a\r\nB: c"}} end, "CR or LF", "header injection refused")
  tap.raises(function() http.request{url = base, body = 5} end, "body: string expected", "body wrong type")
  tap.raises(function() http.request{url = base, timeout = "soon"} end, "timeout: bad duration", "bad timeout")
  tap.raises(function() http.request{url = base, max_body = "x"} end, "max_body: number", "bad max_body")
  tap.raises(function() http.request{url = base, insecure = "yes"} end, "insecure: boolean expected", "bad insecure")
  tap.raises(function() http.request{url = base, follow_redirects = "x"} end, "follow_redirects", "bad follow_redirects")
  tap.raises(function() http.request{url = base, tiemout = 1} end, "unknown option 'tiemout'", "unknown option")
  local co = coroutine.create(function() return http.request{url = base} end)
  local ok, err = coroutine.resume(co)
  tap.ok(not ok and err:find("must be called from inside a task"), "outside a task raises")
end

tap.done()
