-- steward.deploy.supervisor: the restart/start-limit rules on a fake clock (systemd's
-- Restart=on-failure, RestartSec, StartLimitBurst, StartLimitIntervalSec), the probe
-- thresholds, the `services` schema, and the supervisor itself on real processes
-- (tests/support/svc_app.py) without a daemon.
local t = require "steward.tap"
local backoff = require "steward.deploy.supervisor_backoff"
local probes = require "steward.deploy.probes"
local cfgmod = require "steward.deploy.supervisor_config"
local config = require "steward.runtime.config"

-- ---- backoff and the start limit, on a fake clock ----
local R = { policy = "on-failure", delay = 0.1, delay_max = 1, burst = 5, interval = 10 }
local cases = {
  -- exit, policy, expected action
  { { code = 1 }, "on-failure", "restart", "a non-zero exit is restarted" },
  { { code = 0 }, "on-failure", "stop", "a clean exit (0) is not restarted under on-failure" },
  { { signal = 9 }, "on-failure", "restart", "SIGKILL is unclean: restarted" },
  { { signal = 11 }, "on-failure", "restart", "SIGSEGV is unclean: restarted" },
  { { signal = 15 }, "on-failure", "stop", "SIGTERM is a clean signal for systemd: not restarted" },
  { { signal = 1 }, "on-failure", "stop", "SIGHUP is clean" },
  { { signal = 2 }, "on-failure", "stop", "SIGINT is clean" },
  { { signal = 13 }, "on-failure", "stop", "SIGPIPE is clean" },
  { {}, "on-failure", "restart", "an exit not observed (an adopted process) counts as a failure" },
  { { code = 0, liveness = true }, "on-failure", "restart", "killed for a failed liveness probe: a failure" },
  { { code = 0 }, "always", "restart", "always restarts a clean exit" },
  { { signal = 15 }, "always", "restart", "always restarts after SIGTERM" },
  { { code = 1 }, "no", "stop", "no never restarts" },
  { { code = 1, stopped = true }, "always", "stop", "an instance we stopped is never restarted" },
}
for _, c in ipairs(cases) do
  local r = {}
  for k, v in pairs(R) do r[k] = v end
  r.policy = c[2]
  local h = backoff.new()
  backoff.started(h, 0, r)
  t.is(backoff.decide(h, c[1], 1, r).action, c[3], c[4])
end

