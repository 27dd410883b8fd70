-- steward.deploy.freeze: recurring windows read in IANA zones across DST changes (Europe/Berlin
-- and America/New_York, both directions), date ranges whose ends fall in a DST gap, the end
-- each refusal names, services and environments with exceptions, overrides by a granted
-- freeze-override approval, overlapping windows, and errors that name the field.
local t = require "steward.tap"
local util = require "steward.runtime.store.util"
local freeze = require "steward.deploy.freeze"

local function at(s) return assert(util.parse_rfc3339(s)) end

local FRIDAY = { name = "friday-pm", location = "Europe/Berlin", reason = "no Friday afternoon deploys",
  time_intervals = { { weekdays = { "friday" }, times = { { start_time = "15:00", end_time = "24:00" } } } } }
local WEEKEND = { name = "weekend", location = "America/New_York",
  time_intervals = { { weekdays = { "saturday", "sunday" } } } }

local function main()
  local c = assert(freeze.compile({ FRIDAY }))
  -- Berlin, winter time (UTC+1): Friday 2026-03-27, 15:00 local is 14:00Z.
  t.ok(freeze.check(c, { service = "api", time = at("2026-03-27T13:59:59Z") }), "Berlin winter: 14:59 local is open")
  local ok, w = freeze.check(c, { service = "api", time = at("2026-03-27T14:00:00Z") })
  t.ok(not ok and w and w.name == "friday-pm", "Berlin winter: 15:00 local (14:00Z) is frozen, window named")
  t.is(w and w.ends_at, "2026-03-27T23:00:00Z", "... until midnight local, 23:00Z")
  t.like(w and w.message, 'change freeze "friday%-pm" %(no Friday afternoon deploys%) until 2026%-03%-27T23:00:00Z %(2026%-03%-28 00:00 Europe/Berlin%)',
    "... the message names the window, why, and when it ends in both clocks")
  -- Berlin, summer time (UTC+2) after 2026-03-29: Friday 2026-04-03, 15:00 local is 13:00Z.
  t.ok(freeze.check(c, { service = "api", time = at("2026-04-03T12:59:59Z") }), "Berlin summer: 14:59 local is open")
  ok, w = freeze.check(c, { service = "api", time = at("2026-04-03T13:00:00Z") })
  t.ok(not ok, "Berlin summer: 15:00 local (13:00Z) is frozen: the window follows the wall clock")
  t.is(w and w.ends_at, "2026-04-03T22:00:00Z", "... until 22:00Z")
  t.ok(freeze.check(c, { service = "api", time = at("2026-04-03T22:00:00Z") }), "Berlin summer: midnight local is open again")
  -- Autumn: Friday 2026-10-30 is after the change of 2026-10-25 (UTC+1 again).
  ok = freeze.check(c, { service = "api", time = at("2026-10-30T13:30:00Z") })
  t.ok(ok, "Berlin after the autumn change: 14:30 local (13:30Z) is open")
  ok, w = freeze.check(c, { service = "api", time = at("2026-10-23T13:30:00Z") })
  t.ok(not ok, "Berlin before the autumn change: 15:30 local (13:30Z) is frozen")

  local n = assert(freeze.compile({ WEEKEND }))
  -- New York, the weekend DST ends (2026-11-01, 02:00 EDT -> 01:00 EST): 49 hours.
  t.ok(freeze.check(n, { service = "api", time = at("2026-10-31T03:59:59Z") }), "New York: Friday 23:59 EDT is open")
  ok, w = freeze.check(n, { service = "api", time = at("2026-10-31T04:00:00Z") })
  t.ok(not ok, "New York: Saturday 00:00 EDT (04:00Z) is frozen")
  t.is(w and w.ends_at, "2026-11-02T05:00:00Z", "... until Monday 00:00 EST (05:00Z), across the repeated hour")
  ok, w = freeze.check(n, { service = "api", time = at("2026-11-01T06:30:00Z") })
  t.ok(not ok and w.ends_at == "2026-11-02T05:00:00Z", "New York: inside the repeated hour, frozen, same end")
  t.ok(freeze.check(n, { service = "api", time = at("2026-11-02T05:00:00Z") }), "New York: Monday 00:00 EST is open")
  -- New York, the weekend DST starts (2026-03-08): 47 hours.
  ok, w = freeze.check(n, { service = "api", time = at("2026-03-07T05:00:00Z") })
  t.ok(not ok and w.ends_at == "2026-03-09T04:00:00Z", "New York spring: Saturday 00:00 EST to Monday 00:00 EDT (04:00Z)")
  t.ok(freeze.check(n, { service = "api", time = at("2026-03-07T04:59:59Z") }), "... Friday 23:59 EST is open")

  -- Date ranges, local to their zone; an end inside the spring gap is the gap's end.
  local r = assert(freeze.compile({ { name = "migration-weekend", location = "Europe/Berlin",
    start = "2026-03-28T12:00", ["end"] = "2026-03-29T02:30" } }))
  t.ok(freeze.check(r, { service = "api", time = at("2026-03-28T10:59:59Z") }), "range: before 12:00 local (11:00Z) open")
  ok, w = freeze.check(r, { service = "api", time = at("2026-03-28T11:00:00Z") })
  t.ok(not ok, "range: 12:00 local (11:00Z) frozen")
  t.is(w and w.ends_at, "2026-03-29T01:00:00Z", "range: an end at 02:30, which does not exist that night, is 03:00 CEST (01:00Z)")
  local h = assert(freeze.compile({ { name = "holidays", location = "America/New_York", reason = "holiday freeze",
    start = "2026-12-19", ["end"] = "2027-01-04", services = { "pay-*", "checkout" }, except_environments = { "staging" } } }))
  ok, w = freeze.check(h, { service = "pay-api", environment = "production", time = at("2026-12-25T12:00:00Z") })
  t.ok(not ok and w.name == "holidays" and w.ends_at == "2027-01-04T05:00:00Z", "holiday range: a pay-* service is frozen until 2027-01-04 00:00 EST")
  t.ok(freeze.check(h, { service = "search", environment = "production", time = at("2026-12-25T12:00:00Z") }),
    "holiday range: a service it does not name deploys")
  t.ok(freeze.check(h, { service = "checkout", environment = "staging", time = at("2026-12-25T12:00:00Z") }),
    "holiday range: an excepted environment deploys")
  t.ok(freeze.check(h, { service = "checkout", environment = "production", time = at("2027-01-04T05:00:00Z") }),
    "holiday range: open at its end")

  -- exceptions by service, environments by pattern
  local e = assert(freeze.compile({ { name = "prod-friday", location = "Europe/Berlin", environments = { "prod*" },
    except_services = { "docs", "status-*" }, time_intervals = FRIDAY.time_intervals } }))
  local fri = at("2026-04-03T14:00:00Z")
  t.ok(not freeze.check(e, { service = "api", environment = "production", time = fri }), "environment pattern: production is frozen")
  t.ok(freeze.check(e, { service = "api", environment = "staging", time = fri }), "... staging is not")
  t.ok(freeze.check(e, { service = "status-page", environment = "production", time = fri }), "... an excepted service deploys")

  -- overrides: only a granted approval whose subject is freeze-override:<service>
  local grant = { id = "a1", state = "granted", subject = "freeze-override:api" }
  ok, w = freeze.check(c, { service = "api", time = fri, override = grant })
  t.ok(ok and w and w.overridden and w.name == "friday-pm", "a granted freeze-override:api lets api through, naming the window")
  t.ok(not freeze.check(c, { service = "web", time = fri, override = grant }), "... not another service")
  t.ok(not freeze.check(c, { service = "api", time = fri, override = { state = "pending", subject = "freeze-override:api" } }),
    "a pending approval overrides nothing")
  t.ok(not freeze.check(c, { service = "api", time = fri, override = { state = "denied", subject = "freeze-override:api" } }),
    "a denied approval overrides nothing")

  -- overlapping windows: the one that ends last is named
  local both = assert(freeze.compile({ FRIDAY, { name = "easter", location = "Europe/Berlin", start = "2026-04-02",
    ["end"] = "2026-04-07" } }))
  ok, w = freeze.check(both, { service = "api", time = fri })
  t.ok(not ok and w.name == "easter" and w.ends_at == "2026-04-06T22:00:00Z", "of two freezes, the longer one is named")

  -- errors name the field
  local function err_of(ws) return select(2, freeze.compile(ws)) end
  t.like(err_of({ { name = "x", location = "Mars/Olympus", start = "2026-01-01", ["end"] = "2026-01-02" } }),
    '^windows%[1%] %(x%)%.location: unknown time zone "Mars/Olympus"', "an unknown zone is named with its window")
  t.like(err_of({ { name = "x", time_intervals = { { weekdays = { "funday" } } } } }),
    "^windows%[1%] %(x%)%.time_intervals%[1%]: weekdays%[1%]", "a bad weekday is named")
  t.like(err_of({ { name = "x", start = "2026-02-30", ["end"] = "2026-03-01" } }), "%.start: \"2026%-02%-30\" is not a valid date",
    "an impossible date is named")
  t.like(err_of({ { name = "x", start = "2026-03-02", ["end"] = "2026-03-01" } }), "%.end: must be after start", "end before start")
  t.like(err_of({ { name = "x" } }), "either time_intervals", "a window needs intervals or a range")
  t.like(err_of({ { name = "x", start = "2026-03-01", ["end"] = "2026-03-02", colour = "red" } }), "%.colour: unknown field",
    "an unknown field is named")
  t.like(err_of({ FRIDAY, FRIDAY }), 'windows%[2%]%.name: "friday%-pm" is used by windows%[1%] too', "duplicate names")
  t.like(err_of({ { name = "x", services = { 3 }, start = "2026-03-01", ["end"] = "2026-03-02" } }), "%.services%[1%]",
    "a bad service pattern is named")
  t.raises(function() freeze.check(c, { environment = "production" }) end, "request.service", "check without a service raises")
  t.ok(freeze.validate({ FRIDAY, WEEKEND }), "validate accepts good windows")

  -- docs/deploy/freeze.md: the windows of its configuration compile, and the example answer holds
  local doc = assert(io.open("docs/deploy/freeze.md")):read("*a")
  local block = doc:match("```lua\n%-%- steward%.lua\n(.-)```")
  local cfg = assert(loadstring("return {" .. block .. "}", "=freeze.md"))()
  local dw = assert(freeze.compile(cfg.policy_config["deploy.freeze"].windows))
  ok, w = freeze.check(dw, { service = "api", environment = "production", time = at("2026-04-03T13:30:00Z") })
  t.ok(not ok and w.name == "friday-pm" and w.ends_at == "2026-04-03T22:00:00Z", "docs/deploy/freeze.md: its windows compile and its example answer holds")
end

local ok, err = xpcall(main, debug.traceback)
if not ok then t.fail("spec raised", err) end
t.done()
