-- steward.alerting.route: the routing tree, with the cases of Alertmanager's
-- dispatch/route_test.go (TestRouteMatch, TestRouteMatchers, TestRouteWalk,
-- TestInheritParentGroupByAll) written as Lua trees.
local t = require "steward.tap"
local route = require "steward.alerting.route"

local function opts(r)
  return { r.receiver, r.group_by_all and { "..." } or r.group_by, r.group_wait, r.group_interval,
    r.repeat_interval }
end

local function check(tree, cases, what)
  for _, c in ipairs(cases) do
    local got, keys = {}, {}
    for i, r in ipairs(tree:match(c.labels)) do
      got[i], keys[i] = opts(r), r.key
    end
    local name = what .. " " .. require("steward.pretty").format(c.labels)
    t.is_deeply(got, c.opts, name .. ": options")
    t.is_deeply(keys, c.keys, name .. ": keys")
  end
end

-- TestRouteMatch: match / match_re maps (match_re values show anchored in keys).
local tree1 = assert(route.new{
  receiver = "notify-def",
  routes = {
    { match = { owner = "team-A" }, receiver = "notify-A",
      routes = {
        { match = { env = "testing" }, receiver = "notify-testing", group_by = { "..." } },
        { match = { env = "production" }, receiver = "notify-productionA", group_wait = "1m", continue = true },
        { match_re = { env = "produ.*", job = ".*" }, receiver = "notify-productionB",
          group_wait = "30s", group_interval = "5m", repeat_interval = "1h", group_by = { "job" } },
      } },
    { match_re = { owner = "team-(B|C)" }, group_by = { "foo", "bar" }, group_wait = "2m", receiver = "notify-BC" },
    { match = { group_by = "role" }, group_by = { "role" },
      routes = {
        { match = { env = "testing" }, receiver = "notify-testing",
          routes = { { match = { wait = "long" }, group_wait = "2m" } } },
      } },
  },
})
local D = { 30, 300, 14400 }
check(tree1, {
  { labels = { owner = "team-A" }, opts = { { "notify-A", {}, 30, 300, 14400 } },
    keys = { '{}/{owner="team-A"}' } },
  { labels = { owner = "team-A", env = "unset" }, opts = { { "notify-A", {}, 30, 300, 14400 } },
    keys = { '{}/{owner="team-A"}' } },
  { labels = { owner = "team-C" }, opts = { { "notify-BC", { "bar", "foo" }, 120, 300, 14400 } },
    keys = { '{}/{owner=~"^(?:team-(B|C))$"}' } },
  { labels = { owner = "team-A", env = "testing" }, opts = { { "notify-testing", { "..." }, 30, 300, 14400 } },
    keys = { '{}/{owner="team-A"}/{env="testing"}' } },
  { labels = { owner = "team-A", env = "production" },
    opts = { { "notify-productionA", {}, 60, 300, 14400 }, { "notify-productionB", { "job" }, 30, 300, 3600 } },
    keys = { '{}/{owner="team-A"}/{env="production"}',
             '{}/{owner="team-A"}/{env=~"^(?:produ.*)$",job=~"^(?:.*)$"}' } },
  { labels = { group_by = "role" }, opts = { { "notify-def", { "role" }, 30, 300, 14400 } },
    keys = { '{}/{group_by="role"}' } },
  { labels = { env = "testing", group_by = "role" }, opts = { { "notify-testing", { "role" }, 30, 300, 14400 } },
    keys = { '{}/{group_by="role"}/{env="testing"}' } },
  { labels = { env = "testing", group_by = "role", wait = "long" },
    opts = { { "notify-testing", { "role" }, 120, 300, 14400 } },
    keys = { '{}/{group_by="role"}/{env="testing"}/{wait="long"}' } },
  { labels = {}, opts = { { "notify-def", {}, D[1], D[2], D[3] } }, keys = { "{}" } },
}, "TestRouteMatch")

