-- steward.scaling.schedule: cron windows with min/max overrides, on fixed instants: weekdays in a
-- zone, windows across midnight, overlaps (largest min, largest max), both DST transitions of
-- Europe/Paris, and the errors naming the field.
if not describe then
  if require("steward.runtime.testing.runner").main { arg[0] } ~= 0 then error("specs failed", 0) end
  return
end

local schedule = require "steward.scaling.schedule"
local time = require "steward.time"

local paris = assert(time.zone("Europe/Paris"))
local utc = assert(time.zone("UTC"))

-- An instant from Paris wall-clock fields.
local function at(y, m, d, h, mi) return paris:from_local { year = y, month = m, day = d, hour = h, min = mi or 0 } end
local function utc_at(y, m, d, h, mi) return utc:from_local { year = y, month = m, day = d, hour = h, min = mi or 0 } end

local function bounds_at(windows, t)
  local b = schedule.bounds(windows, t)
  if not b then return "closed" end
  return { b.min, b.max, b.window }
end

describe("a weekday window in Europe/Paris", function()
  local office = { { name = "office", cron = "0 8 * * 1-5", duration = "10h", min_replicas = 4, max_replicas = 20,
                     timezone = "Europe/Paris" } }
  -- 2026-12-07 is a Monday.
  local cases = {
    { "Monday 07:59 Paris: closed", at(2026, 12, 7, 7, 59), "closed" },
    { "Monday 08:00 Paris: open", at(2026, 12, 7, 8, 0), { 4, 20, "office" } },
    { "Monday 17:59 Paris: open", at(2026, 12, 7, 17, 59), { 4, 20, "office" } },
    { "Monday 18:00 Paris: closed (the duration is half-open)", at(2026, 12, 7, 18, 0), "closed" },
    { "Friday 12:00 Paris: open", at(2026, 12, 11, 12, 0), { 4, 20, "office" } },
    { "Saturday 12:00 Paris: closed", at(2026, 12, 12, 12, 0), "closed" },
    { "Monday 07:30 UTC = 08:30 Paris: open", utc_at(2026, 12, 7, 7, 30), { 4, 20, "office" } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.same(bounds_at(office, c[2]), c[3]) end)
  end
  it("active() tells when the window opened and when it closes", function()
    local open = schedule.active(office, at(2026, 12, 7, 9, 0))
    assert.same(open, { { name = "office", min_replicas = 4, max_replicas = 20,
                          since = at(2026, 12, 7, 8, 0), ends = at(2026, 12, 7, 18, 0) } })
  end)
end)

describe("windows across midnight and longer than their period", function()
  it("22:00 for 4h is open at 01:00 the next day", function()
    local night = { { name = "batch", cron = "0 22 * * *", duration = "4h", min_replicas = 2 } }
    assert.same(bounds_at(night, utc_at(2026, 12, 8, 1, 0)), { 2, nil, "batch" })
    assert.equal(bounds_at(night, utc_at(2026, 12, 8, 2, 0)), "closed")
  end)
  it("an hourly window lasting 90 minutes is always open", function()
    local w = { { cron = "0 * * * *", duration = "90m", max_replicas = 3 } }
    for mi = 0, 59, 7 do assert.same(bounds_at(w, utc_at(2026, 12, 8, 5, mi)), { nil, 3, "window 1" }) end
  end)
  it("the zone defaults to bounds()'s tz argument, then UTC", function()
    local w = { { cron = "0 8 * * *", duration = "1h", min_replicas = 1 } }
    assert.equal(schedule.bounds(w, utc_at(2026, 12, 8, 7, 30), "Europe/Paris").min, 1)
    assert.equal(schedule.bounds(w, utc_at(2026, 12, 8, 7, 30)), nil)
  end)
end)

describe("overlapping windows", function()
  local windows = {
    { name = "office", cron = "0 8 * * 1-5", duration = "10h", min_replicas = 4, max_replicas = 10 },
    { name = "launch", cron = "0 12 7 12 *", duration = "2h", min_replicas = 8 },
    { name = "cap", cron = "0 13 * * *", duration = "30m", max_replicas = 6 },
  }
  local cases = {
    { "one window: its bounds", utc_at(2026, 12, 7, 9, 0), { 4, 10, "office" } },
    { "two windows: the largest min, the max that one sets", utc_at(2026, 12, 7, 12, 30), { 8, 10, "office, launch" } },
    { "three windows: largest min, largest max", utc_at(2026, 12, 7, 13, 10), { 8, 10, "office, launch, cap" } },
    { "a min above every max raises the max", utc_at(2026, 12, 8, 13, 10), { 4, 10, "office, cap" } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.same(bounds_at(windows, c[2]), c[3]) end)
  end
  it("a min above the only max raises the max to it", function()
    local w = { { name = "a", cron = "0 0 * * *", duration = "1d", min_replicas = 7 },
                { name = "b", cron = "0 0 * * *", duration = "1d", max_replicas = 3 } }
    assert.same(bounds_at(w, utc_at(2026, 12, 8, 5)), { 7, 7, "a, b" })
  end)
  it("clamp() applies the overrides to the autoscaler's bounds", function()
    assert.same({ schedule.clamp(1, 10, nil) }, { 1, 10 })
    assert.same({ schedule.clamp(1, 10, { min = 4 }) }, { 4, 10 })
    assert.same({ schedule.clamp(1, 10, { max = 3 }) }, { 1, 3 })
    assert.same({ schedule.clamp(5, 10, { max = 3 }) }, { 5, 5 })
  end)
end)

describe("DST in Europe/Paris", function()
  -- 2026-03-29: 02:00 CET -> 03:00 CEST (01:00 UTC). 2026-10-25: 03:00 CEST -> 02:00 CET (01:00 UTC).
  it("a start in the skipped hour happens at the transition and lasts its duration", function()
    local w = { { name = "w", cron = "30 2 * * *", duration = "1h", min_replicas = 2, timezone = "Europe/Paris" } }
    assert.equal(bounds_at(w, utc_at(2026, 3, 29, 0, 59)), "closed")
    assert.same(bounds_at(w, utc_at(2026, 3, 29, 1, 0)), { 2, nil, "w" })
    assert.same(bounds_at(w, utc_at(2026, 3, 29, 1, 59)), { 2, nil, "w" })
    assert.equal(bounds_at(w, utc_at(2026, 3, 29, 2, 0)), "closed")
    -- the day before, 02:30 CET is 01:30 UTC
    assert.same(bounds_at(w, utc_at(2026, 3, 28, 1, 30)), { 2, nil, "w" })
    assert.equal(bounds_at(w, utc_at(2026, 3, 28, 1, 29)), "closed")
  end)
  it("office hours keep their wall-clock times on both sides of a transition", function()
    local w = { { name = "office", cron = "0 8 * * *", duration = "10h", min_replicas = 4, timezone = "Europe/Paris" } }
    assert.equal(bounds_at(w, utc_at(2026, 3, 28, 6, 59)), "closed")    -- 07:59 CET
    assert.same(bounds_at(w, utc_at(2026, 3, 28, 7, 0)), { 4, nil, "office" })
    assert.equal(bounds_at(w, utc_at(2026, 3, 30, 5, 59)), "closed")    -- 07:59 CEST
    assert.same(bounds_at(w, utc_at(2026, 3, 30, 6, 0)), { 4, nil, "office" })
  end)
  it("a start in the repeated hour happens once, the first time, and is still open after the clock goes back", function()
    local w = { { name = "w", cron = "45 2 * * *", duration = "1h", min_replicas = 2, timezone = "Europe/Paris" } }
    -- first 02:45 is CEST: 00:45 UTC; open until 01:45 UTC although the wall clock reads 02:10 CET at 01:10 UTC
    assert.equal(bounds_at(w, utc_at(2026, 10, 25, 0, 44)), "closed")
    assert.same(bounds_at(w, utc_at(2026, 10, 25, 0, 45)), { 2, nil, "w" })
    assert.same(bounds_at(w, utc_at(2026, 10, 25, 1, 10)), { 2, nil, "w" })
    assert.equal(bounds_at(w, utc_at(2026, 10, 25, 1, 45)), "closed")
    -- the second 02:45 (01:45 UTC) does not open it again
    assert.equal(bounds_at(w, utc_at(2026, 10, 25, 1, 50)), "closed")
  end)
end)

describe("check", function()
  local ok = { name = "w", cron = "0 8 * * *", duration = "1h", min_replicas = 1 }
  local function with(t)
    local w = {}
    for k, v in pairs(ok) do w[k] = v end
    for k, v in pairs(t) do w[k] = v end
    return w
  end
  local bad = {
    { { with { cron = "0 8 * *" } }, "scaling: schedule%[1%]%.cron: cron: 5 fields expected" },
    { { with { cron = 8 } }, "scaling: schedule%[1%]%.cron: cron expression" },
    { { with { duration = "soon" } }, "scaling: schedule%[1%]%.duration: a positive duration" },
    { { with { duration = "0s" } }, "scaling: schedule%[1%]%.duration: a positive duration" },
    { { with { min_replicas = -1 } }, "scaling: schedule%[1%]%.min_replicas: a whole number" },
    { { with { min_replicas = false } }, "scaling: schedule%[1%]%.min_replicas: a whole number" },
    { { with { min_replicas = 5, max_replicas = 2 } }, "scaling: schedule%[1%]%.min_replicas: 5 is above max_replicas 2" },
    { { { name = "w", cron = "0 8 * * *", duration = "1h" } }, "scaling: schedule%[1%]: min_replicas or max_replicas" },
    { { with { timezone = "Mars/Olympus" } }, "scaling: schedule%[1%]%.timezone: " },
    { { with { max = 3 } }, "scaling: schedule%[1%]%.max: unknown field" },
    { { ok, with {} }, "scaling: schedule%[2%]%.name: \"w\" is used by schedule%[1%] too" },
    { "0 8 * * *", "scaling: schedule: a list of windows expected" },
  }
  for _, b in ipairs(bad) do
    it("refuses: " .. b[2], function()
      assert.error(function() schedule.check(b[1]) end, b[2])
    end)
  end
  it("normalises: durations in seconds, names by position", function()
    local c = schedule.check { { cron = "@daily", duration = "30m", max_replicas = 2 } }
    assert.same({ c[1].name, c[1].duration, c[1].timezone, c[1].max_replicas }, { "window 1", 1800, "UTC", 2 })
    assert.equal(schedule.check(c), c)
  end)
end)

describe("in a policy's sandbox", function()
  it("a policy may require the pure scaling and forecasting modules and use them", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(require("steward.fs").mkdir(dir, { parents = true }))
    local f = assert(io.open(dir .. "/scale.lua", "w"))
    f:write([[
local schedule = require "steward.scaling.schedule"
local keda = require "steward.scaling.keda"
local predict = require "steward.scaling.predict"
local forecast = require "steward.capacity.forecast"
return { decide = function(input)
  local b = schedule.bounds({ { name = "office", cron = "0 8 * * 1-5", duration = "10h", min_replicas = 4,
                                timezone = "Europe/Paris" } }, input.now)
  local d = keda.decide({ metrics = { { name = "q", type = "external", target = { type = "value", value = 10 } } } },
                        nil, { current = 0, metrics = { q = { value = 3 } } }, input.now)
  return { min = b.min, desired = d.desired, slope = forecast.linear({ { 0, 1 }, { 1, 2 }, { 2, 3 } }).slope,
           lead = predict.check({ metric = "rps", target = 1 }).lead }
end }
]])
    f:close()
    local p = policy.load(dir .. "/scale.lua")
    os.execute("rm -rf " .. dir)
    assert.same(p:decide { now = at(2026, 12, 7, 9, 0) }, { min = 4, desired = 1, slope = 1, lead = 300 })
  end)
end)

describe("docs/scaling/schedule.md", function()
  it("its examples run as written and print what their --> comments say", function()
    assert(loadfile("tests/support/doc_examples.lua"))()("docs/scaling/schedule.md", assert)
  end)
end)
