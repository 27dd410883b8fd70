-- steward.load.target (loopback only unless allowed; requests pinned to the checked address),
-- steward.load.histogram (1 % buckets) and steward.load.report (counts that add up).
local t = require "steward.tap"
local target = require "steward.load.target"
local histogram = require "steward.load.histogram"
local report = require "steward.load.report"

local LOOP = {
  { "127.0.0.1", true }, { "127.1.2.3", true }, { "126.0.0.1", false }, { "10.0.0.1", false },
  { "::1", true }, { "0:0:0:0:0:0:0:1", true }, { "::ffff:127.0.0.1", true }, { "::ffff:10.0.0.1", false },
  { "fe80::1", false }, { "::", false }, { "2001:db8::1", false }, { "localhost", nil }, { "300.0.0.1", nil },
}
for _, c in ipairs(LOOP) do
  t.is(target.is_loopback(c[1]), c[2], "is_loopback(" .. c[1] .. ") = " .. tostring(c[2]))
end

local p = assert(target.parse("http://[::1]:8080/a/b?c=d"))
t.is_deeply({ p.scheme, p.host, p.port, p.path }, { "http", "::1", 8080, "/a/b?c=d" }, "parse: IPv6 literal with port")
p = assert(target.parse("HTTPS://LocalHost"))
t.is_deeply({ p.scheme, p.host, p.port, p.path }, { "https", "localhost", 443, "/" }, "parse: defaults")
t.like(select(2, target.parse("ftp://127.0.0.1/")), "scheme 'ftp' is not supported", "only http and https")
t.like(select(2, target.parse("127.0.0.1:80")), "is not a URL", "a URL needs a scheme")
t.like(select(2, target.parse("http://u:p@127.0.0.1/")), "user information", "no user info")
t.like(select(2, target.parse("http://127.0.0.1:99999/")), "port 99999 out of range", "port range")

local c = assert(target.check("http://127.0.0.1:9/x"))
t.is_deeply({ c.connect, c.host_header, c.remote }, { "http://127.0.0.1:9", nil, false }, "an IP literal is used as it is")
local err
c, err = target.check("http://192.0.2.10:8080/")
t.ok(c == nil and err:find("192.0.2.10 resolves to 192.0.2.10, not a loopback address", 1, true)
  and err:find("--allow-remote", 1, true), "a remote address is refused, naming it and the way out")
c = assert(target.check("http://192.0.2.10:8080/", true))
t.ok(c.remote and c.connect == "http://192.0.2.10:8080", "--allow-remote lets it through")
c = assert(target.check("http://localhost:8080/p"))
t.ok(target.is_loopback(c.addresses[1]) and c.connect == "http://localhost:8080" and c.host_header == nil,
  "localhost is resolved and checked; it stays a name (loopback by definition, libcurl picks ::1 or 127.0.0.1)")
t.ok(target.always_loopback("api.localhost") and not target.always_loopback("localhost.example.com"),
  "*.localhost is loopback by definition, localhost.example.com is not")
-- Another name that resolves to loopback only (an /etc/hosts entry): pinned to the checked
-- address, IPv4 first, with the name as Host; a name with one remote address is refused.
local real_resolve = target.resolve
target.resolve = function(host)
  if host == "app.test" then return { "::1", "127.0.0.2" } end
  if host == "mixed.test" then return { "127.0.0.1", "10.1.2.3" } end
  return real_resolve(host)
end
c = assert(target.check("http://app.test:8080/x"))
t.is_deeply({ c.connect, c.host_header }, { "http://127.0.0.2:8080", "app.test:8080" },
  "a loopback-only name is pinned to its checked IPv4 address, Host: app.test:8080")
c = assert(target.check("http://[::1]:8080/x"))
t.is_deeply({ c.connect, c.host_header }, { "http://[::1]:8080", nil }, "an IPv6 literal stays as it is")
c, err = target.check("http://mixed.test/")
t.ok(c == nil and err:find("mixed.test resolves to 10.1.2.3, not a loopback address", 1, true),
  "one remote address among loopback ones is enough to refuse")