-- TestRouteWalk
local walked = {}
tree1:walk(function(r) walked[#walked + 1] = r.receiver end)
t.is_deeply(walked, { "notify-def", "notify-A", "notify-testing", "notify-productionA", "notify-productionB",
  "notify-BC", "notify-def", "notify-testing", "notify-testing" }, "walk: depth first, parents first")

-- TestRouteMatchers: the matchers field, strings with one or several matchers, braces or not.
local tree2 = assert(route.new{
  receiver = "notify-def",
  routes = {
    { matchers = { '{owner="team-A"}', '{level!="critical"}' }, receiver = "notify-A",
      routes = {
        { matchers = { '{env="testing"}', '{baz!~".*quux"}' }, receiver = "notify-testing", group_by = { "..." } },
        { matchers = { '{env="production"}' }, receiver = "notify-productionA", group_wait = "1m", continue = true },
        { matchers = { 'env=~"produ.*"', 'job=~".*"' }, receiver = "notify-productionB",
          group_wait = "30s", group_interval = "5m", repeat_interval = "1h", group_by = { "job" } },
      } },
    { matchers = { 'owner=~"team-(B|C)"' }, group_by = { "foo", "bar" }, group_wait = "2m", receiver = "notify-BC" },
    { matchers = 'group_by="role"', group_by = { "role" },
      routes = {
        { matchers = { '{env="testing"}' }, receiver = "notify-testing",
          routes = { { matchers = { 'wait="long"' }, group_wait = "2m" } } },
      } },
  },
})
check(tree2, {
  { labels = { owner = "team-A" }, opts = { { "notify-A", {}, 30, 300, 14400 } },
    keys = { '{}/{level!="critical",owner="team-A"}' } },
  { labels = { owner = "team-C" }, opts = { { "notify-BC", { "bar", "foo" }, 120, 300, 14400 } },
    keys = { '{}/{owner=~"team-(B|C)"}' } },
  { labels = { owner = "team-A", env = "testing" }, opts = { { "notify-testing", { "..." }, 30, 300, 14400 } },
    keys = { '{}/{level!="critical",owner="team-A"}/{baz!~".*quux",env="testing"}' } },
  { labels = { owner = "team-A", env = "production" },
    opts = { { "notify-productionA", {}, 60, 300, 14400 }, { "notify-productionB", { "job" }, 30, 300, 3600 } },
    keys = { '{}/{level!="critical",owner="team-A"}/{env="production"}',
             '{}/{level!="critical",owner="team-A"}/{env=~"produ.*",job=~".*"}' } },
  { labels = { owner = "team-A", level = "critical" }, opts = { { "notify-def", {}, 30, 300, 14400 } },
    keys = { "{}" } },
  { labels = { env = "testing", group_by = "role", wait = "long" },
    opts = { { "notify-testing", { "role" }, 120, 300, 14400 } },
    keys = { '{}/{group_by="role"}/{env="testing"}/{wait="long"}' } },
}, "TestRouteMatchers")

-- Route ids: the key plus the position among the parent's children.
local m = tree2:match{ owner = "team-A", env = "production" }
t.is(m[1].id, '{}/{level!="critical",owner="team-A"}/{env="production"}/1', "id of the second grandchild")
t.is(m[2].id, '{}/{level!="critical",owner="team-A"}/{env=~"produ.*",job=~".*"}/2', "id of the third")
t.is(tree2.id, "{}", "the root's id is its key")
t.is(tree2:find(m[2].id), m[2], "find(id)")
t.is(tree2:receivers{ owner = "team-A", env = "production" }[2], "notify-productionB", "receivers()")

-- TestInheritParentGroupByAll
local tree3 = assert(route.new{
  receiver = "r",
  routes = {
    { matchers = 'env="parent"', group_by = { "..." },
      routes = { { matchers = 'env="child1"' }, { matchers = 'env="child2"', group_by = { "foo" } } } },
  },
})
local parent = tree3.routes[1]
t.ok(parent.group_by_all, "group_by {'...'} is all labels")
t.ok(parent.routes[1].group_by_all, "a child inherits group_by_all")
t.ok(not parent.routes[2].group_by_all, "a child's own group_by replaces it")
t.is_deeply(parent.routes[2].group_by, { "foo" }, "with its own labels")

-- Inheritance details of 0.25.
local tree4 = assert(route.new{
  receiver = "root", group_by = { "alertname" }, group_wait = 10, repeat_interval = "1d",
  routes = {
    { matchers = 'a="1"', group_by = {}, mute_time_intervals = { "weekends" },
      routes = { { matchers = 'b="1"', receiver = "deep" } } },
    { matchers = 'a="2"', receiver = "", group_interval = "1h30m" },
  },
})
local r1 = tree4.routes[1]
t.is_deeply(r1.group_by, { "alertname" }, "group_by {} inherits in 0.25 (config sets GroupBy only for a label)")
t.is(r1.receiver, "root", "receiver inherited")
t.is(r1.group_wait, 10, "numbers are seconds, inherited")
t.is(r1.repeat_interval, 86400, "Prometheus durations: 1d")
t.is_deeply(r1.mute_time_intervals, { "weekends" }, "a route's mute_time_intervals")
t.is_deeply(r1.routes[1].mute_time_intervals, {}, "mute_time_intervals are not inherited")
t.is(r1.routes[1].receiver, "deep", "a child's receiver")
t.is(tree4.routes[2].receiver, "root", "an empty receiver inherits")
t.is(tree4.routes[2].group_interval, 5400, "1h30m")

-- Matching order: first match wins, continue goes on, a node without a matching child matches.
local tree5 = assert(route.new{
  receiver = "root",
  routes = {
    { matchers = 'a="1"', receiver = "first", continue = true },
    { matchers = 'a=~"1|2"', receiver = "second" },
    { matchers = 'a="1"', receiver = "never" },
    { matchers = 'a="3"', receiver = "parent", routes = { { matchers = 'b="x"', receiver = "child" } } },
  },
})
t.is_deeply(tree5:receivers{ a = "1" }, { "first", "second" }, "continue then the first non-continue match stops")
t.is_deeply(tree5:receivers{ a = "2" }, { "second" }, "first matching child")
t.is_deeply(tree5:receivers{ a = "3" }, { "parent" }, "a node without a matching child matches itself")
t.is_deeply(tree5:receivers{ a = "3", b = "x" }, { "child" }, "depth first")
t.is_deeply(tree5:receivers{ a = "4" }, { "root" }, "the root catches the rest")

-- Group keys: route key ":" model.LabelSet.String() of the group_by labels.
local gr = tree1:match{ owner = "team-A", env = "production", job = "api", x = "y" }
t.is(gr[2]:group_key{ owner = "team-A", env = "production", job = "api", x = "y" },
  '{}/{owner="team-A"}/{env=~"^(?:produ.*)$",job=~"^(?:.*)$"}:{job="api"}', "group key with group_by")
t.is(gr[1]:group_key{ owner = "team-A", env = "production" }, '{}/{owner="team-A"}/{env="production"}:{}',
  "group key without group_by labels")
local all = tree1:match{ owner = "team-A", env = "testing", a0 = "q\"", a = "x" }[1]
t.is(all:group_key{ owner = "team-A", env = "testing", a0 = "q\"", a = "x" },
  '{}/{owner="team-A"}/{env="testing"}:{a0="q\\"", a="x", env="testing", owner="team-A"}',
  "group_by ... takes every label; entries sort as whole strings (a0=... before a=...)")
t.is_deeply(all:group_labels{ a = "1", b = "2" }, { a = "1", b = "2" }, "group_labels with ...")
t.is_deeply(gr[2]:group_labels{ job = "j", b = "2" }, { job = "j" }, "group_labels with a list")
t.is_deeply(gr[2]:group_labels{ b = "2" }, {}, "a group_by label the alert lacks is left out")

-- Content errors: nil, err naming the place.
local function fails(spec, pattern, name)
  local tree, err = route.new(spec)
  t.ok(tree == nil and err and err:find(pattern, 1, true), name .. ": " .. tostring(err))
end
fails({ group_by = { "a" } }, "route.receiver: root route must specify a default receiver", "root receiver")
fails({ receiver = "r", matchers = 'a="b"' }, "root route must not have any matchers", "root matchers")
fails({ receiver = "r", continue = true }, "cannot have continue in root route", "root continue")
fails({ receiver = "r", mute_time_intervals = { "x" } }, "root route must not have any mute time intervals", "root mute")
fails({ receiver = "r", routes = { { matchers = { 'a=~"("' } } } }, "route.routes[1].matchers[1]: error parsing regexp",
  "bad regex")
fails({ receiver = "r", routes = { {}, { matchers = 'a=="' } } }, "route.routes[2].matchers: ", "bad matcher")
fails({ receiver = "r", group_by = { "...", "a" } }, "cannot have wildcard group_by", "... with labels")
fails({ receiver = "r", group_by = { "a", "a" } }, 'duplicated label "a" in group_by', "duplicate group_by")
fails({ receiver = "r", group_by = { "a-b" } }, 'invalid label name "a-b"', "invalid group_by name")
fails({ receiver = "r", group_wait = "5 minutes" }, "group_wait: not a valid duration string", "bad duration")
fails({ receiver = "r", group_interval = "0s" }, "group_interval: cannot be zero", "zero group_interval")
fails({ receiver = "r", repeat_interval = "1m1h" }, "not a valid duration string", "units out of order")

-- Misuse raises.
t.raises(function() route.new("x") end, "route.new: spec: table expected", "non-table spec")
t.raises(function() route.new{ receiver = "r", recevier = "typo" } end, "unknown field recevier", "unknown field")
t.raises(function() route.new{ receiver = 1 } end, "route.receiver: string expected", "receiver type")
t.raises(function() route.new{ receiver = "r", routes = { 1 } } end, "routes%[1%]: table expected", "route type")
t.raises(function() tree1:match("x") end, "route:match: labels: table expected", "match non-table")
t.raises(function() tree1:match{ a = 1 } end, "string names and values expected", "match non-string value")

-- repeat_backoff (beyond Alertmanager): parsed and inherited like the timers.
local rb = assert(route.new{ receiver = "r", repeat_backoff = { factor = 2, max = "1d" },
  routes = { { matchers = 'a="1"' }, { matchers = 'a="2"', repeat_backoff = { factor = 3 } } } })
t.is_deeply(rb.routes[1].repeat_backoff, { factor = 2, max = 86400 }, "repeat_backoff is inherited")
t.is_deeply(rb.routes[2].repeat_backoff, { factor = 3, max = 86400 }, "a child sets its own (max defaults to 24h)")
t.is(assert(route.new{ receiver = "r" }).repeat_backoff, nil, "no backoff unless configured")
fails({ receiver = "r", repeat_backoff = { factor = 0.5 } }, "repeat_backoff.factor: number >= 1 expected", "backoff factor")
fails({ receiver = "r", repeat_backoff = { factor = 2, max = "soon" } }, "repeat_backoff.max: not a valid duration", "backoff max")
t.raises(function() route.new{ receiver = "r", repeat_backoff = { factr = 2 } } end, "repeat_backoff: unknown field factr", "backoff typo")

-- Durations.
t.is(route.parse_duration("1w2d3h4m5s6ms"), 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5.006, "all units")
t.is(route.format_duration(5400), "1h30m", "format_duration")
t.is(route.format_duration(0), "0s", "format_duration(0)")

t.done()
