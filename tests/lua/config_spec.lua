-- steward.runtime.config: defaults, files, overlays, environment variables, and clear errors.
local t = require "steward.tap"
local config = require "steward.runtime.config"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir .. "/config")
local function write(path, text)
  local f = assert(io.open(dir .. "/" .. path, "w")); f:write(text); f:close()
  return dir .. "/" .. path
end
local function env(vars) return function(k) return vars[k] end end

local cfg = assert(config.load({ file = dir .. "/none.lua", getenv = env({}) }))
t.is(cfg.listen, "127.0.0.1:8080", "default listen")
t.is(cfg.store, "sqlite:var/steward.db", "default store")
t.is(cfg.policies, "policies", "default policies")
t.is(cfg.admin_socket, "var/steward.sock", "default admin socket")
t.is(cfg.limits.max_body_bytes, 8 * 1024 * 1024, "default body limit")
t.is(cfg.limits.header_timeout, 10, "durations become seconds")

local _, err = config.load({ file = dir .. "/none.lua", required = true, getenv = env({}) })
t.like(err, "cannot open the config file", "a named config file must exist")

local f = write("steward.lua", [[return { listen = "0.0.0.0:9000", env = "production", limits = { body_timeout = "2m" } }]])
write("config/production.lua", [[return { store = "postgres://u@db:5432/steward", limits = { max_batch = 500 } }]])
cfg = assert(config.load({ file = f, getenv = env({}) }))
t.is(cfg.listen, "0.0.0.0:9000", "the file overrides defaults")
t.is(cfg.limits.body_timeout, 120, "a duration string in the file")
t.is(cfg.store, "postgres://u@db:5432/steward", "config/<env>.lua overlays the file")
t.is(cfg.limits.max_batch, 500, "the overlay merges limits key by key")
t.is(cfg.limits.max_body_bytes, 8 * 1024 * 1024, "limits the overlay does not name keep their value")

cfg = assert(config.load({ file = f, getenv = env({ STEWARD_LISTEN = "127.0.0.1:7000", STEWARD_LIMITS_MAX_BATCH = "42",
  STEWARD_METRICS_PUBLIC = "true" }) }))
t.is(cfg.listen, "127.0.0.1:7000", "STEWARD_LISTEN overrides everything")
t.is(cfg.limits.max_batch, 42, "STEWARD_LIMITS_<KEY> sets a limit, as a number")
t.is(cfg.metrics_public, true, "booleans from the environment")
write("config/staging.lua", [[return { listen = "127.0.0.1:7100" }]])
cfg = assert(config.load({ file = f, getenv = env({ STEWARD_ENV = "staging" }) }))
t.is(cfg.listen, "127.0.0.1:7100", "STEWARD_ENV selects the overlay")

local cases = {
  { [[return { lisen = "x" }]], "unknown key 'lisen' %(did you mean 'listen'%?%)", "unknown key, with a suggestion" },
  { [[return { listen = 8080 }]], "listen = 8080: expected a string", "wrong type names key and value" },
  { [[return { listen = "localhost" }]], 'listen = "localhost": expected host:port', "bad value says what was expected" },
  { [[return { store = "mysql://x" }]], 'store = "mysql://x": expected', "unknown store scheme" },
  { [[return { limits = { max_body_bytes = -1 } }]], "limits.max_body_bytes = %-1: expected an integer", "limit range" },
  { [[return { limits = { header_timeout = "soon" } }]], "limits.header_timeout = \"soon\": bad duration", "bad duration" },
  { [[return { limits = { bogus = 1 } }]], "unknown key 'limits.bogus'", "unknown limit" },
  { [[return { limits = 5 }]], "limits = 5: expected a table", "limits must be a table" },
  { [[return "nope"]], "must return a table", "a file must return a table" },
  { [[error("boom")]], "boom", "an error in the file is reported" },
  { [[return { admin_token = "short" }]], "at least 16 characters", "weak admin tokens are refused" },
  { [[return { env = "../etc" }]], 'env = "../etc"', "env must be a plain name" },
  { [[local x = io.open("/etc/passwd") return {}]], "io", "a config file cannot do I/O" },
}
for _, c in ipairs(cases) do
  local path = write("bad.lua", c[1])
  local res, e = config.load({ file = path, getenv = env({}) })
  t.ok(res == nil and e and e:find(c[2]), c[3] .. " (" .. tostring(e) .. ")")
  t.ok(e == nil or not e:find("\n"), "the error is one line: " .. c[3])
end
_, err = config.load({ file = f, getenv = env({ STEWARD_LISTEN = "nope" }) })
t.like(err, "^STEWARD_LISTEN: listen = \"nope\"", "an environment error names the variable")

