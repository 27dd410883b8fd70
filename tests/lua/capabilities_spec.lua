-- gh-12.2: capabilities, declared by a policy and granted by the operator. For each
-- capability: a policy that declares it without a grant does not load (the error names it);
-- an undeclared use at run time answers nil, "capability 'x' not granted to <policy>"; with
-- the grant only the granted scope works. A tenant's policy never gets host capabilities.
local t = require "steward.tap"
local guards = require "steward.runtime.policy.guards"
local caps = require "steward.runtime.policy.capabilities"
local fs = require "steward.fs"

local sb = assert(loadfile("tests/support/capability_spec.lua"))()("cap")
local dir, st = sb.dir, sb.store
local load, decide = sb.load, sb.decide
assert(fs.mkdir(dir .. "/data", { parents = true }))
assert(fs.mkdir(dir .. "/out", { parents = true }))
assert(fs.write(dir .. "/data/a.txt", "inside"))
-- A link inside the granted directory that leads outside it.
os.execute("ln -s /etc/passwd " .. dir .. "/data/escape")

-- ---- the issue's escape ----
local p = assert(load([[
return { name = "escape", decide = function()
  local fs, proc = require "steward.fs", require "steward.proc"
  local shadow, ferr = fs.read("/etc/shadow")
  local res, perr = proc.run{ cmd = { "/usr/bin/id" } }
  return { shadow = shadow, ferr = ferr, id = res and res.stdout, perr = perr } end }
]], { ["*"] = {} }))
local r = decide(p)
t.is(r.shadow, nil, "the escape: /etc/shadow is not read")
t.is(r.ferr, "capability 'fs.read' not granted to escape (read /etc/shadow)", "  with the capability named")
t.is(r.id, nil, "the escape: id is not run")
t.is(r.perr, "capability 'proc' not granted to escape (/usr/bin/id)", "  with the capability named")

-- ---- declared but not granted: no load ----
local _, err = load([[return { capabilities = { "http", "proc" }, decide = function() end }]], {}, "needy")
t.like(err, "capabilities not granted to needy: 'http', 'proc'", "a policy asking for more than it was granted does not load, naming each")
_, err = load([[return { capabilities = { http = { "https://evil.example/" } }, decide = function() end }]],
  { needy2 = { http = { "https://api.example/" } } }, "needy2")
t.like(err, "'http' beyond its grant", "a declared scope beyond the grant does not load")
_, err = load([[return { capabilities = { "teleport" }, decide = function() end }]], {}, "bad")
t.like(err, "unknown capability 'teleport'", "an unknown capability is an error naming it")
_, err = load([[return { tenant = "acme", capabilities = { "proc" }, decide = function() end }]], { ["*"] = { proc = true } }, "acme.p")
t.like(err, "'proc' %(never granted to a tenant's policy%)", "a tenant's policy cannot obtain proc even when * is granted it")
_, err = load([[return { tenant = "acme", capabilities = { ["fs.read"] = { "/tmp" } }, decide = function() end }]],
  { ["*"] = { ["fs.read"] = true } }, "acme.q")
t.like(err, "'fs.read' %(never granted", "nor fs.read")

-- ---- http ----
p = assert(load([[
local http = require "steward.http"
return { capabilities = { http = { "http://127.0.0.1:9/ok/" } },
  decide = function(i) local res, err = http.request{ url = i.url, timeout = 1 } return { err = err } end }
]], { ["cap.*"] = { http = { "http://127.0.0.1:9/" } } }))
local function denied(e) return type(e) == "string" and e:match("^capability '") ~= nil end
t.ok(not denied(decide(p, { url = "http://127.0.0.1:9/ok/x" }).err), "http: a granted URL is requested (it fails on its own: nothing listens)")
t.ok(denied(decide(p, { url = "http://127.0.0.1:9/other" }).err), "http: another path is refused")
t.ok(denied(decide(p, { url = "http://127.0.0.1:9/okay" }).err), "http: a prefix matches on a segment boundary only")
t.ok(denied(decide(p, { url = "http://127.0.0.2:9/ok/x" }).err), "http: another host is refused")
t.ok(denied(decide(p, { url = "http://user@127.0.0.1:10/ok/x" }).err), "http: another port is refused")
p = assert(load([[
local http = require "steward.http"
return { decide = function() local res, err = http.request{ url = "http://127.0.0.1:9/", timeout = 1 } return { err = err } end }
]], { ["*"] = { http = true } }))
t.like(decide(p).err, "capability 'http' not granted to cap%.p%d+", "http: an undeclared use is refused even when granted")

-- ---- proc ----
p = assert(load([[
local proc = require "steward.proc"
return { capabilities = { proc = { "/usr/bin/id", { exe = "/usr/bin/env", env = { "LANG" } } } },
  decide = function(i) local res, err = proc.run{ cmd = i.cmd, env = i.env } return { out = res and res.stdout, err = err } end }
]], { ["cap.*"] = { proc = { "/usr/bin/id", { exe = "/usr/bin/env" } } } }))
t.ok(decide(p, { cmd = { "/usr/bin/id", "-u" } }).out, "proc: a granted program runs")
t.ok(denied(decide(p, { cmd = { "/bin/cat", "/etc/passwd" } }).err), "proc: another program is refused")
t.ok(denied(decide(p, { cmd = { "id" } }).err), "proc: a program looked up in PATH is refused (absolute paths only)")
t.ok(denied(decide(p, { cmd = { "/usr/bin/../bin/cat" } }).err), "proc: .. does not lead to another program")
local envout = decide(p, { cmd = { "/usr/bin/env" } }).out or "?"
t.ok(not envout:match("HOME=") and not envout:match("PATH="), "proc: the child's environment is clean (" .. envout:gsub("\n", " ") .. ")")
p = assert(load([[
local proc = require "steward.proc"
return { capabilities = { proc = { { exe = "/usr/bin/id", args = { "^%-u$", "^%-g$" } } } },
  decide = function(i) local res, err = proc.run{ cmd = i.cmd } return { ok = res ~= nil, err = err } end }
]], { ["cap.*"] = { proc = { { exe = "/usr/bin/id", args = { "^%-[ugn]$" } } } } }))
t.ok(decide(p, { cmd = { "/usr/bin/id", "-u" } }).ok, "proc: arguments matching the patterns run")
t.ok(denied(decide(p, { cmd = { "/usr/bin/id", "-n" } }).err), "proc: other arguments are refused (the declaration narrows the grant)")

