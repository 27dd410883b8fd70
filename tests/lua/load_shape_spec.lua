-- steward.load.shape and steward.load.records: the shape grammar (every error names the
-- phase and the part that is wrong), its JSON form, rate series and recorded traffic.
local t = require "steward.tap"
local shape = require "steward.load.shape"
local records = require "steward.load.records"

-- A phase's requests in all (the integral of its rate).
local function requests(ph)
  local n = 0
  for _, seg in ipairs(ph.segments) do n = n + shape.segment_count(seg, seg.d) end
  return n
end

local function near(a, b, eps) return math.abs(a - b) <= (eps or 1e-9) end

local sh = assert(shape.parse_text("ramp:0-200/30s,hold:200/20s,step:800/10s,sine:100-400/60s*3"))
t.is(#sh.phases, 4, "the example from the docs has four phases")
t.is(sh.duration, 30 + 20 + 10 + 180, "its duration is the sum of the phases (sine *3 = three periods)")
t.is(sh.phases[4].start, 60, "each phase knows where it starts")
t.ok(near(requests(sh.phases[1]), 3000), "ramp 0 -> 200 over 30s asks for 3000 requests")
t.ok(near(requests(sh.phases[2]), 4000), "hold 200 for 20s asks for 4000")
t.ok(near(requests(sh.phases[3]), 8000), "step to 800 for 10s asks for 8000")
t.ok(near(requests(sh.phases[4]), 250 * 180, 1e-6), "sine 100-400 averages 250/s over whole periods")
t.is(sh.phases[3].text, "step:800/10s", "phases keep their text for reports")
local sine = sh.phases[4].segments[1]
t.ok(near(shape.segment_rate(sine, 0), 100) and near(shape.segment_rate(sine, 30), 400)
  and near(shape.segment_rate(sine, 60), 100), "a sine cycle starts low, peaks at half period, ends low")

local sp = assert(shape.parse_text("spike:10-100/10s/2s"))
t.is(#sp.phases[1].segments, 3, "a spike is base, peak, base")
t.ok(near(requests(sp.phases[1]), 8 * 10 + 2 * 100), "spike 10-100/10s/2s asks for 280")
t.ok(near(requests(assert(shape.parse_text("pause:5s")).phases[1]), 0), "pause sends nothing")
t.ok(near(requests(assert(shape.parse_text("constant:5/2s")).phases[1]), 10), "constant is hold")
t.ok(near(requests(assert(shape.parse_text(" ramp : 0-10/1s * 2 ")).phases[1]), 10), "spaces around parts and *N repeats")
t.ok(near(requests(assert(shape.parse_text("hold:2.5/500ms")).phases[1]), 1.25), "fractional rates and ms durations")

-- Errors name the phase (number and text) and the part.
local BAD = {
  { "", "shape: empty" },
  { "ramp:0-200/30s,hold:200/2O s", "phase 2 %('hold:200/2O s'%): duration: bad duration '2O s'" },
  { "ramp:0-200/30s,foo:1/1s", "phase 2 %('foo:1/1s'%): unknown kind 'foo'" },
  { "hold:fast/10s", "phase 1 %('hold:fast/10s'%): rate: rate expected %(a number >= 0%), got 'fast'" },
  { "hold:-5/10s", "rate: rate expected" },
  { "ramp:10/5s", "expected ramp:FROM%-TO/DURATION, got 'ramp:10/5s'" },
  { "ramp:0-x/5s", "phase 1 %('ramp:0%-x/5s'%): to: rate expected" },
  { "sine:400-100/60s", "high %(100%) is below low %(400%)" },
  { "sine:1-2", "expected sine:LOW%-HIGH/PERIOD, got 'sine:1%-2'" },
  { "spike:10-100/10s", "expected spike:BASE%-PEAK/DURATION/WIDTH" },
  { "spike:10-100/10s/20s", "width %(20s%) is longer than the duration %(10s%)" },
  { "hold:5/1s*x", "repeat count after '%*': integer expected, got 'x'" },
  { "hold:5/1s*0", "repeat count: integer from 1 to 100000 expected" },
  { "hold:5/0s", "duration: must be longer than 0" },
  { "hold 5 for 10s", "phase 1 %('hold 5 for 10s'%): expected KIND:ARGS" },
  { "hold:5/1s,,hold:5/1s", "phase 2 %(''%): expected KIND:ARGS" },
  { "pause:1s/2s", "expected pause:DURATION" },
}
for _, c in ipairs(BAD) do
  local ok, err = shape.parse_text(c[1])
  t.ok(ok == nil and tostring(err):find(c[2]) ~= nil, "bad shape '" .. c[1] .. "': " .. tostring(err))
end

-- The JSON form: the same phases, the same checks.
local js = assert(shape.parse_list({ { kind = "ramp", from = 0, to = 100, duration = "10s" },
  { kind = "sine", low = 0, high = 10, period = "4s", ["repeat"] = 2 }, { kind = "hold", rate = 3, duration = 2 } }))
t.is(js.duration, 20, "JSON phases: durations as strings or seconds")
t.is(js.phases[2].text, "sine:0-10/4s*2", "JSON phases are described in the grammar")
t.ok(near(requests(js.phases[2]), 40), "JSON sine with repeat")
local _, jerr = shape.parse_list({ { kind = "ramp", from = 0, duration = "10s" } })
t.like(jerr, "shape: phase 1 %(ramp%): to: rate expected", "a JSON phase missing a field names it")
_, jerr = shape.parse_list({ { rate = 1 } })
t.like(jerr, "phase 1: kind: string expected", "a JSON phase without kind")
_, jerr = shape.parse_list({})
t.like(jerr, "non%-empty JSON array", "an empty JSON shape")

-- Rate series: ramps between points, times compressed by the speed.
local rs = assert(shape.parse_rates({ { 1000, 10 }, { 1060, 30 }, { 1120, 30 } }, 6))
t.is(#rs.phases, 2, "n points make n - 1 ramps")
t.is(rs.duration, 20, "60s steps at speed 6 last 10s each")
t.ok(near(requests(rs.phases[1]), 200) and near(requests(rs.phases[2]), 300), "rates are kept, time is compressed")
_, jerr = shape.parse_rates({ { 5, 1 }, { 5, 2 } }, 1, "r.csv")
t.like(jerr, "r.csv: point 2: time 5 is not after the previous one", "a rate series must move forward")

local csv = assert(records.rates("t,rate\n0,10\n60,20\n\n120,5\n", "r.csv"))
t.is_deeply(csv, { { 0, 10 }, { 60, 20 }, { 120, 5 } }, "CSV rate series with a header")
t.is_deeply(assert(records.rates('[[0, 1], [10, 2]]')), { { 0, 1 }, { 10, 2 } }, "JSON [[t, v]] (capacity history)")
t.is_deeply(assert(records.rates('[{"t": "2024-01-01T00:01:00Z", "rate": 2}, {"t": "2024-01-01T00:00:00Z", "v": 1}]')),
  { { 1704067200, 1 }, { 1704067260, 2 } }, "JSON objects with RFC 3339 times, sorted")
t.is_deeply(assert(records.rates('[[[0, 1], [10, 2]]]')), { { 0, 1 }, { 10, 2 } },
  "the one result of steward eval --json (an array around the series)")
t.is_deeply(assert(records.rates('{"t": 0, "rate": 1}\n{"t": 5, "rate": 3}\n')), { { 0, 1 }, { 5, 3 } }, "JSON lines")
_, jerr = records.rates("0,10\n60,lots\n", "r.csv")
t.like(jerr, "r.csv: line 2: rate: a number >= 0 expected", "a bad CSV line is named")
_, jerr = records.rates("0,10\n", "r.csv")
t.like(jerr, "at least two points", "one point is not a series")

-- Recorded traffic.
local jl = assert(records.requests(table.concat({
  '{"t": 100.5, "method": "POST", "path": "/b"}',
  '# a comment',
  '{"t": 100, "path": "/a?x=1"}',
  '{"t": 102, "method": "GET", "path": "/c"}',
}, "\n"), { speed = 2 }))
t.is(#jl, 3, "JSON lines: comments and blank lines skipped")
t.is_deeply({ jl[1].t, jl[1].method, jl[1].path }, { 0, "GET", "/a?x=1" }, "sorted by time, method defaults to GET")
t.is_deeply({ jl[2].t, jl[3].t }, { 0.25, 1 }, "times relative to the first request, divided by the speed")
local _, rerr = records.requests('{"t": 1, "path": "/a"}\n{"t": 2, "path": "no-slash"}\n', { name = "rec.jsonl" })
t.like(rerr, "rec.jsonl: line 2: path: a string starting with /", "a bad JSON line is named")
_, rerr = records.requests('{"t": "soon", "path": "/a"}', { name = "rec.jsonl" })
t.like(rerr, "line 1: t: seconds or an RFC 3339 time expected", "a bad time is named")

local HAP = {
  'Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 ' ..
    '10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1"',
  'Feb  6 12:14:15 localhost haproxy[14389]: 10.0.1.2:33318 [06/Feb/2009:12:14:15.155] http-in static/srv1 ' ..
    '10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "POST /api/x?y=1 HTTP/1.1"',
  'Mar 1 00:00:00 h haproxy[1]: 127.0.0.1:1 [28/Feb/2009:23:59:59.000] fe be/s 0/0/0/1/1 200 1 - - ---- ' ..
    '1/1/1/1/0 0/0 "GET / HTTP/1.1"',
}
local hp = assert(records.requests(table.concat(HAP, "\n")))
t.is(#hp, 3, "HAProxy HTTP log lines")
t.is_deeply({ hp[1].path, hp[2].t, hp[2].method, hp[2].path, math.floor(hp[3].t * 1000 + 0.5) },
  { "/index.html", 0.5, "POST", "/api/x?y=1", (22 * 86400 + 11 * 3600 + 45 * 60) * 1000 + 44345 },
  "accept dates with milliseconds, across a month end; the last quoted field is the request")
_, rerr = records.requests(HAP[1] .. "\nnot a log line\n", { name = "haproxy.log" })
t.like(rerr, "haproxy.log: line 2: no accept date", "a line that is not a log line is named")
_, rerr = records.requests("\n# nothing\n", { name = "empty.log" })
t.like(rerr, "empty.log: no requests", "an empty recording")

t.done()
