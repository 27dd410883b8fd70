-- Daemon configuration: steward.lua, then config/<env>.lua, then STEWARD_<KEY> variables.
-- Every key is checked against the schema below; an unknown key, a wrong type or a bad value
-- stops start-up with one line naming the key, the value and what was expected.
local time = require "steward.time"

local type, pairs, ipairs, tostring, tonumber, next = type, pairs, ipairs, tostring, tonumber, next
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

local function is_listen(v)
  local host, port = tostring(v):match("^(.+):(%d+)$")
  port = tonumber(port)
  if not host or not port or port > 65535 then
    return nil, "expected host:port, e.g. \"127.0.0.1:8080\""
  end
  return true
end

local function is_store(v)
  if v:match("^sqlite:.+") or v:match("^postgres://") or v:match("^postgresql://") then return true end
  return nil, "expected \"sqlite:PATH\" or \"postgres://user@host:port/db\""
end

local function duration(v)
  if type(v) ~= "number" and type(v) ~= "string" then return nil, "expected a duration" end
  local sec, err = time.parse_duration(v)
  if not sec then return nil, err end
  return sec
end

local function nonneg_int(max)
  return function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > max then
      return nil, format("expected an integer from 0 to %d", max)
    end
    return v
  end
end

local function positive_int(max)
  return function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > max then
      return nil, format("expected an integer from 1 to %d", max)
    end
    return v
  end
end

-- key = {type, default, check (returns value or nil, reason), doc}
local LIMITS = {
  max_body_bytes   = { "number", 8 * 1024 * 1024, positive_int(1024 * 1024 * 1024), "largest request body (413 above)" },
  max_header_bytes = { "number", 16 * 1024, positive_int(1024 * 1024), "largest request head (431 above)" },
  max_body_bytes_in_flight = { "number", 128 * 1024 * 1024, positive_int(64 * 1024 * 1024 * 1024),
    "request bodies being received, all connections together (503 with Retry-After above)" },
  max_json_depth   = { "number", 64, positive_int(128), "nesting of a JSON request body (400 above)" },
  max_json_values  = { "number", 200000, positive_int(100000000), "values in a JSON request body (413 above)" },
  max_connections  = { "number", 10000, positive_int(1000000), "open connections (503 above)" },
  max_batch        = { "number", 10000, positive_int(1000000), "events in one POST /v1/events" },
  header_timeout   = { "duration", 10, duration, "time to receive a request head (408 after)" },
  body_timeout     = { "duration", 30, duration, "time to receive a body (408 after)" },
  idle_timeout     = { "duration", 60, duration, "keep-alive connection idle time" },
  dispatch_concurrency = { "number", 256, positive_int(100000), "handlers running at once" },
  handler_timeout  = { "duration", 30, duration, "one handler run (then it counts as failed)" },
  retry_attempts   = { "number", 5, positive_int(1000), "handler runs before a dead letter" },
  retry_base       = { "duration", 0.2, duration, "first retry delay (doubles, with jitter)" },
  retry_max        = { "duration", 60, duration, "longest retry delay" },
  shutdown_timeout = { "duration", 10, duration, "time running handlers get at SIGTERM" },
  ready_timeout    = { "duration", 2, duration, "a store read /readyz waits for (503 after)" },
  repl_cpu         = { "duration", 1, duration, "CPU budget of one REPL command (as a policy run's)" },
  repl_memory      = { "number", 64 * 1024 * 1024, positive_int(64 * 1024 * 1024 * 1024), "heap growth budget of one REPL command, bytes" },
  emit_per_run     = { "number", 1000, positive_int(1000000000), "events one policy run may emit (then the run fails)" },
  emit_per_second  = { "number", 1000, positive_int(1000000000), "events one policy may emit per second (then the run fails)" },
  max_cause_depth  = { "number", 16, positive_int(100000), "longest chain of events each emitted while handling the one before" },
  policy_memory_total = { "number", 1024 * 1024 * 1024, nonneg_int(1024 * 1024 * 1024 * 1024), "ceiling on the Lua heap while policy code allocates, bytes (0: none)" },
  policy_stall     = { "duration", 0.2, duration, "computing without yielding to the loop (inside a C call such as a gsub callback)" },
}

