-- The capabilities in front of issue 15's supervisor: `deploy` (scope: service names or
-- patterns) guards steward.deploy.supervisor; proc.spawn is guarded as proc.run, and a policy
-- may signal (proc.kill) only the processes it spawned itself.
local t = require "steward.tap"
local fs = require "steward.fs"
local supervisor = require "steward.deploy.supervisor"
local proc = require "steward.proc"
local sb = assert(loadfile("tests/support/capability_spec.lua"))()("cap")
local dir = sb.dir
local load, decide = sb.load, sb.decide
local function denied(err) return type(err) == "string" and err:find("not granted", 1, true) ~= nil end

supervisor.configure({ services = { ["web-1"] = { run = { cmd = { "true" }, instances = 1 }, probes = {},
  restart = { policy = "no", delay = 0.1, delay_max = 1, burst = 5, interval = 10 }, stop = { signal = "TERM", grace = 1 } },
  api = { run = { cmd = { "true" }, instances = 1 }, probes = {},
  restart = { policy = "no", delay = 0.1, delay_max = 1, burst = 5, interval = 10 }, stop = { signal = "TERM", grace = 1 } } },
  var_dir = dir })

-- ---- deploy ----
local _, err = load([[return { capabilities = { deploy = { "api" } }, decide = function() end }]], {})
t.like(err, "capabilities not granted to cap.p1: 'deploy'", "a policy declaring deploy without a grant does not load")
local src = [[
local supervisor = require "steward.deploy.supervisor"
return { capabilities = { deploy = { "web-*" } },
  decide = function(i) local r, err = supervisor[i.verb](i.service, "v1") return { r = r, err = err } end }
]]
_, err = load(src, { ["cap.*"] = { deploy = { "api" } } })
t.like(err, "deploy", "a declared scope outside the grant does not load")
local p = assert(load(src, { ["cap.*"] = { deploy = { "web-*", "api" } } }))
local r = decide(p, { verb = "instances", service = "web-1" })
t.ok(r.r and #r.r == 0, "a service the pattern web-* covers: the call goes through (" .. tostring(r.err) .. ")")
r = decide(p, { verb = "start", service = "api" })
t.is(r.err, "capability 'deploy' not granted to cap.p3 (service api)", "a service outside the declared scope is refused, naming it")
r = decide(p, { verb = "instances", service = "db" })
t.ok(denied(r.err), "an unknown service outside the scope is refused too")
local p2 = assert(load([[
local supervisor = require "steward.deploy.supervisor"
return { decide = function() local r, err = supervisor.instances("api") return { r = r, err = err } end }
]], {}))
t.ok(denied(decide(p2).err), "without the capability every call is refused")
local p3 = assert(load([[
local supervisor = require "steward.deploy.supervisor"
return { capabilities = { deploy = true }, decide = function() return { ok = pcall(supervisor.configure, {}) } end }
]], { ["cap.*"] = { deploy = true } }))
t.is(decide(p3).ok, false, "the daemon's side (configure, supervise, release, status) is hidden from policies")
_, err = load([[return { tenant = "acme", capabilities = { "deploy" }, decide = function() end }]], { ["*"] = { deploy = true } }, "acme.d")
t.like(err, "never granted to a tenant", "a tenant's policy never gets deploy")

-- ---- proc.spawn, proc.kill ----
p = assert(load([[
local proc = require "steward.proc"
return { capabilities = { proc = { "/usr/bin/sleep", "/usr/bin/env" } },
  decide = function(i)
    if i.op == "spawn" then
      local h, err = proc.spawn{ cmd = i.cmd, stdout = i.out }
      if h and i.wait then h:wait() end
      return { pid = h and h.pid, err = err }
    elseif i.op == "kill" then local ok, err = proc.kill(i.pid, "KILL") return { ok = ok, err = err } end
  end }
]], { ["cap.*"] = { proc = { "/usr/bin/sleep", "/usr/bin/env" } } }))
r = decide(p, { op = "spawn", cmd = { "/usr/bin/sleep", "30" } })
t.ok(r.pid, "proc.spawn: a granted program starts")
t.ok(decide(p, { op = "kill", pid = r.pid }).ok, "proc.kill: a process the policy spawned may be signalled")
t.ok(denied(decide(p, { op = "spawn", cmd = { "/bin/cat" } }).err), "proc.spawn: another program is refused")
local other = assert(proc.spawn{ cmd = { "sleep", "30" } })
r = decide(p, { op = "kill", pid = other.pid })
t.ok(denied(r.err) and other:kill(0), "proc.kill: a process the policy did not spawn is refused, and lives")
other:kill("KILL")
decide(p, { op = "spawn", cmd = { "/usr/bin/env" }, out = dir .. "/env.out", wait = true })
local envout = fs.read(dir .. "/env.out") or ""
t.ok(not envout:match("PATH=") and not envout:match("HOME="), "proc.spawn: the child's environment is clean")

sb.close()
t.done()