-- docs/configuration.md documents every key.
local doc = io.open("docs/configuration.md")
if doc then
  local text = doc:read("*a"); doc:close()
  for _, row in ipairs(config.describe()) do
    t.ok(text:find("`" .. row.key .. "`", 1, true), "docs/configuration.md documents " .. row.key)
  end
end
-- The alerting table: durations become seconds, strings stay, bad values name the field.
f = write("alerting.lua", [[return { alerting = { resolve_timeout = "1m", retention = "2h", external_url = "https://steward.example.com", link_secret_file = "/etc/steward/link.key" } }]])
cfg = assert(config.load({ file = f, getenv = env({}) }))
t.is(cfg.alerting.resolve_timeout, 60, "alerting.resolve_timeout in seconds")
t.is(cfg.alerting.retention, 7200, "alerting.retention in seconds")
t.is(cfg.alerting.external_url, "https://steward.example.com", "alerting.external_url kept")
t.is(cfg.alerting.link_secret_file, "/etc/steward/link.key", "alerting.link_secret_file kept")
f = write("alerting_bad.lua", [[return { alerting = { external_url = "steward.example.com" } }]])
_, err = config.load({ file = f, getenv = env({}) })
t.like(err, "alerting.*external_url: expected an http", "a bad external_url is named")
f = write("alerting_bad2.lua", [[return { alerting = { retention = "soon" } }]])
_, err = config.load({ file = f, getenv = env({}) })
t.like(err, "alerting.*retention", "a bad retention is named")

-- diff: which changed keys a reload applies and which wait for a restart.
local a = assert(config.load({ file = dir .. "/none.lua", getenv = env({}) }))
local b = assert(config.load({ file = dir .. "/none.lua", getenv = env({ STEWARD_LISTEN = "127.0.0.1:9", STEWARD_LOG_LEVEL = "debug",
  STEWARD_LIMITS_MAX_BATCH = "5" }) }))
b.policy_config = { p = { x = 1 } }
local reloadable, restart = config.diff(a, b)
t.is(table.concat(reloadable, ","), "log_level,policy_config", "diff: keys a reload applies")
t.is(table.concat(restart, ","), "limits.max_batch,listen", "diff: keys that need a restart")
reloadable, restart = config.diff(a, assert(config.load({ file = dir .. "/none.lua", getenv = env({}) })))
t.is(#reloadable + #restart, 0, "diff: the same config read twice has no changes")
-- read: the daemon passes its own reader (steward.fs.read) so a reload does not block the loop.
local read_paths = {}
cfg = assert(config.load({ file = "/x/steward.lua", required = true, getenv = env({}),
  read = function(path)
    read_paths[#read_paths + 1] = path
    if path == "/x/steward.lua" then return "return { listen = '127.0.0.1:7' }" end
    return nil, "ENOENT: no such file"
  end }))
t.is(cfg.listen, "127.0.0.1:7", "load reads through opts.read")
t.is(table.concat(read_paths, " "), "/x/steward.lua /x/config/development.lua", "...the file and its overlay")
-- redact: secrets by name, URL passwords and query tokens; plain data for JSON.
local r = config.redact({ store = "postgres://u:pw@db:5432/s", admin_token = "0123456789abcdef0",
  policy_config = { hook = { url = "https://h/x?token=abc&x=1", api_key = { "k1" }, Password = "p", n = 3 } },
  alerting = { external_url = "https://steward.example.com" }, fn = function() end })
t.is(r.store, "postgres://u:***@db:5432/s", "redact: a URL's password")
t.is(r.admin_token, "***", "redact: *token*")
t.is(r.policy_config.hook.url, "https://h/x?token=***&x=1", "redact: a token in a URL's query")
t.is(r.policy_config.hook.api_key[1], "***", "redact: everything under *key*")
t.is(r.policy_config.hook.Password, "***", "redact: names in any case")
t.is(r.policy_config.hook.n, 3, "redact: other values kept")
t.is(r.alerting.external_url, "https://steward.example.com", "redact: a URL without credentials kept")
t.is(r.fn, "<function>", "redact: a function becomes a string")
-- a policy's config default may be a sandbox's read-only view (its metatable protected by
-- __metatable): redacting it must not raise (it stopped the daemon's start)
local locked = setmetatable({ n = 1 }, { __metatable = "read-only" })
local ok_locked, r_locked = pcall(config.redact, { weights = locked })
t.ok(ok_locked and type(r_locked.weights) == "table" and r_locked.weights.n == 1,
  "redact: a table whose metatable is protected is copied (" .. tostring(r_locked) .. ")")

os.execute("rm -rf " .. dir)
t.done()