-- A crash loop: delays double from delay to delay_max; the 6th start inside 10 s is refused.
do
  local h, now, delays = backoff.new(), 0, {}
  backoff.started(h, now, R)
  local d
  for _ = 1, 10 do
    now = now + 0.01 -- crashes right after starting
    d = backoff.decide(h, { code = 1, uptime = 0.01 }, now, R)
    if d.action ~= "restart" then break end
    delays[#delays + 1] = d.delay
    now = now + d.delay
    backoff.started(h, now, R)
  end
  t.is_deeply(delays, { 0.1, 0.2, 0.4, 0.8 }, "delays double: 0.1, 0.2, 0.4, 0.8 (4 restarts after the first start)")
  t.is(d.action, "failed", "the sixth start within the interval is refused: failed")
  t.like(d.reason, "start limit hit: 5 starts within 10s", "the reason names the burst and the interval")
end
do -- delays stop at delay_max
  local r = { policy = "on-failure", delay = 0.5, delay_max = 2, burst = 100, interval = 1000 }
  local h, now, last = backoff.new(), 0, nil
  backoff.started(h, now, r)
  for _ = 1, 6 do
    local d = backoff.decide(h, { code = 1, uptime = 0 }, now, r)
    last = d.delay
    now = now + d.delay
    backoff.started(h, now, r)
  end
  t.is(last, 2, "the delay is capped at delay_max")
end
do -- crashes spread wider than the interval never hit the limit; a long run resets the delay
  local h, now = backoff.new(), 0
  backoff.started(h, now, R)
  local all_restart = true
  for _ = 1, 20 do
    now = now + 3 -- ran 3 s, then crashed: at most 4 starts in any 10 s window
    local d = backoff.decide(h, { code = 1, uptime = 3 }, now, R)
    if d.action ~= "restart" then all_restart = false end
    now = now + d.delay
    backoff.started(h, now, R)
  end
  t.ok(all_restart, "crashes 3 s apart never reach 5 starts in 10 s: always restarted")
  local d = backoff.decide(h, { code = 1, uptime = 60 }, now + 60, R)
  t.is(d.delay, 0.1, "a run longer than the interval resets the delay to `delay`")
end

-- ---- probe thresholds ----
do
  local p = { failure_threshold = 3, success_threshold = 2 }
  local s = probes.new()
  t.is(probes.step(s, p, true), false, "one success of two: not decided yet")
  t.is(s.ok, nil, "readiness starts undecided (not ready)")
  t.is(probes.step(s, p, true), true, "two successes in a row: ready")
  t.is(probes.step(s, p, false), false, "one failure does not flip it")
  t.is(probes.step(s, p, false), false, "two failures do not flip it")
  t.is(probes.step(s, p, true), false, "a success in between resets the failure count")
  t.is(s.ok, true, "still ready")
  probes.step(s, p, false); probes.step(s, p, false)
  t.is(probes.step(s, p, false), true, "three failures in a row: flips to failed")
  t.is(s.ok, false, "failed")
end

-- ---- the services schema ----
local good = {
  api = {
    run = { cmd = { "/usr/bin/python3", "app.py", "--port", "{port}" }, env = { VERSION = "{revision}" },
            cwd = "/srv/api", instances = 2, ports = "9100-9199", log_dir = "var/services" },
    probes = { readiness = { http = "/healthz", interval = "1s", timeout = "500ms", failure_threshold = 3, success_threshold = 1 },
               liveness = { tcp = true, interval = "2s", timeout = "1s", failure_threshold = 3 } },
    restart = { policy = "on-failure", delay = "100ms", delay_max = "10s", burst = 5, interval = "10s" },
    stop = { signal = "TERM", grace = "10s" },
    haproxy = { socket = "var/haproxy.sock", backend = "api" },
    kubernetes = { api = "https://k8s:6443", namespace = "prod", deployment = "api", service = "api",
                   httproute = "api", image = "registry/api:{revision}", token_file = "/var/run/k8s.token" },
  },
}
local n, err = cfgmod.check(good)
t.ok(n, "the design's example validates" .. (err and (": " .. err) or ""))
if n then
  t.is_deeply(n.api.run.ports, { 9100, 9199 }, "ports become a range")
  t.is(n.api.probes.readiness.timeout, 0.5, "durations become seconds")
  t.is(n.api.restart.delay, 0.1, "restart.delay in seconds")
  t.is(n.api.stop.grace, 10, "stop.grace in seconds")
  t.is(n.api.haproxy.backend, "api", "haproxy kept")
  t.is(n.api.kubernetes.image, "registry/api:{revision}", "kubernetes kept")
  t.is_deeply(cfgmod.check(n), n, "a checked table checks again unchanged (overlays merge over it)")
end
local d = assert(cfgmod.check({ web = { run = { cmd = { "srv" } } } }))
t.is_deeply({ d.web.restart.policy, d.web.restart.delay, d.web.restart.burst, d.web.restart.interval, d.web.stop.signal, d.web.stop.grace, d.web.run.instances },
  { "on-failure", 0.1, 5, 10, "TERM", 10, 1 }, "defaults: systemd's (on-failure, 100ms, 5 in 10s), TERM with 10s grace, 1 instance")
local bad = {
  { { api = { run = { cmd = "app" } } }, "services.api.run.cmd: an array of strings", "cmd must be an array" },
  { { api = { run = { cmd = { "a", 2 } } } }, "services.api.run.cmd%[2%]: a string expected", "cmd items are strings" },
  { { api = { run = { cmd = { "a", "{port}" } } } }, "services.api.run.ports: required", "{port} needs ports" },
  { { api = { run = { cmd = { "a" }, ports = "9-2" } } }, "services.api.run.ports: a port range", "a backwards range" },
  { { api = { run = { cmd = { "a" }, instances = -1 } } }, "services.api.run.instances: an integer from 0", "negative instances" },
  { { api = { run = { cmd = { "a" }, colour = 1 } } }, "services.api.run: unknown field 'colour'", "unknown run field" },
  { { api = { runn = {} } }, "services.api: unknown field 'runn'", "unknown service field" },
  { { ["bad name"] = {} }, "services%[bad name%]: a service name", "a bad service name" },
  { { api = { run = { cmd = { "a" }, ports = 9100 }, probes = { readiness = { http = "healthz" } } } }, "services.api.probes.readiness.http: a path", "http probe path" },
  { { api = { run = { cmd = { "a" }, ports = 9100 }, probes = { readiness = { http = "/h", tcp = true } } } }, "exactly one of http, tcp or exec", "two probe kinds" },
  { { api = { run = { cmd = { "a" } }, probes = { liveness = { tcp = true } } } }, "services.api.run.ports: required: an http or tcp probe", "a tcp probe needs ports" },
  { { api = { run = { cmd = { "a" }, ports = 9100 }, probes = { readiness = { tcp = true, timeout = "soon" } } } }, "services.api.probes.readiness.timeout", "bad probe duration" },
  { { api = { run = { cmd = { "a" }, ports = 9100 }, probes = { liveness = { tcp = true, success_threshold = 2 } } } }, "liveness.success_threshold: an integer from 1 to 1", "liveness success threshold is 1" },
  { { api = { restart = { policy = "sometimes" } } }, "services.api.restart.policy", "bad restart policy" },
  { { api = { restart = { delay = "5s", delay_max = "1s" } } }, "services.api.restart.delay_max: must not be less than delay", "delay_max below delay" },
  { { api = { restart = { burst = 0 } } }, "services.api.restart.burst", "burst 0" },
  { { api = { stop = { signal = "STOP" } } }, "services.api.stop.signal: a signal name", "bad stop signal" },
  { { api = { haproxy = { backend = "api" } } }, "services.api.haproxy.socket: required", "haproxy needs a socket" },
  { { api = { haproxy = { socket = "s", backend = "b", weight = 1 } } }, "services.api.haproxy: unknown field 'weight'", "unknown haproxy field" },
  { { api = { kubernetes = { api = "k8s:6443" } } }, "services.api.kubernetes.api: an http:// or https:// URL", "kubernetes api URL" },
  { { api = { kubernetes = { api = "https://k", namespace = 3 } } }, "services.api.kubernetes.namespace: a non%-empty string", "kubernetes namespace type" },
}
for _, c in ipairs(bad) do
  local res, e = cfgmod.check(c[1])
  t.ok(res == nil and tostring(e):find(c[2]), c[3] .. " (" .. tostring(e) .. ")")
end
t.is(cfgmod.expand("--port={port} {revision}/{index} {other}", { port = 9100, revision = "v2", index = 1 }),
  "--port=9100 v2/1 {other}", "placeholders filled in, unknown braces kept")

-- In steward.lua, with an environment overlay that changes one field.
local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir .. "/config")
local function write(path, text) local f = assert(io.open(path, "w")); f:write(text); f:close() end
write(dir .. "/steward.lua", [[return { env = "production", services = { api = { run = { cmd = { "app", "{port}" }, ports = "9100-9199", instances = 2 }, stop = { grace = "3s" } } } }]])
write(dir .. "/config/production.lua", [[return { services = { api = { run = { instances = 4 } } } }]])
local cfg, cerr = config.load({ file = dir .. "/steward.lua", getenv = function() return nil end })
t.ok(cfg and cfg.services.api.run.instances == 4, "an overlay changes one field of a service" .. (cerr and (": " .. cerr) or ""))
t.ok(cfg and cfg.services.api.run.cmd[2] == "{port}" and cfg.services.api.stop.grace == 3, "and keeps the others")
write(dir .. "/config/production.lua", [[return { services = { api = { run = { instances = "four" } } } }]])
local _, oerr = config.load({ file = dir .. "/steward.lua", getenv = function() return nil end })
t.like(oerr, "production.lua: services = .*services.api.run.instances: an integer", "a bad overlay names the file and the field")
os.execute("rm -rf " .. dir)