-- A table of durations with these fields only, each turned into seconds.
local function durations_table(fields)
  local allowed = {}
  for _, f in ipairs(fields) do allowed[f] = true end
  return function(v)
    for k, x in pairs(v) do
      if not allowed[k] then
        return nil, format("unknown field '%s' (%s)", tostring(k), concat(fields, ", "))
      end
      local secs, err = duration(x)
      if not secs or secs <= 0 then return nil, format("%s: %s", k, err or "must be greater than 0") end
      v[k] = secs
    end
    return v
  end
end

local function uid_list(v)
  for i, u in ipairs(v) do
    if type(u) ~= "number" or u ~= math.floor(u) or u < 0 or u > 4294967294 then
      return nil, format("item %d: expected a numeric uid", i)
    end
  end
  return v
end

-- The processors this process may run on (its affinity mask, as nproc counts them): the
-- default number of worker processes. 1 when it cannot be read.
local function cores()
  local ok, n = pcall(function()
    local ffi = require "ffi"
    pcall(ffi.cdef, "long sysconf(int name);")
    return tonumber(ffi.C.sysconf(84)) -- _SC_NPROCESSORS_ONLN on Linux
  end)
  local f = io.open("/proc/self/status", "r")
  if f then
    local text = f:read("*a"); f:close()
    local list = text:match("Cpus_allowed_list:%s*(%S+)")
    if list then
      local count = 0
      for a, b in list:gmatch("(%d+)%-?(%d*)") do count = count + (b ~= "" and (tonumber(b) - tonumber(a) + 1) or 1) end
      if count > 0 and (not ok or not n or count < n) then n, ok = count, true end
    end
  end
  if not ok or not n or n < 1 then return 1 end
  return math.min(n, 256)
end
M.cores = cores

