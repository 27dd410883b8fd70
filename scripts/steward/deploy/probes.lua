-- Health probes of a supervised instance, with Kubernetes' semantics: an HTTP GET (2xx or 3xx
-- is a success), a TCP connect, or a command (exit 0); each attempt bounded by the probe's
-- timeout; consecutive results against failure_threshold / success_threshold decide when a
-- readiness probe flips `ready` and when a liveness probe declares the instance dead.
local http = require "steward.http"
local proc = require "steward.proc"

local type, tostring = type, tostring

local M = {}

-- check(probe, inst) -> true | false, reason: one attempt.
function M.check(probe, inst)
  local host, port = inst.host or "127.0.0.1", inst.port
  if probe.http then
    local url = "http://" .. host .. ":" .. tostring(port) .. probe.http
    local res, err = http.request({ url = url, timeout = probe.timeout, connect_timeout = probe.timeout,
      follow_redirects = false, max_body = 65536 })
    if not res then return false, err end
    if res.status >= 200 and res.status < 400 then return true end
    return false, "GET " .. probe.http .. ": HTTP " .. tostring(res.status)
  elseif probe.tcp then
    -- A connect through libcurl: the connection is what counts, not what (if anything) the
    -- service answers to an HTTP request, so a non-HTTP reply or silence until the timeout
    -- after connecting are successes; a refused or timed-out connect is a failure.
    local res, err, kind = http.request({ url = "http://" .. host .. ":" .. tostring(port) .. "/",
      timeout = probe.timeout, connect_timeout = probe.timeout, follow_redirects = false, max_body = 1 })
    if res or kind == "io" or kind == "max_body" then return true end
    if kind == "timeout" and tostring(err):find("Operation timed out", 1, true) then return true end
    return false, "connect " .. host .. ":" .. tostring(port) .. ": " .. tostring(err)
  elseif probe.exec then
    local r, err = proc.run({ cmd = probe.exec, timeout = probe.timeout, grace = 0.5 })
    if not r then return false, err end
    if r.timed_out then return false, "exec: timed out" end
    if r.code ~= 0 then return false, "exec: exit " .. tostring(r.code) end
    return true
  end
  return false, "no probe"
end

-- new(probe) -> state: {ok = nil until decided, successes, failures}
function M.new() return { successes = 0, failures = 0, ok = nil } end

-- step(state, probe, success) -> changed (state.ok flipped, or decided for the first time).
-- A readiness probe starts not ready and needs success_threshold successes in a row; either
-- kind turns failed after failure_threshold failures in a row.
function M.step(state, probe, success)
  local before = state.ok
  if success then
    state.successes, state.failures = state.successes + 1, 0
    if state.successes >= probe.success_threshold then state.ok = true end
  else
    state.failures, state.successes = state.failures + 1, 0
    if state.failures >= probe.failure_threshold then state.ok = false end
  end
  return state.ok ~= before and state.ok ~= nil
end

return M
