-- steward.scaling.sources: proc.info's CPU times and RSS (bindings/proc_spawn.c) and the proc
-- source built on them against real processes; the haproxy source's per-instance rates from
-- HAProxy's cumulative counters (a stats driver that answers given counters); field errors.
local t = require "steward.tap"
local proc = require "steward.proc"
local time = require "steward.time"

-- proc.info: utime, stime (seconds), rss (bytes) of a real process
local busy = assert(proc.spawn{ cmd = { "sh", "-c", "while :; do :; done" } })
local idle = assert(proc.spawn{ cmd = { "sleep", "30" } })
local i0 = proc.info(busy.pid)
t.ok(type(i0.utime) == "number" and type(i0.stime) == "number", "proc.info gives utime and stime in seconds")
t.ok(type(i0.rss) == "number" and i0.rss > 4096, "proc.info gives rss in bytes: " .. tostring(i0.rss))
local deadline = time.monotonic() + 10
local i1 = i0
while time.monotonic() < deadline and i1.utime + i1.stime - (i0.utime + i0.stime) < 0.2 do
  time.sleep(0.05)
  i1 = proc.info(busy.pid)
end
t.ok(i1.utime + i1.stime - (i0.utime + i0.stime) >= 0.2, "a busy process's CPU seconds grow")
t.ok(proc.info(idle.pid).utime < 0.5, "a sleeping process uses next to none")

-- the proc source: cpu per instance over its window, rss
local sources = require "steward.scaling.sources"
local cpu = sources.proc{ metric = "cpu", window = "300ms" }
local rss = sources.proc{ metric = "rss" }
t.is(cpu.per_instance, true, "proc is a per-instance source")
local insts = { { id = "api/v1/1", revision = "v1", pid = busy.pid, state = "running" },
                { id = "api/v1/2", revision = "v1", pid = idle.pid, state = "running" },
                { id = "api/v0/1", revision = "v0", pid = idle.pid, state = "running" } }
local memo = {}
local first = cpu.sample({ service = "api", revision = "v1", instances = insts, now = time.monotonic() }, memo)
t.like(first.error, "no sample yet", "a CPU rate needs two samples: the first is an error, not 0")
local s
deadline = time.monotonic() + 10
repeat
  time.sleep(0.1)
  s = cpu.sample({ service = "api", revision = "v1", instances = insts, now = time.monotonic() }, memo)
until (s.per_instance and s.per_instance["api/v1/1"] and s.per_instance["api/v1/1"] > 0.3) or time.monotonic() > deadline
t.ok(s.per_instance["api/v1/1"] > 0.3, "the busy instance's CPU rate: " .. tostring(s.per_instance["api/v1/1"]))
t.ok(s.per_instance["api/v1/2"] < 0.3, "the idle instance's: " .. tostring(s.per_instance["api/v1/2"]))
t.is(s.per_instance["api/v0/1"], nil, "another revision's instances are not measured")
local r = rss.sample({ service = "api", revision = "v1", instances = insts, now = time.monotonic() }, {})
t.ok(r.per_instance["api/v1/1"] > 0 and r.per_instance["api/v1/2"] > 0, "rss per instance, at once")
busy:kill("KILL"); busy:wait(); idle:kill("KILL"); idle:wait()
t.is(proc.info(busy.pid), nil, "proc.info of a process that is gone is nil")

-- the haproxy source, against a stats driver answering set counters
local counters = { ["v1-1"] = { addr = "127.0.0.1:9001", req = 0 }, ["v1-2"] = { addr = "127.0.0.1:9002", req = 0 } }
package.loaded["steward.deploy.haproxy"] = { stats = function()
  local servers = {}
  for name, c in pairs(counters) do
    servers[name] = { revision = name:match("^(.-)%-"), addr = c.addr, req_tot = c.req, qcur = c.q or 0, scur = 2, rtime = 7 }
  end
  return { servers = servers, revisions = {} }
end }
local rps = sources.haproxy{ metric = "rps", window = "1s" }
local hinst = { { id = "api/v1/1", revision = "v1", host = "127.0.0.1", port = 9001, pid = 1 },
                { id = "api/v1/2", revision = "v1", host = "127.0.0.1", port = 9002, pid = 2 } }
