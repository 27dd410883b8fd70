-- The REPL's daemon-side pieces that need no socket: compiling input (expression first,
-- statement second, incomplete chunks recognised), completion of globals and table fields,
-- the taps behind events.tail / policy.trace, and the aligned tables helpers print.
local t = require "steward.tap"
local task = require "steward.task"
local session = require "steward.runtime.repl.session"
local helpers = require "steward.runtime.repl.helpers"
local taps = require "steward.runtime.taps"

-- compile
local fn = session.compile("1 + 1")
t.is(fn and fn(), 2, "an expression compiles as `return <expr>`")
fn = session.compile("x = 5")
t.ok(fn and select("#", fn()) == 0, "a statement compiles as itself")
for _, chunk in ipairs({ "function f()", "for i = 1, 3 do", "if x then", "x = [[abc", "t = {", "return (" }) do
  local f, err, incomplete = session.compile(chunk)
  t.ok(f == nil and incomplete == true and err:find("<eof>", 1, true), "incomplete: " .. chunk)
end
local f, err, incomplete = session.compile("x = = 1")
t.ok(f == nil and not incomplete and err:find("unexpected symbol", 1, true), "a syntax error is an error, not incomplete")
f, err, incomplete = session.compile("'abc")
t.ok(f == nil and not incomplete, "an unfinished short string is an error (as in lua)")

-- completion
local env = setmetatable({ mine = 1 }, { __index = setmetatable({
  events = { tail = function() end, find = function() end, limit = 10 },
  status = function() end,
}, { __index = { string = string, print = print } }) })
t.is_deeply(session.complete(env, "events.t"), { "events.tail" }, "a table's fields after a dot")
t.is_deeply(session.complete(env, "events."), { "events.find", "events.limit", "events.tail" }, "every field, sorted")
t.is_deeply(session.complete(env, "events:"), { "events:find", "events:tail" }, "only functions after a colon")
t.is_deeply(session.complete(env, "sta"), { "status" }, "helpers at the top level")
t.is_deeply(session.complete(env, "mi"), { "mine" }, "the session's own globals")
t.is_deeply(session.complete(env, "str"), { "string" }, "the base globals")
t.is_deeply(session.complete(env, "string.up"), { "string.upper" }, "fields of a library")
t.is_deeply(session.complete(env, "fun"), { "function" }, "keywords")
t.is_deeply(session.complete(env, "nope.x"), {}, "an unknown table completes to nothing")
t.is_deeply(session.complete(env, "mine.x"), {}, "a non-table completes to nothing")
t.is_deeply(session.complete(env, "a b"), {}, "a malformed word completes to nothing")
local cyc = {}
setmetatable(cyc, { __index = cyc })
t.is_deeply(session.complete(setmetatable({}, { __index = cyc }), "zz"), {}, "an __index cycle ends")

-- taps
t.is(taps.count("event"), 0, "nobody watches at first")
taps.publish("event", { type = "x" }) -- no subscriber: nothing to do
local sub = taps.subscribe("event", function(ev) return ev.type == "a" end)
t.is(taps.count("event"), 1, "a subscriber is counted")
local got = {}
local h = task.spawn(function()
  for _ = 1, 2 do got[#got + 1] = sub:next().n end
end)
taps.publish("event", { type = "a", n = 1 })
taps.publish("event", { type = "b", n = 2 })
taps.publish("event", { type = "a", n = 3 })
h:join()
t.is_deeply(got, { 1, 3 }, "a waiting subscriber gets what its filter selects, in order")
t.is(sub:next(0.01), nil, "next times out when nothing comes")
for i = 1, 1005 do taps.publish("event", { type = "a", n = i }) end
local item, dropped = sub:next()
t.ok(item.n == 6 and dropped == 5, "a full queue drops the oldest and says how many")
sub:close()
t.is(taps.count("event"), 0, "close unsubscribes")
t.is(sub:next(), nil, "next on a closed subscription is nil")
local sub2 = taps.subscribe("decision")
local waiter = task.spawn(function() return sub2:next() end)
sub2:close()
local joined, v = waiter:join()
t.ok(joined and v == nil, "close wakes a waiting next with nil")
t.raises(function() taps.subscribe("nope") end, "topic", "an unknown topic is refused")

-- rows
local r = helpers.rows({ { name = "a", n = 1 }, { name = "longer", n = 22 } }, { "name", "n" })
t.is(tostring(r), "name    n\na       1\nlonger  22", "rows print aligned, with a header")
t.is(r[2].name, "longer", "rows are still a plain list")
t.is(tostring(helpers.rows({}, { "x" })), "(none)", "no rows say so")
t.is(helpers.human_duration(59), "59s", "duration: seconds")
t.is(helpers.human_duration(3725), "1h 2m", "duration: hours")
t.is(helpers.human_duration(90000), "1d 1h", "duration: days")
t.done()