target.resolve = real_resolve

c, err = target.check("http://no-such-host.invalid/")
t.like(err, "--target: cannot resolve 'no%-such%-host.invalid'", "an unresolvable name is an error")

-- Histogram: percentiles within 1 % of the exact ones, never above the maximum.
local h = histogram.new()
local vals = {}
for i = 1, 1000 do vals[i] = i / 1000; h:add(i / 1000) end
local pc = h:percentiles({ 50, 90, 99, 100 })
t.ok(pc[50] >= 0.5 and pc[50] <= 0.5 * 1.01, "p50 of 1..1000 ms is 500 ms within 1 %")
t.ok(pc[99] >= 0.99 and pc[99] <= 0.99 * 1.01, "p99 within 1 %")
t.is(pc[100], 1, "p100 is the exact maximum")
t.ok(math.abs(h:mean() - 0.5005) < 1e-12, "the mean is exact")
t.is_deeply(histogram.new():percentiles({ 50 }), {}, "an empty histogram has no percentiles")

-- Report: every count adds up.
local r = report.new({ target = "http://127.0.0.1:1/", mode = "shape", max_rate = 10, duration = 3,
  phases = { { text = "hold:2/1s", start = 0, duration = 1 }, { text = "hold:1/2s", start = 1, duration = 2 } } })
r:scheduled(0.25, 1); r:sent(0.26, 0.25, 1); r:done(0.3, 0.25, 1, 200)
r:scheduled(0.75, 1); r:sent(0.75, 0.75, 1); r:done(1.2, 0.75, 1, 503)
r:scheduled(1.5, 2); r:sent(1.6, 1.5, 2); r:done(2.5, 1.5, 2, nil, "timeout")
r:scheduled(2.5, 2); r:sent(2.5, 2.5, 2); r:cancelled()
local res = r:result({ elapsed = 2.7, interrupted = true, not_sent = 1 })
t.is_deeply(res.totals, { planned = 5, scheduled = 4, sent = 4, completed = 2, errors = 1, cancelled = 1, not_sent = 1,
  delayed_by_max_rate = 0 }, "totals")
t.is_deeply(res.status, { ["200"] = 1, ["503"] = 1 }, "status codes")
t.is_deeply(res.errors, { timeout = 1 }, "error kinds")
t.is_deeply({ res.seconds[1].completed, res.seconds[2].completed, res.seconds[3].errors }, { 1, 1, 1 },
  "answers counted in the second they came")
t.is_deeply({ res.phases[1].completed, res.phases[2].errors, res.phases[2].sent }, { 2, 1, 2 }, "per phase")
t.is(res.latency_ms.max, 450, "latency counts from the scheduled time (0.75 -> 1.2)")
t.is(res.send_lag_ms.max, 100, "send lag is actual - scheduled")
t.like(report.text(res), "interrupted after 2%.7s: 4 scheduled, 4 sent, 2 answered, 1 errors, 1 cancelled, 1 not sent",
  "the text report's summary")

-- A long run's text table is grouped to about 60 rows; the JSON keeps every second.
local long = report.new({ target = "x", mode = "rate", max_rate = 10, duration = 150,
  phases = { { text = "hold:1/150s", start = 0, duration = 150 } } })
for i = 0, 149 do
  long:scheduled(i + 0.5, 1); long:sent(i + 0.5, i + 0.5, 1); long:done(i + 0.6, i + 0.5, 1, 200)
end
local lres = long:result({ elapsed = 150 })
local text = report.text(lres)
local rows = 0
for line in text:gmatch("[^\n]+") do if line:match("^%d+%s+%d+%s+%d+%s+%d+%s+%d+$") then rows = rows + 1 end end
t.ok(#lres.seconds == 150 and rows == 50 and text:find("3s from", 1, true),
  ("150 seconds: JSON keeps 150 rows, the text groups them by 3s into %d rows"):format(rows))

t.done()
