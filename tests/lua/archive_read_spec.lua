-- steward.archive: the archived part of events.replay answers every filter exactly as the store
-- does (the same events, the same order), manifests are checked (a bad one is named), and
-- archive.run's options are checked.
local t = require "steward.tap"
local fs = require "steward.fs"
local json = require "steward.json"
local store = require "steward.runtime.store"
local log = require "steward.runtime.events"
local archive = require "steward.archive"
local events = require "steward.events"

local base = (os.getenv("TMPDIR") or "/tmp") .. "/steward-archive-spec-" .. os.time() .. "-" .. math.random(1e6)
assert(fs.mkdir(base))
local st = assert(store.open("sqlite:" .. base .. "/s.db"))
store.set_default(st)

-- 90 events of a few types and tenants, with times out of order (a client's own times)
local list = {}
local types = { "usage.recorded", "usage.billed", "alert.firing", "usage" }
for i = 1, 90 do
  list[i] = { type = types[i % 4 + 1], tenant = (i % 3 == 0) and "beta" or (i % 3 == 1 and "acme" or nil),
    time = 1767225600 + ((i * 37) % 90) * 60, data = { i = i } }
end
-- Whole seconds: times come back from the archive's JSON with 14 significant digits, so a
-- fractional `now` could put a row a fraction below a `since` computed from the same `now`.
local now = math.floor(require("steward.time").now())
assert(log.append(st, list, { now = now - 3600 }))

local FILTERS = {
  {}, { type = "usage.*" }, { type = "usage" }, { type = "*" }, { type = "alert.firing", tenant = "beta" },
  { tenant = "acme" }, { after_seq = 10, before_seq = 50 }, { from_seq = 30, to_seq = 31 },
  { since = 1767225600 + 1800, ["until"] = "2026-01-01T01:00:00Z" }, { from_seq = 85 }, { to_seq = 0 },
}
local function seqs(f)
  local out = {}
  for e in events.replay(f) do out[#out + 1] = e.seq end
  return out
end
local before = {}
for i, f in ipairs(FILTERS) do before[i] = seqs(f) end
t.is(#before[9] > 0 and #before[9] < 90 and #before[5] > 0 and #before[2] > #before[3], true, "the filters select different, non-empty sets")

archive.configure({ dir = base .. "/archive" })
local rep = assert(archive.run({ older_than = "10m", segment = 25 }))
t.is(rep.events, 90, "every event is older than 10 minutes: all archived")
t.is(#rep.files, 4, "in segments of 25")
t.is(log.count(st), 0, "the store holds none of them")
for i, f in ipairs(FILTERS) do
  t.is_deeply(seqs(f), before[i], "replay " .. json.encode(f) .. " gives the same events from the archive")
end
local e = events.replay({ from_seq = 42, to_seq = 42 })()
t.is(e.data.i, 42, "an archived event comes back whole (data)")
t.is(log.last_seq(st), 90, "the log's last seq counts the archive (a new policy starts after it)")
assert(log.append(st, { { type = "usage.recorded" } }))
t.is(seqs({ from_seq = 90 })[2], 91, "new events continue the sequence after the archive")

-- decisions: archived with the events, read back by archive.decisions with the log's filters
local decisions = require "steward.runtime.store.decisions"
for i = 1, 30 do
  assert(decisions.record(st, { policy = i % 2 == 0 and "scaling.api" or "alerting.router", outcome = "ok",
    input = { i = i }, result = { replicas = i }, time = now - 7200 + i }))
end
local drep = assert(archive.run({ older_than = "10m", events = false }))
t.is(drep.decisions, 30, "decision-log rows archived")
local got = {}
for d in archive.decisions({ policy = "scaling.api", since = now - 7200 + 10 }) do got[#got + 1] = d.result.replicas end
t.is_deeply(got, { 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 }, "archive.decisions filters by policy and time, oldest first")
t.raises(function() archive.decisions({ polcy = "x" }) end, "archive.decisions: polcy: unknown filter", "a misspelt filter")

-- manifests: checked; a bad one names its file
local ms = assert(archive.list())
t.is(#ms, 5, "list gives the five manifests (one of decisions)")
t.is(ms[1].kind .. ms[2].kind .. ms[2].first .. ms[3].first, "decisionsevents126", "decisions, then events, oldest first")
local mpath = base .. "/archive/" .. ms[3].file:gsub("%.jsonl%.zst$", ".json")
local saved = assert(fs.read(mpath))
assert(fs.write(mpath, (saved:gsub('"count":%d+', '"count":-1'))))
local _, err = archive.list()
t.like(err, "events%-000000000000026%-000000000000050%.json: count: number >= 0 expected", "a bad manifest is named with its field")
assert(fs.write_atomic(mpath, "{")) -- replaced (a rename): replay's cached list notices
_, err = archive.list()
t.like(err, "%.json: not JSON", "a manifest that is not JSON")
t.raises(function() for _ in events.replay({}) do end end, "events%-000000000000026%-000000000000050%.json: not JSON",
  "replay through a bad manifest's segment raises, naming it")
t.is(#seqs({ from_seq = 51 }), 41, "a range the bad manifest's segment does not cover still reads (the dispatcher's reads)")
assert(fs.write(mpath, saved))
assert(fs.write(base .. "/archive/events-000000000000091-000000000000099.jsonl.zst", "x"))
local _, leftovers = archive.list()
t.is_deeply(leftovers, { "events-000000000000091-000000000000099.jsonl.zst" }, "a segment without a manifest is a leftover")
t.is(archive.verify().ok, true, "verify ignores leftovers and passes")
t.raises(function() archive.cat("../s.db") end, "file: the name of a segment", "cat takes a segment's name only")

-- options
t.raises(function() archive.run() end, "archive.run: options: table expected", "run: options")
t.raises(function() archive.run({}) end, "older_than: duration expected", "run: an age is required")
t.raises(function() archive.run({ older_than = "soon" }) end, "archive.run: older_than:", "run: a bad duration")
t.raises(function() archive.run({ older_than = "1d", before = 5 }) end, "give one of them", "run: older_than or before")
t.raises(function() archive.run({ older_than = "1d", events = "yes" }) end, "events: boolean expected", "run: events")
t.raises(function() archive.run({ older_than = "1d", segment = 0 }) end, "segment: integer >= 1", "run: segment")

-- the `archive` capability: declared and granted, or refused
local policies = require "steward.runtime.policies"
require("steward.log").set_level("error")
local function load(src, grants, i)
  local path = base .. "/p" .. i .. ".lua"
  assert(fs.write(path, src))
  return policies.load_file(path, "ops.p" .. i, { grants = grants })
end
local src = [[local archive = require "steward.archive"
return { capabilities = { "archive" }, decide = function() return { n = #assert(archive.list()), dir = archive.dir(),
  configure = { pcall(archive.configure, { dir = "/tmp" }) } } end }]]
local _, perr = load(src, {}, 1)
t.like(perr, "capabilities not granted to ops.p1: 'archive'", "a policy declaring archive without a grant does not load")
local pol = assert(load(src, { ["ops.*"] = { archive = true } }, 2))
local res = pol.decide({}, { config = pol.config })
t.is(res.n, 5, "with the grant it reads the archive")
t.ok(res.configure[1] == false and tostring(res.configure[2]):find("archive.configure is not available to policies", 1, true),
  "configure is hidden from policies")
local undeclared = assert(load([[local archive = require "steward.archive"
return { decide = function() return { pcall(archive.list) } end }]], {}, 3))
res = undeclared.decide({}, { config = undeclared.config })
t.ok(res[1] == false and tostring(res[2]):find("not granted", 1, true), "a policy that did not declare it is refused at the call")
local nocompress = assert(load([[return { decide = function() return { pcall(require, "steward.compress") } end }]], {}, 4))
res = nocompress.decide({}, { config = nocompress.config })
t.ok(res[1] == false and tostring(res[2]):find("not available to policies", 1, true), "steward.compress is not for policies")

log.set_archive(nil)
st:close()
assert(fs.remove(base, { recursive = true }))
t.done()
