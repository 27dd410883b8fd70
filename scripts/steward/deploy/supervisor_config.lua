-- The `services` config key (docs/deploy/services.md): where and how each service runs, as the
-- operator declares it. check(services) validates the whole table and returns a normalised copy
-- (durations in seconds, defaults filled in) or nil, "services.<name>.<field>: <reason>". The
-- result passes check again unchanged, so an environment overlay can be merged over it and the
-- merge checked once more.
local time = require "steward.time"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local format, concat, sort, floor = string.format, table.concat, table.sort, math.floor

local M = {}

M.REVISION_PATTERN = "^[%w._-]+$"
M.NAME_PATTERN = "^[%w_.-]+$"
M.PLACEHOLDERS = { revision = true, port = true, index = true, service = true }

local SIGNALS = { TERM = true, INT = true, HUP = true, QUIT = true, USR1 = true, USR2 = true, KILL = true }

local function fail(where, msg, ...) return nil, where .. ": " .. format(msg, ...) end

-- t must be a table (else `expected`, by default "a table expected") of only the allowed fields.
local function table_with(t, allowed, where, expected)
  if type(t) ~= "table" then return fail(where, expected or "a table expected") end
  local names = {}
  for k in pairs(allowed) do names[#names + 1] = k end
  sort(names)
  for k in pairs(t) do
    if not allowed[k] then
      return fail(where, "unknown field '%s' (known: %s)", tostring(k), concat(names, ", "))
    end
  end
  return true
end

local function dur(v, where, default, allow_zero)
  if v == nil then return default end
  if type(v) ~= "number" and type(v) ~= "string" then return fail(where, "a duration expected (\"500ms\", \"10s\"), got %s", type(v)) end
  local s, err = time.parse_duration(v)
  if not s then return fail(where, "%s", err) end
  if s == 0 and not allow_zero then return fail(where, "must be greater than 0") end
  return s
end

local function int(v, where, default, min, max)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= floor(v) or v < min or v > max then
    return fail(where, "an integer from %d to %d expected, got %s", min, max, tostring(v))
  end
  return v
end

local function str(v, where, required)
  if v == nil then
    if required then return fail(where, "required") end
    return nil
  end
  if type(v) ~= "string" or v == "" then return fail(where, "a non-empty string expected, got %s", type(v)) end
  return v
end

-- Uses of {name} in s that are placeholders the supervisor fills in.
local function uses_port(s) return s:find("{port}", 1, true) ~= nil end

-- "9100-9199" or 9100 -> {first, last}
local function port_range(v, where)
  if v == nil then return nil end
  local a, b
  if type(v) == "number" then a, b = v, v
  elseif type(v) == "string" then
    a, b = v:match("^(%d+)%-(%d+)$")
    if not a then a = v:match("^(%d+)$"); b = a end
    a, b = tonumber(a), tonumber(b)
  elseif type(v) == "table" and type(v[1]) == "number" and type(v[2]) == "number" then
    a, b = v[1], v[2]
  end
  if not a or a ~= floor(a) or b ~= floor(b) or a < 1 or b > 65535 or a > b then
    return fail(where, "a port range \"FIRST-LAST\" (1-65535) or a port number expected, got %s", tostring(v))
  end
  return { a, b }
end

local function check_run(run, where)
  local ok, err = table_with(run, { cmd = true, env = true, cwd = true, instances = true, ports = true, log_dir = true }, where)
  if not ok then return nil, err end
  local out = {}
  if type(run.cmd) ~= "table" or #run.cmd == 0 then return fail(where .. ".cmd", "an array of strings naming the program and its arguments expected") end
  out.cmd = {}
  local needs_port = false
  for i, a in ipairs(run.cmd) do
    if type(a) ~= "string" then return fail(format("%s.cmd[%d]", where, i), "a string expected, got %s", type(a)) end
    needs_port = needs_port or uses_port(a)
    out.cmd[i] = a
  end
  for k in pairs(run.cmd) do
    if type(k) ~= "number" or k < 1 or k > #run.cmd or k ~= floor(k) then return fail(where .. ".cmd", "an array (no holes or named fields) expected") end
  end
  if run.env ~= nil then
    if type(run.env) ~= "table" then return fail(where .. ".env", "a table { NAME = \"value\" } expected") end
    out.env = {}
    for k, v in pairs(run.env) do
      if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then return fail(where .. ".env", "variable name expected, got %s", tostring(k)) end
      if type(v) ~= "string" and type(v) ~= "number" then return fail(where .. ".env." .. k, "a string expected, got %s", type(v)) end
      out.env[k] = tostring(v)
      needs_port = needs_port or uses_port(out.env[k])
    end
  end
  out.cwd, err = str(run.cwd, where .. ".cwd")
  if err then return nil, err end
  out.log_dir, err = str(run.log_dir, where .. ".log_dir")
  if err then return nil, err end
  out.instances, err = int(run.instances, where .. ".instances", 1, 0, 1000)
  if not out.instances then return nil, err end
  out.ports, err = port_range(run.ports, where .. ".ports")
  if err then return nil, err end
  if needs_port and not out.ports then return fail(where .. ".ports", "required: the command or its env uses {port}") end
  return out
end

local function check_probe(p, where, kind)
  local ok, err = table_with(p, { http = true, tcp = true, exec = true, interval = true, timeout = true,
    failure_threshold = true, success_threshold = true, initial_delay = true }, where)
  if not ok then return nil, err end
  local out, n = {}, 0
  if p.http ~= nil then
    n = n + 1
    if type(p.http) ~= "string" or p.http:sub(1, 1) ~= "/" then return fail(where .. ".http", "a path such as \"/healthz\" expected") end
    out.http = p.http
  end
  if p.tcp ~= nil then
    n = n + 1
    if p.tcp ~= true then return fail(where .. ".tcp", "true expected (connect to the instance's port)") end
    out.tcp = true
  end
  if p.exec ~= nil then
    n = n + 1
    if type(p.exec) ~= "table" or #p.exec == 0 then return fail(where .. ".exec", "an array of strings (a command) expected") end
    out.exec = {}
    for i, a in ipairs(p.exec) do
      if type(a) ~= "string" then return fail(format("%s.exec[%d]", where, i), "a string expected") end
      out.exec[i] = a
    end
  end
  if n ~= 1 then return fail(where, "exactly one of http, tcp or exec expected") end
  out.interval, err = dur(p.interval, where .. ".interval", 1)
  if not out.interval then return nil, err end
  out.timeout, err = dur(p.timeout, where .. ".timeout", 1)
  if not out.timeout then return nil, err end
  out.initial_delay, err = dur(p.initial_delay, where .. ".initial_delay", 0, true)
  if not out.initial_delay then return nil, err end
  out.failure_threshold, err = int(p.failure_threshold, where .. ".failure_threshold", 3, 1, 1000)
  if not out.failure_threshold then return nil, err end
  -- Kubernetes: a liveness probe's success threshold must be 1.
  out.success_threshold, err = int(p.success_threshold, where .. ".success_threshold", 1, 1, kind == "liveness" and 1 or 1000)
  if not out.success_threshold then return nil, err end
  return out
end

local function check_probes(p, where)
  local ok, err = table_with(p, { readiness = true, liveness = true }, where,
    "a table { readiness = {...}, liveness = {...} } expected")
  if not ok then return nil, err end
  local out = {}
  for _, kind in ipairs({ "readiness", "liveness" }) do
    if p[kind] ~= nil then
      out[kind], err = check_probe(p[kind], where .. "." .. kind, kind)
      if not out[kind] then return nil, err end
    end
  end
  return out
end

local function check_restart(r, where)
  local ok, err = table_with(r, { policy = true, delay = true, delay_max = true, burst = true, interval = true }, where)
  if not ok then return nil, err end
  local out = { policy = r.policy or "on-failure" }
  if out.policy ~= "on-failure" and out.policy ~= "always" and out.policy ~= "no" then
    return fail(where .. ".policy", "\"on-failure\", \"always\" or \"no\" expected, got %s", tostring(r.policy))
  end
  -- systemd's defaults: RestartSec=100ms, StartLimitBurst=5, StartLimitIntervalSec=10s.
  out.delay, err = dur(r.delay, where .. ".delay", 0.1, true)
  if not out.delay then return nil, err end
  out.delay_max, err = dur(r.delay_max, where .. ".delay_max", math.max(10, out.delay), true)
  if not out.delay_max then return nil, err end
  if out.delay_max < out.delay then return fail(where .. ".delay_max", "must not be less than delay") end
  out.burst, err = int(r.burst, where .. ".burst", 5, 1, 100000)
  if not out.burst then return nil, err end
  out.interval, err = dur(r.interval, where .. ".interval", 10)
  if not out.interval then return nil, err end
  return out
end

local function check_stop(s, where)
  local ok, err = table_with(s, { signal = true, grace = true }, where)
  if not ok then return nil, err end
  local out = { signal = s.signal or "TERM" }
  if type(out.signal) ~= "string" or not SIGNALS[out.signal:gsub("^SIG", "")] then
    return fail(where .. ".signal", "a signal name (TERM, INT, HUP, QUIT, USR1, USR2, KILL) expected, got %s", tostring(s.signal))
  end
  out.signal = out.signal:gsub("^SIG", "")
  out.grace, err = dur(s.grace, where .. ".grace", 10, true)
  if not out.grace then return nil, err end
  return out
end

-- The traffic drivers' tables (steward.deploy.haproxy, steward.deploy.kubernetes read them).
-- haproxy.check: the health-check keywords of `add server` ("check inter 1s fall 3").
local HAPROXY = { socket = "string!", backend = "string!", check = "string" }
local KUBERNETES = { api = "url!", namespace = "string", deployment = "string", service = "string",
  httproute = "string", image = "string", token_file = "string", ca_file = "string", container = "string",
  timeout = "string" }

local function check_fields(t, spec, where)
  local ok, err = table_with(t, spec, where)
  if not ok then return nil, err end
  local out = {}
  for k, want in pairs(spec) do
    local v, required = t[k], want:sub(-1) == "!"
    want = want:gsub("!$", "")
    if v == nil then
      if required then return fail(where .. "." .. k, "required") end
    elseif want == "boolean" then
      if type(v) ~= "boolean" then return fail(where .. "." .. k, "true or false expected, got %s", type(v)) end
    elseif type(v) ~= "string" or v == "" then
      return fail(where .. "." .. k, "a non-empty string expected, got %s", type(v))
    elseif want == "url" and not v:match("^https?://[^/]") then
      return fail(where .. "." .. k, "an http:// or https:// URL expected, got %q", v)
    end
    out[k] = v
  end
  return out
end

-- check(services) -> normalised copy | nil, err
function M.check(services)
  if type(services) ~= "table" then return nil, "a table { [service name] = { run = ..., probes = ..., ... } } expected" end
  local out = {}
  for name, s in pairs(services) do
    local where = "services." .. tostring(name)
    if type(name) ~= "string" or not name:match(M.NAME_PATTERN) then
      return nil, format("services[%s]: a service name (letters, digits, _ . -) expected", tostring(name))
    end
    local ok, err = table_with(s, { run = true, probes = true, restart = true, stop = true, haproxy = true, kubernetes = true,
      tenant = true, resources = true }, where)
    if not ok then return nil, err end
    local o = {}
    -- Quotas (steward.scaling.quota_config): whose the service is, what one instance requests.
    local qc = require "steward.scaling.quota_config"
    if s.tenant ~= nil then
      o.tenant, err = qc.tenant(s.tenant, where .. ".tenant")
      if not o.tenant then return nil, err end
    end
    if s.resources ~= nil then
      o.resources, err = qc.resources(s.resources, where .. ".resources")
      if not o.resources then return nil, err end
    end
    if s.run ~= nil then
      if type(s.run) ~= "table" then return fail(where .. ".run", "a table expected") end
      o.run, err = check_run(s.run, where .. ".run")
      if not o.run then return nil, err end
    end
    o.probes, err = check_probes(s.probes or {}, where .. ".probes")
    if not o.probes then return nil, err end
    if (o.probes.readiness and not o.probes.readiness.exec or o.probes.liveness and not o.probes.liveness.exec)
      and not (o.run and o.run.ports) then
      return fail(where .. ".run.ports", "required: an http or tcp probe connects to the instance's port")
    end
    o.restart, err = check_restart(s.restart or {}, where .. ".restart")
    if not o.restart then return nil, err end
    o.stop, err = check_stop(s.stop or {}, where .. ".stop")
    if not o.stop then return nil, err end
    if s.haproxy ~= nil then
      o.haproxy, err = check_fields(s.haproxy, HAPROXY, where .. ".haproxy")
      if not o.haproxy then return nil, err end
    end
    if s.kubernetes ~= nil then
      o.kubernetes, err = check_fields(s.kubernetes, KUBERNETES, where .. ".kubernetes")
      if not o.kubernetes then return nil, err end
    end
    out[name] = o
  end
  return out
end

-- merge(base, overlay) -> overlay's fields over base's, table by table (an environment overlay
-- changes services.api.run.instances without restating the rest); arrays are replaced whole.
function M.merge(base, overlay)
  if type(base) ~= "table" or type(overlay) ~= "table" or overlay[1] ~= nil then return overlay end
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(overlay) do out[k] = M.merge(base[k], v) end
  return out
end

-- expand(s, vars) -> s with {revision}, {port}, {index}, {service} filled in (others kept)
function M.expand(s, vars)
  return (s:gsub("{(%l+)}", function(k)
    if M.PLACEHOLDERS[k] and vars[k] ~= nil then return tostring(vars[k]) end
  end))
end

return M