memo = {}
local function at(now) return { service = "api", revision = "v1", instances = hinst, now = now } end
t.like(rps.sample(at(100), memo).error, "a rate needs two samples", "haproxy rps: the first sample is an error")
counters["v1-1"].req, counters["v1-2"].req = 50, 10
s = rps.sample(at(100.5), memo)
t.is(s.per_instance["api/v1/1"], 100, "rps per instance: 50 requests in 0.5 s = 100/s")
t.is(s.per_instance["api/v1/2"], 20, "and 10 in 0.5 s = 20/s")
counters["v1-1"].req = 150
s = rps.sample(at(101.5), memo)
t.is(s.per_instance["api/v1/1"], 100, "the window spans at least 1 s of samples (150 in 1.5 s)")
counters["v1-1"].req = 30 -- the server was deleted and re-added: counters restart at 0
s = rps.sample(at(102), memo)
t.ok(s.per_instance["api/v1/1"] >= 0, "a counter that went back counts from 0, never a negative rate")
counters["v1-2"].addr = "127.0.0.1:9001" -- re-pointed at instance 1's address: a new history
counters["v1-1"] = nil
s = rps.sample(at(102.5), memo)
t.ok(s.per_instance["api/v1/1"] == nil and s.per_instance["api/v1/2"] == nil,
  "a server re-pointed at another instance starts a new history (no rate from the old one's counts)")
counters["v1-2"].req = 60
s = rps.sample(at(103), memo)
t.ok(s.per_instance["api/v1/1"] == 100 and s.per_instance["api/v1/2"] == nil,
  "a server maps to the instance whose address it points at: " .. tostring(s.per_instance["api/v1/1"]))
local q = sources.haproxy{ metric = "queue" }
counters["v1-2"].q = 4
t.is(q.sample(at(103), {}).per_instance["api/v1/1"], 4, "queue is HAProxy's qcur of the instance's server")
t.is(sources.haproxy{ metric = "rtime" }.sample(at(103), {}).per_instance["api/v1/1"], 7, "rtime is HAProxy's")
package.loaded["steward.deploy.haproxy"] = { stats = function() return nil, "haproxy: show stat api 4 -1: ENOENT" end }
t.like(rps.sample(at(104), memo).error, "ENOENT", "an unreachable HAProxy is the metric's error")
package.loaded["steward.deploy.haproxy"] = nil

-- field errors name the source and the field
t.raises(function() sources.haproxy{ metric = "rsp" } end, "scaling.source.haproxy: metric: \"rps\", \"queue\", \"rtime\" or \"scur\" expected, got rsp", "haproxy: a bad metric")
t.raises(function() sources.haproxy{ metric = "rps", window = "soon" } end, "scaling.source.haproxy: window:", "haproxy: a bad window")
t.raises(function() sources.haproxy{ metric = "rps", every = 1 } end, "scaling.source.haproxy: every: unknown field", "haproxy: an unknown field")
t.raises(function() sources.proc{ metric = "io" } end, "scaling.source.proc: metric:", "proc: a bad metric")
t.raises(function() sources.prometheus{ url = "ftp://x", query = "up" } end, "scaling.source.prometheus: url:", "prometheus: a bad url")
t.raises(function() sources.prometheus{ url = "http://127.0.0.1:9090" } end, "scaling.source.prometheus: query:", "prometheus: no query")
t.raises(function() sources.events{ type = "http.request", window = "5m", select = "ratio" } end, "scaling.source.events: select:", "events: ratio is not a scaling value")
t.raises(function() sources.events{ type = "http.request" } end, "scaling.source.events: window:", "events: no window")
t.done()