-- ---- fs.read / fs.write ----
p = assert(load(string.format([[
local fs = require "steward.fs"
return { capabilities = { ["fs.read"] = { %q }, ["fs.write"] = { %q } },
  decide = function(i)
    if i.op == "read" then local v, err = fs.read(i.path) return { v = v, err = err } end
    local ok, err = fs.write(i.path, "x") return { v = ok, err = err } end }
]], dir .. "/data", dir .. "/out"), { ["cap.*"] = { ["fs.read"] = { dir }, ["fs.write"] = { dir .. "/out" } } }))
t.is(decide(p, { op = "read", path = dir .. "/data/a.txt" }).v, "inside", "fs.read: a file under the granted directory is read")
t.ok(denied(decide(p, { op = "read", path = "/etc/passwd" }).err), "fs.read: a file elsewhere is refused")
t.ok(denied(decide(p, { op = "read", path = dir .. "/data/../s.db" }).err), "fs.read: .. out of the directory is refused")
t.ok(denied(decide(p, { op = "read", path = dir .. "/data/escape" }).err), "fs.read: a symbolic link leading outside is refused")
t.ok(denied(decide(p, { op = "read", path = "data/a.txt" }).err), "fs.read: a relative path is refused")
t.is(decide(p, { op = "write", path = dir .. "/out/new.txt" }).v, true, "fs.write: a file under the granted directory is written")
t.ok(denied(decide(p, { op = "write", path = dir .. "/data/b.txt" }).err), "fs.write: readable is not writable")

-- ---- pg ----
guards.pg_connections = { main = "postgres://nobody@127.0.0.1:1/none", other = "postgres://x@127.0.0.1:1/x" }
p = assert(load([[
local pg = require "steward.pg"
return { capabilities = { pg = { "main" } },
  decide = function(i) local db, err = pg.connect(i.target, { connect_timeout = 1 }) return { err = err } end }
]], { ["cap.*"] = { pg = { "main" } } }))
t.ok(not denied(decide(p, { target = "main" }).err), "pg: a granted connection name connects (and fails on its own)")
t.ok(denied(decide(p, { target = "other" }).err), "pg: another named connection is refused")
t.ok(denied(decide(p, { target = "postgres://postgres@127.0.0.1:5432/steward" }).err), "pg: a connection string of its own is refused")

-- ---- events.emit ----
p = assert(load([[
local events = require "steward.events"
return { name = "cap.emitter", decide = function(i) local r, err = events.emit{ type = i.type } return { ok = r ~= nil, err = err } end }
]], {}))
t.ok(decide(p, { type = "cap.emitter.done" }).ok, "events.emit: its own namespace by default")
t.ok(denied(decide(p, { type = "deploy.requested" }).err), "events.emit: another type needs the capability")
p = assert(load([[
local events = require "steward.events"
return { name = "cap.deployer", capabilities = { ["events.emit"] = { "deploy.*" } },
  decide = function(i) local r, err = events.emit{ type = i.type } return { ok = r ~= nil, err = err } end }
]], { ["cap.deployer"] = { ["events.emit"] = { "deploy.*" } } }))
t.ok(decide(p, { type = "deploy.requested" }).ok, "events.emit: a granted pattern")
t.ok(denied(decide(p, { type = "billing.charge" }).err), "events.emit: outside the pattern is refused")

-- ---- a tenant's policy: its tenant's events and kv only ----
p = assert(load([[
local events, kv = require "steward.events", require "steward.kv"
return { name = "acme.keeper", tenant = "acme",
  decide = function(i)
    local r, err = events.emit{ type = "acme.keeper.x", tenant = i.tenant }
    kv.ns("notes"):put("k", "v")
    return { ok = r ~= nil, err = err } end }
]], {}))
t.ok(decide(p, {}).ok, "a tenant's policy emits events (of its tenant)")
local got = assert(st:sql("SELECT tenant FROM events WHERE type = 'acme.keeper.x'"))
t.is(got[1] and got[1].tenant, "acme", "  stamped with its tenant")
t.like(decide(p, { tenant = "globex" }).err, "only its tenant's events", "  and never another tenant's")
local rows = assert(st:sql("SELECT ns FROM kv WHERE key = 'k'"))
t.is(rows[1] and rows[1].ns, "tenant:acme:notes", "a tenant's kv namespaces are under its tenant")

-- ---- scope helpers ----
t.ok(caps.url_in({ "api.example.com" }, "https://api.example.com:443/x"), "a bare host grants that host")
t.ok(not caps.url_in({ "api.example.com" }, "https://api.example.com.evil.net/"), "  and not a longer one")
t.is(caps.normalize("/a/./b/../c"), "/a/c", "paths are normalised before the check")

sb.close()
t.done()