-- docs/deploy/services.md: its steward.lua block validates, its overlay merges, its policy loads
do
  local doc = assert(io.open("docs/deploy/services.md")):read("*a")
  local blocks = {}
  for code in doc:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
  local main = assert(loadstring(blocks[1], "=services.md"))()
  local checked, cerr2 = cfgmod.check(main.services)
  t.ok(checked, "docs/deploy/services.md's steward.lua block validates" .. (cerr2 and (": " .. cerr2) or ""))
  local overlay = assert(loadstring(blocks[2], "=services.md"))()
  local merged = checked and cfgmod.check(cfgmod.merge(checked, overlay.services))
  t.ok(merged and merged.api.run.instances == 6 and merged.api.stop.grace == 30 and merged.api.run.ports[1] == 9100,
    "its production overlay changes instances and grace, keeps the rest")
  local policy_src
  for _, b in ipairs(blocks) do if b:find("capabilities = { deploy", 1, true) then policy_src = b end end
  local pdir = os.tmpname(); os.remove(pdir); os.execute("mkdir -p " .. pdir)
  local f = assert(io.open(pdir .. "/p.lua", "w")); f:write(policy_src or ""); f:close()
  local pol, perr = require("steward.runtime.policies").load_file(pdir .. "/p.lua", "deploy.bringup",
    { grants = { ["deploy.*"] = { deploy = { "api" } } } })
  t.ok(pol, "its policy example loads with the deploy grant" .. (perr and (": " .. perr) or ""))
  os.execute("rm -rf " .. pdir)
end

t.done()
