-- gh issue 13 §7, run by tests/e2e/http_burst.t: 200 steward.http requests started at once to
-- one host that accepts slowly (tests/support/slow_accept_server.py, listen backlog 5). With
-- every connection opened at once the accept queue overflowed and most requests timed out
-- with 0 bytes received; with connections capped per host and kept alive, all are answered.
local t = require "steward.tap"
local http = require "steward.http"
local json = require "steward.json"
local task = require "steward.task"

local base = "http://127.0.0.1:" .. assert(os.getenv("SLOW_PORT"), "SLOW_PORT not set")
local base2 = "http://127.0.0.1:" .. assert(os.getenv("SLOW_PORT2"), "SLOW_PORT2 not set")

-- The server's counters, asked through the same pool as the burst (so over one of the
-- connections it kept alive: counting a new one would blur "at most N open").
local function stats(b, max_host)
  local res = assert(http.request{ url = b .. "/_stats", max_host_connections = max_host })
  return json.decode(res.body)
end

-- burst(b, n, extra) -> statuses answered 200, {error = count} of the others
local function burst(b, n, extra)
  local hs = {}
  for i = 1, n do
    hs[i] = task.spawn(function()
      local opts = { url = b .. "/n/" .. i }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return http.request(opts)
    end)
  end
  local ok_n, errs = 0, {}
  for i = 1, n do
    local ok, res, err = hs[i]:join()
    if ok and res and res.status == 200 and res.body == "ok " .. i then
      ok_n = ok_n + 1
    else
      local e = tostring(ok and (res and ("status " .. res.status) or err) or res):gsub("%d+ milliseconds", "N ms"):gsub("http://%S+", "<url>")
      errs[e] = (errs[e] or 0) + 1
    end
  end
  return ok_n, errs
end

local function main()
  local n, errs = burst(base, 200)
  t.is(n, 200, "200 requests started at once to a slowly accepting host: all answered 200")
  for e, c in pairs(errs) do t.diag(c .. " x " .. e) end
  local s = stats(base)
  t.ok(s.max_open <= 8, "at most 8 connections to the host at a time (the default max_host_connections; saw " ..
       s.max_open .. ")")
  t.ok(s.connections < 200, "connections are kept alive and reused (" .. s.connections .. " for 200 requests)")

  n, errs = burst(base2, 50, { max_host_connections = 2 })
  t.is(n, 50, "50 requests with max_host_connections = 2: all answered 200")
  for e, c in pairs(errs) do t.diag(c .. " x " .. e) end
  s = stats(base2, 2)
  t.ok(s.max_open <= 2, "at most 2 connections with max_host_connections = 2 (saw " .. s.max_open .. ")")

  -- The only connection slot is busy for 2 s: a request queued behind it with a 300 ms timeout
  -- times out in the queue (timeout counts from the call), saying it never had a connection.
  local busy = task.spawn(function() return http.request{ url = base2 .. "/slow/2000", max_host_connections = 1 } end)
  local res, err, kind = http.request{ url = base2 .. "/n/queued", max_host_connections = 1, timeout = "300ms" }
  t.ok(res == nil and kind == "timeout", "a request queued behind the only busy connection times out (" ..
       tostring(kind) .. ")")
  t.like(tostring(err), "no connection was ready in time: still connecting, or waiting for one of the 1 " ..
         "max_host_connections", "its error says it never got a connection")
  local ok, bres = busy:join()
  t.ok(ok and bres and bres.status == 200, "the request holding the connection is answered")

  t.raises(function() http.request{ url = base, max_host_connections = 1.5 } end,
           "max_host_connections: integer >= 0 expected", "a fractional max_host_connections is refused")
  t.raises(function() http.request{ url = base, max_total_connections = "many" } end,
           "max_total_connections: integer >= 0 expected", "a string max_total_connections is refused")
end

main()
t.done()