local SCHEMA = {
  listen       = { "string", "127.0.0.1:8080", is_listen, "HTTP API address" },
  workers      = { "number", cores(), positive_int(256),
                   "worker processes sharing the listen socket and the store (default: the number of cores)" },
  store        = { "string", "sqlite:var/steward.db", is_store, "the store" },
  policies     = { "string", "policies", nil, "policy directory" },
  admin_socket = { "string", "var/steward.sock", nil, "admin / REPL socket (created mode 0600)" },
  admin_uids   = { "table", {}, uid_list, "uids allowed on the admin socket (empty: the daemon's own uid and root)" },
  admin_readonly_uids = { "table", {}, uid_list, "uids allowed read-only sessions on the admin socket" },
  admin_socket_group = { "string", nil, function(v)
                     if v:match("^[%w_.-]+$") then return v end
                     return nil, "expected a group name or number"
                   end, "group given access to the admin socket (mode 0660)" },
  env          = { "string", "development", function(v)
                     if v:match("^[%w_-]+$") then return v end
                     return nil, "expected a name of letters, digits, _ or -"
                   end, "selects config/<env>.lua" },
  admin_token  = { "string", nil, function(v)
                     if #v >= 16 then return v end
                     return nil, "expected at least 16 characters"
                   end, "bootstrap admin token (else var/admin.token)" },
  var_dir      = { "string", "var", nil, "state directory (admin token, database)" },
  user         = { "string", nil, function(v)
                     if v:match("^[%w_.-]+$") then return v end
                     return nil, "expected a user name"
                   end, "started as root: the unprivileged user to run as (default steward, when it exists)" },
  allow_root   = { "boolean", false, nil, "started as root with no user named: keep running as root" },
  metrics_public = { "boolean", false, nil, "serve /metrics without a token" },
  log_level    = { "string", "info", function(v)
                     for _, l in ipairs({ "debug", "info", "warn", "error" }) do
                       if v == l then return v end
                     end
                     return nil, "expected debug, info, warn or error"
                   end, "log level" },
  decision_mask = { "table", {}, function(v)
                     for i, path in ipairs(v) do
                       if type(path) ~= "string" or not path:match("^/[%w_/%-]+$") then
                         return nil, format("item %d: expected a path such as \"/input/password\"", i)
                       end
                     end
                     return v
                   end, "decision log fields replaced by *** (OPA-style paths)" },
  grants       = { "table", {}, function(v)
                     local ok, err = require("steward.runtime.policy.capabilities").check_grants(v)
                     if not ok then return nil, err end
                     return v
                   end, "capabilities granted to policies, by policy name pattern (docs/policies.md)" },
  pg_connections = { "table", {}, function(v)
                     for name, dsn in pairs(v) do
                       if type(name) ~= "string" or not name:match("^[%w_.-]+$") or type(dsn) ~= "string" then
                         return nil, "expected { [name] = \"postgres://...\" }"
                       end
                     end
                     return v
                   end, "PostgreSQL connections policies may be granted by name (the pg capability)" },
  policy_config = { "table", {}, function(v)
                     for name, t in pairs(v) do
                       if type(name) ~= "string" or type(t) ~= "table" then
                         return nil, "expected { [policy name] = { setting = value } }"
                       end
                     end
                     return v
                   end, "per-policy settings over the policies' defaults (checked against their schemas)" },
  tenant_config = { "table", {}, function(v)
                     for tenant, by_policy in pairs(v) do
                       if type(tenant) ~= "string" or type(by_policy) ~= "table" then
                         return nil, "expected { [tenant] = { [policy name] = { setting = value } } }"
                       end
                       for name, t in pairs(by_policy) do
                         if type(name) ~= "string" or type(t) ~= "table" then
                           return nil, "expected { [tenant] = { [policy name] = { setting = value } } }"
                         end
                       end
                     end
                     return v
                   end, "per-tenant settings over policy_config" },
  decision_log = { "string", "async", function(v)
                     if v == "async" or v == "durable" then return v end
                     return nil, "expected \"async\" or \"durable\""
                   end, "decision log mode: async (answers do not wait for their row) or durable (docs/policies.md)" },
  decision_log_window = { "duration", 0.1, function(v)
                     if v > 0 and v <= 10 then return v end
                     return nil, "expected a duration from 1ms to 10s"
                   end, "async decision log: the most a crash can lose (rows answered in the last window)" },
  decision_retention = { "duration", 30 * 86400, nil, "decision log rows older than this are purged" },
  policy_versions_keep = { "number", 20, positive_int(1000000), "stored versions kept per policy (plus the running one and any a logged decision names)" },
  cluster      = { "table", {}, durations_table({ "lease", "heartbeat", "poll" }),
                   "several instances on PostgreSQL: {lease, heartbeat, poll} durations (docs/operations.md)" },
  alerting     = { "table", {}, function(v)
                     local strings = {}
                     for _, k in ipairs({ "external_url", "link_secret_file" }) do
                       local x = v[k]
                       if x ~= nil and (type(x) ~= "string" or x == "") then
                         return nil, format("%s: expected a non-empty string", k)
                       end
                       strings[k], v[k] = x, nil
                     end
                     if strings.external_url and not strings.external_url:match("^https?://[^/]") then
                       return nil, "external_url: expected an http:// or https:// URL"
                     end
                     local d, err = durations_table({ "resolve_timeout", "retention" })(v)
                     if not d then return nil, err end
                     for k, x in pairs(strings) do d[k] = x end
                     return d
                   end,
                   "alerting: {resolve_timeout, retention, external_url, link_secret_file} (docs/alerting.md)" },
  services     = { "table", {}, function(v) return require("steward.deploy.supervisor_config").check(v) end,
                   "services the deploy drivers run and route to: {run, probes, restart, stop, haproxy, kubernetes} by name (docs/deploy/services.md)" },
  quotas       = { "table", {}, function(v) return require("steward.scaling.quota_config").check(v) end,
                   "instances, cpu and memory by service and by tenant: {services = {...}, tenants = {...}} (docs/scaling/quotas.md)" },
  -- h5: capacity reports and cost models (docs/scaling/capacity.md, docs/scaling/cost.md)
  capacity     = { "table", {}, function(v)
                     local ok, err = pcall(require("steward.capacity.config").check, v)
                     if not ok then return nil, (tostring(err):gsub("^capacity%.", "")) end
                     return v
                   end, "capacity reports: {retention, services = {name = {metric, limit, lead_time, window, step}}} (docs/scaling/capacity.md)" },
  costs        = { "table", nil, function(v)
                     local ok, err = pcall(require("steward.capacity.prices").check, v)
                     if not ok then return nil, (tostring(err):gsub("^costs%.", "")) end
                     return v
                   end, "cost model: {currency, timezone, prices = {{name, cron, duration, instance_hour}}, services} (docs/scaling/cost.md)" },
  tenants      = { "table", {}, function(v) return require("steward.tenants.config").check(v) end,
                   "tenants: {plans = {<plan> = {rate, quotas, budgets}}, default_plan, postgres, welcome} (docs/tenants.md)" },
  billing      = { "table", {}, function(v) return require("steward.billing.config").check(v) end, -- issue 18, h4
                   "billing: {currency, timezone, grace_period, net_payment_days, invoices, taxes, payments, dunning, revenue} (docs/billing/subscriptions.md)" },
  limits       = { "table", nil, LIMITS, "limits (see docs/configuration.md)" },
}
M.SCHEMA, M.LIMITS = SCHEMA, LIMITS

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

