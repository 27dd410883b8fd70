-- The `deploy` capability in front of steward.deploy.haproxy, .kubernetes and
-- .metrics.haproxy inside a policy's sandbox: a service outside the granted scope is refused
-- with nil, "capability 'deploy' not granted to <policy> (service x)"; inside it the call
-- reaches the driver; the operator-side configure is hidden; scope patterns ("web-*").
local t = require "steward.tap"
local sandbox = require "steward.runtime.policy.sandbox"
local guard = require "steward.runtime.guard"
local caps = require "steward.runtime.policy.capabilities"
local haproxy = require "steward.deploy.haproxy"

haproxy.configure { api = { haproxy = { socket = "/nonexistent/steward-h2.sock", backend = "api" } },
  ["web-eu"] = { haproxy = { socket = "/nonexistent/steward-h2.sock", backend = "web" } } }

local function run(granted, src)
  local env, box = sandbox.new_env({ name = "probe", log = function() end })
  box.caps = granted
  local fn, err = sandbox.compile(env, src, "=probe")
  if not fn then return false, err end
  return guard.run(box.budget, fn)
end

local ok, v, err = run({ deploy = { "api", "web-*" } }, [[
  local h = require "steward.deploy.haproxy"
  return h.stats("db")
]])
t.ok(ok and v == nil, "a service outside the scope is refused")
t.is(err, "capability 'deploy' not granted to probe (service db)", "the refusal names the capability, policy and service")

ok, v, err = run({ deploy = { "api", "web-*" } }, [[
  local h = require "steward.deploy.haproxy"
  return h.stats("api")
]])
t.ok(ok and v == nil and err:find("ENOENT", 1, true) and err:find("steward-h2.sock", 1, true),
  "a service in the scope reaches the driver (which answers about the socket): " .. tostring(err))

ok, v, err = run({ deploy = { "api", "web-*" } }, [[
  local h = require "steward.deploy.haproxy"
  return h.drain("web-eu", "v1")
]])
t.ok(ok and v == nil and not err:find("capability", 1, true), "a pattern web-* grants web-eu: " .. tostring(err))

ok, v, err = run({}, [[
  local h = require "steward.deploy.haproxy"
  return h.set_weights("api", { v1 = 100 })
]])
t.is(err, "capability 'deploy' not granted to probe (service api)", "without the capability every call is refused")

ok, v, err = run({ deploy = true }, [[
  local h = require "steward.deploy.haproxy"
  return h.weights({ v1 = 80, v2 = 20 }, { v1 = 1, v2 = 1 }).v2
]])
t.is(v, 64, "the pure weight computation needs no service")

ok, v = run({ deploy = true }, [[
  local h = require "steward.deploy.haproxy"
  return pcall(h.configure, {})
]])
t.is(v, false, "configure (the operator's services) is not available to policies")

ok, v, err = run({ deploy = { "api" } }, [[
  local m = require "steward.deploy.metrics.haproxy"
  return m.provider { service = "db", revision = "v1", metric = "error_rate" }
]])
t.is(err, "capability 'deploy' not granted to probe (service db)", "a metric provider for a service outside the scope is refused")

ok, v, err = run({ deploy = { "api" } }, [[
  local m = require "steward.deploy.metrics.haproxy"
  local fn = m.provider { service = "api", revision = "v1", metric = "error_rate" }
  return fn()
]])
t.ok(ok and v == nil and err:find("ENOENT", 1, true), "a provider in the scope measures (the socket's error): " .. tostring(err))

ok, v, err = run({ deploy = { "api" } }, [[
  local k = require "steward.deploy.kubernetes"
  return k.status("db", "v1")
]])
t.is(err, "capability 'deploy' not granted to probe (service db)", "the kubernetes driver is guarded the same way")

-- declarations and grants
local parsed, perr = caps.parse({ deploy = { "api", "web-*" } }, "capabilities")
t.ok(parsed and parsed.deploy[2] == "web-*", "deploy = {names or patterns} parses: " .. tostring(perr))
local _, berr = caps.parse({ deploy = { 3 } }, "capabilities")
t.like(berr, "capabilities%.deploy%[1%]: a string expected", "a bad scope item is named")
t.ok(caps.service_in({ "web-*" }, "web-eu") and not caps.service_in({ "web-*" }, "api"), "service_in matches patterns")
local grants = { ["deploy.*"] = { deploy = { "web-*", "api" } } }
local eff, rerr = caps.resolve({ name = "deploy.canary" }, { deploy = { "web-eu", "api" } }, grants)
t.ok(eff and eff.deploy[1] == "web-eu", "a declared service inside a granted pattern resolves: " .. tostring(rerr))
eff, rerr = caps.resolve({ name = "deploy.canary" }, { deploy = { "db" } }, grants)
t.like(rerr, "'deploy' beyond its grant", "a declared service outside the grant is refused at load")
eff = caps.resolve({ name = "deploy.canary" }, { deploy = true }, grants)
t.ok(eff and eff.deploy[1] == "web-*", "a declaration without a scope gets the granted one")
t.done()
