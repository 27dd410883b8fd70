-- Drives steward.deploy.haproxy from the shell for tests/e2e/deploy_haproxy.t: one verb per
-- run, the answer printed as JSON ({ok = value} or {err = message}).
-- Usage: steward script haproxy_ctl.lua SOCKET BACKEND VERB ARGS...
--   sync REV HOST:PORT...   set_weights REV=PCT...   drain|enable|disable|remove REV   stats
--   metric REV METRIC URL N (the metric over N requests sent to URL: {value, err, seen})
local json = require "steward.json"
local haproxy = require "steward.deploy.haproxy"

local socket, backend, verb = arg[1], arg[2], arg[3]
haproxy.configure { svc = { haproxy = { socket = socket, backend = backend, check = "check inter 200ms" } } }

local function out(ok, err)
  if ok == nil then
    print(json.encode { err = tostring(err) })
  else
    print(json.encode { ok = ok })
  end
end

local function run()
  if verb == "sync" then
    local eps = {}
    for i = 5, #arg do
      local host, port = arg[i]:match("^(.*):(%d+)$")
      eps[#eps + 1] = { host = host, port = tonumber(port) }
    end
    return haproxy.sync("svc", arg[4], eps)
  elseif verb == "set_weights" then
    local shares = {}
    for i = 4, #arg do
      local rev, p = arg[i]:match("^(.*)=(%d+)$")
      shares[rev] = tonumber(p)
    end
    return haproxy.set_weights("svc", shares)
  elseif verb == "stats" then
    return haproxy.stats("svc")
  elseif verb == "metric" then
    -- a first call (the start of the interval), N requests to URL, a second call
    local http = require "steward.http"
    local fn = require("steward.deploy.metrics.haproxy") { service = "svc", revision = arg[4], metric = arg[5] }
    local first, ferr = fn()
    if first == nil and arg[5] ~= "error_rate" and arg[5] ~= "success_rate" then return nil, ferr end
    local seen = 0 -- answers from the revision's servers (their body is the server's name)
    for _ = 1, tonumber(arg[7]) do
      local res = http.request { url = arg[6], headers = { Connection = "close" } }
      if res and res.body:match("^" .. arg[4]:gsub("%p", "%%%0") .. "%-") then seen = seen + 1 end
    end
    local v, err = fn()
    return { value = v, err = err, seen = seen }
  elseif verb == "raw" then
    return haproxy[arg[4]]("svc", arg[5])
  else
    return haproxy[verb]("svc", arg[4])
  end
end

local ok, v, err = pcall(run)
if not ok then out(nil, "raised: " .. tostring(v)) else out(v, err) end