local function edit_distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- Closest known key, for "did you mean".
local function suggest(key, known)
  local best, best_d
  for k in pairs(known) do
    local d = edit_distance(k, key)
    if not best_d or d < best_d or (d == best_d and k < best) then best, best_d = k, d end
  end
  if best_d and best_d <= 2 then return format(" (did you mean '%s'?)", best) end
  return ""
end

local function check_value(where, key, spec, v)
  local want, _, check = spec[1], spec[2], spec[3]
  local vt = type(v)
  if want == "duration" then
    local sec, reason = duration(v)
    if not sec then return nil, format("%s: %s = %s: %s", where, key, show(v), reason) end
    if type(check) == "function" then -- a range, on the seconds
      sec, reason = check(sec)
      if sec == nil then return nil, format("%s: %s = %s: %s", where, key, show(v), reason) end
    end
    return sec
  end
  if vt ~= want then
    return nil, format("%s: %s = %s: expected a %s", where, key, show(v), want)
  end
  if type(check) == "function" then
    local ok, reason = check(v)
    if ok == nil then return nil, format("%s: %s = %s: %s", where, key, show(v), reason) end
    if ok ~= true then v = ok end
  end
  return v
end

-- Merges layer (a table from a file or the environment) into cfg, checking every key.
local function merge(cfg, layer, where)
  local keys = {}
  for k in pairs(layer) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for _, k in ipairs(keys) do
    local v = layer[k]
    local spec = SCHEMA[k]
    if not spec then
      return nil, format("%s: unknown key '%s'%s", where, k, suggest(k, SCHEMA))
    end
    if k == "limits" then
      if type(v) ~= "table" then
        return nil, format("%s: limits = %s: expected a table", where, show(v))
      end
      local lkeys = {}
      for lk in pairs(v) do lkeys[#lkeys + 1] = tostring(lk) end
      sort(lkeys)
      for _, lk in ipairs(lkeys) do
        local lspec = LIMITS[lk]
        if not lspec then
          return nil, format("%s: unknown key 'limits.%s'%s", where, lk, suggest(lk, LIMITS))
        end
        local lv, err = check_value(where, "limits." .. lk, lspec, v[lk])
        if lv == nil then return nil, err end
        cfg.limits[lk] = lv
      end
    else
      -- An overlay's services change fields of the base's, not the whole table.
      if k == "services" and type(v) == "table" and next(cfg.services or {}) then
        v = require("steward.deploy.supervisor_config").merge(cfg.services, v)
      end
      local cv, err = check_value(where, k, spec, v)
      if cv == nil then return nil, err end
      cfg[k] = cv
    end
  end
  return cfg
end

-- A config file is Lua returning a table; it runs with os.getenv and nothing else, so a
-- config cannot do I/O at load time. read(path) -> text | nil, err ("ENOENT: ..." when there is
-- no such file): the daemon passes steward.fs.read on a reload, so the loop does not block.
local function read_io(path)
  local f = io.open(path, "r")
  if not f then return nil, "ENOENT: cannot open " .. path end
  local text = f:read("*a")
  f:close()
  return text
end

local function load_file(path, required, read)
  local text, rerr = (read or read_io)(path)
  if not text then
    if required or not tostring(rerr):match("^ENOENT") then
      return nil, format("%s: cannot open the config file", path)
    end
    return {}
  end
  local env = { os = { getenv = os.getenv }, tonumber = tonumber, tostring = tostring,
                error = error, pairs = pairs, ipairs = ipairs, type = type,
                string = string, math = math, table = table }
  local fn, err = loadstring(text, "@" .. path)
  if not fn then return nil, err end
  setfenv(fn, env)
  local ok, res = pcall(fn)
  if not ok then return nil, format("%s: %s", path, tostring(res)) end
  if type(res) ~= "table" then
    return nil, format("%s: must return a table, returned %s", path, type(res))
  end
  return res
end

local function parse_env_value(spec, s)
  local want = spec[1]
  if want == "table" then -- a comma-separated list
    local list = {}
    for item in s:gmatch("[^,]+") do list[#list + 1] = item end
    return list
  end
  if want == "number" then return tonumber(s) or s end
  if want == "boolean" then
    if s == "true" or s == "1" then return true end
    if s == "false" or s == "0" then return false end
    return s
  end
  return s
end

-- load{file = "steward.lua", required = false, getenv = os.getenv, read = fn(path)} -> cfg or nil, err
function M.load(opts)
  opts = opts or {}
  local getenv = opts.getenv or os.getenv
  local cfg = { limits = {} }
  for k, spec in pairs(SCHEMA) do
    if k ~= "limits" then cfg[k] = spec[2] end
  end
  for k, spec in pairs(LIMITS) do cfg.limits[k] = spec[2] end

  local file = opts.file or "steward.lua"
  local base, err = load_file(file, opts.required, opts.read)
  if not base then return nil, err end
  local ok
  ok, err = merge(cfg, base, file)
  if not ok then return nil, err end

  -- The environment picks the overlay, so STEWARD_ENV is read before the overlay.
  local env_name = getenv("STEWARD_ENV")
  if env_name and env_name ~= "" then
    ok, err = merge(cfg, { env = env_name }, "STEWARD_ENV")
    if not ok then return nil, err end
  end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local overlay_path = dir .. "/config/" .. cfg.env .. ".lua"
  local overlay
  overlay, err = load_file(overlay_path, false, opts.read)
  if not overlay then return nil, err end
  ok, err = merge(cfg, overlay, overlay_path)
  if not ok then return nil, err end

  -- STEWARD_<KEY> for top-level keys, STEWARD_LIMITS_<KEY> for limits.
  local names = {}
  for k in pairs(SCHEMA) do names[#names + 1] = k end
  sort(names)
  for _, k in ipairs(names) do
    local spec = SCHEMA[k]
    if k ~= "limits" then
      local var = "STEWARD_" .. k:upper()
      local s = getenv(var)
      if s and s ~= "" then
        ok, err = merge(cfg, { [k] = parse_env_value(spec, s) }, var)
        if not ok then return nil, err end
      end
    end
  end
  local lnames = {}
  for k in pairs(LIMITS) do lnames[#lnames + 1] = k end
  sort(lnames)
  for _, k in ipairs(lnames) do
    local var = "STEWARD_LIMITS_" .. k:upper()
    local s = getenv(var)
    if s and s ~= "" then
      ok, err = merge(cfg, { limits = { [k] = parse_env_value(LIMITS[k], s) } }, var)
      if not ok then return nil, err end
    end
  end
  -- Quotas on cpu or memory need the services' resources: checked once every layer is in.
  ok, err = require("steward.scaling.quota_config").against(cfg.quotas, cfg.services)
  if not ok then return nil, format("%s: %s", file, err) end
  return cfg
end

-- Keys a running daemon applies on a reload (SIGHUP, steward reload, POST /v1/policies/reload);
-- a change to any other key is logged as "restart required: KEY" and waits for a restart.
M.RELOADABLE = { policy_config = true, tenant_config = true, log_level = true, grants = true, pg_connections = true,
  services = true, quotas = true, tenants = true, billing = true }

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- diff(old, new) -> reloadable, restart: the changed top-level keys ("limits.x" for limits),
-- sorted, split by whether a reload applies them.
function M.diff(old, new)
  local reloadable, restart = {}, {}
  local function note(k)
    if M.RELOADABLE[k] then reloadable[#reloadable + 1] = k else restart[#restart + 1] = k end
  end
  for k in pairs(SCHEMA) do
    if k == "limits" then
      for lk in pairs(LIMITS) do
        if not same((old.limits or {})[lk], (new.limits or {})[lk]) then note("limits." .. lk) end
      end
    elseif not same(old[k], new[k]) then
      note(k)
    end
  end
  sort(reloadable); sort(restart)
  return reloadable, restart
end

-- Names that hold credentials: their values are shown as "***".
local function secret_name(k)
  k = tostring(k):lower()
  return k:find("secret", 1, true) or k:find("token", 1, true) or k:find("password", 1, true)
    or k:find("passwd", 1, true) or k:find("key", 1, true) or k:find("credential", 1, true)
end

local function redact_text(s)
  -- scheme://user:password@host
  s = s:gsub("(%a[%w+.-]*://[^/:@%s]*):[^@/%s]*@", "%1:***@")
  -- ?token=...&api_key=...
  return (s:gsub("([?&])([^=&#%s]+)=([^&#%s]*)", function(sep, name, value)
    if secret_name(name) and value ~= "" then return sep .. name .. "=***" end
  end))
end

-- The copy is plain data (JSON can carry it): a function (a config may hold matchers) is
-- shown as "<function>", and tables deeper than 32 levels (a cycle) as "<too deep>".
local function redact(v, hidden, depth)
  local t = type(v)
  if t == "table" then
    if depth > 32 then return "<too deep>" end
    local out = {}
    for k, x in pairs(v) do out[k] = redact(x, hidden or (type(k) == "string" and secret_name(k)), depth + 1) end
    return setmetatable(out, getmetatable(v))
  end
  if hidden and v ~= nil then return "***" end
  if t == "string" then return redact_text(v) end
  if t == "function" or t == "userdata" or t == "thread" then return "<" .. t .. ">" end
  return v
end

-- redact(v) -> a copy with secrets replaced by "***": every value under a key named
-- *secret*, *token*, *password*, *key* or *credential*, and in strings the password of a URL
-- (scheme://user:***@host) and such query parameters (?token=***). For `steward config show`,
-- the policies' merged config in GET /v1/policies/{name} and the REPL.
function M.redact(v) return redact(v, false, 0) end

-- The documentation table (docs/configuration.md is checked against it by a spec).
function M.describe()
  local rows = {}
  for k, spec in pairs(SCHEMA) do
    if k ~= "limits" then rows[#rows + 1] = { key = k, type = spec[1], default = spec[2], doc = spec[4] } end
  end
  for k, spec in pairs(LIMITS) do
    rows[#rows + 1] = { key = "limits." .. k, type = spec[1], default = spec[2], doc = spec[4] }
  end
  sort(rows, function(a, b) return a.key < b.key end)
  return rows
end

return M
