-- steward.deploy.haproxy without HAProxy: the weight rule (a revision's percent split over
-- its servers, the largest per-server weight 256; > 0 % never rounds to 0, 0 % is always 0)
-- table-driven and over every split, and the argument errors.
local t = require "steward.tap"
local haproxy = require "steward.deploy.haproxy"

local cases = {
  { { v1 = 80, v2 = 20 }, { v1 = 2, v2 = 2 }, { v1 = 256, v2 = 64 } },
  { { v1 = 100, v2 = 0 }, { v1 = 3, v2 = 2 }, { v1 = 256, v2 = 0 } },
  { { v1 = 0, v2 = 100 }, { v1 = 3, v2 = 2 }, { v1 = 0, v2 = 256 } },
  { { v1 = 99, v2 = 1 }, { v1 = 1, v2 = 5 }, { v1 = 256, v2 = 1 } },
  { { v1 = 50, v2 = 50 }, { v1 = 1, v2 = 4 }, { v1 = 256, v2 = 64 } },
  { { v1 = 90, v2 = 10 }, { v1 = 10, v2 = 1 }, { v1 = 230, v2 = 256 } },
  { { a = 33.3, b = 33.3, c = 33.4 }, { a = 1, b = 1, c = 1 }, { a = 255, b = 255, c = 256 } },
}
for _, c in ipairs(cases) do
  local w = haproxy.weights(c[1], c[2])
  local got, want = {}, {}
  for rev in pairs(c[3]) do got[#got + 1] = rev .. "=" .. w[rev]; want[#want + 1] = rev .. "=" .. c[3][rev] end
  table.sort(got); table.sort(want)
  t.is(table.concat(got, " "), table.concat(want, " "), "weights " .. table.concat(want, " "))
end

-- every split of 100 between two revisions, 1..6 servers each: never 0 for > 0 %, always 0
-- for 0 %, within 0..256, and the share within one weight step of the percent
local bad
for p = 0, 100 do
  for n1 = 1, 6 do
    for n2 = 1, 6 do
      local w = haproxy.weights({ a = p, b = 100 - p }, { a = n1, b = n2 })
      for rev, pc in pairs { a = p, b = 100 - p } do
        if (pc == 0) ~= (w[rev] == 0) or w[rev] < 0 or w[rev] > 256 or w[rev] % 1 ~= 0 then
          bad = bad or string.format("p=%d n=%d/%d %s=%d", p, n1, n2, rev, w[rev])
        end
      end
    end
  end
end
t.ok(not bad, "over every split: > 0 % never gets weight 0, 0 % always 0, weights are integers 0..256 " .. tostring(bad or ""))

haproxy.configure { api = { haproxy = { socket = "/nonexistent.sock", backend = "api" } },
  nobe = { haproxy = { socket = "/x.sock" } } }
t.raises(function() haproxy.set_weights("api", { v1 = 70, v2 = 20 }) end, "percents add up to 90, 100 expected", "percents must add up to 100")
t.raises(function() haproxy.set_weights("api", { v1 = 120, v2 = -20 }) end, "a percent from 0 to 100 expected", "a percent out of range is named")
t.raises(function() haproxy.sync("api", "v 1", {}) end, "revision: a revision id", "a bad revision id is named")
t.raises(function() haproxy.sync("api", "v1", { { host = "127.0.0.1", port = 70000 } }) end, "endpoints%[1%]", "a bad endpoint is named by index")
t.raises(function() haproxy.stats(42) end, "service: service name expected", "a service that is not a name raises")
local v, err = haproxy.stats("ghost")
t.ok(v == nil and err:find("unknown service 'ghost'", 1, true), "an unknown service is nil, err naming it")
v, err = haproxy.drain("nobe", "v1")
t.is(err, "services.nobe.haproxy.backend: a backend name expected", "a missing config field is named")
t.done()
