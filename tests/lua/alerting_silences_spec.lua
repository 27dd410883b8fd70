-- steward.alerting.silences: validation, state over time and muting, as Alertmanager 0.25.
local t = require "steward.tap"
local silences = require "steward.alerting.silences"

local s = assert(silences.new{ id = "s1", matchers = { 'alertname="DiskFull"', 'instance=~"db.*"' },
  starts_at = 1000, ends_at = 2000, created_by = "ops", comment = "maintenance" })
t.is(s:state(999), "pending", "pending before startsAt")
t.is(s:state(1000), "active", "active at startsAt")
t.is(s:state(1500), "active", "active in between")
t.is(s:state(2000), "active", "still active at endsAt (ts.After(endsAt) expires)")
t.is(s:state(2001), "expired", "expired after endsAt")
t.ok(s:mutes({ alertname = "DiskFull", instance = "db1" }, 1500), "an active silence mutes matching labels")
t.ok(not s:mutes({ alertname = "DiskFull", instance = "web1" }, 1500), "all matchers must match")
t.ok(not s:mutes({ alertname = "DiskFull", instance = "db1" }, 999), "a pending silence mutes nothing")
t.ok(not s:mutes({ alertname = "DiskFull", instance = "db1" }, 2500), "an expired one neither")
t.is(tostring(s.matchers), '{alertname="DiskFull",instance=~"db.*"}', "matchers in Alertmanager's form")

local s2 = assert(silences.new{ id = "s2", matchers = 'alertname=~"Disk.*"', starts_at = 0, ends_at = 5000 })
local hit = silences.muted_by({ s, s2 }, { alertname = "DiskFull", instance = "db1" }, 1500)
t.is(#hit, 2, "muted_by: every active silence that matches")
t.is(hit[2].id, "s2", "in the order given")
t.is(#silences.muted_by({ s, s2 }, { alertname = "DiskFull" }, 3000), 1, "muted_by at a later time")

-- expire()
local s3 = assert(silences.new{ matchers = 'a="b"', starts_at = 100, ends_at = 200 })
t.ok(s3:expire(150), "expire an active silence")
t.is(s3.ends_at, 150, "it ends now")
t.is(s3:state(151), "expired", "and is expired after")
local s4 = assert(silences.new{ matchers = 'a="b"', starts_at = 100, ends_at = 200 })
s4:expire(50)
t.is(s4.starts_at, 50, "expiring a pending silence moves its start to now")
t.is(select(2, s3:expire(300)), "silence already expired", "expiring twice is an error")

-- Validation errors, with Alertmanager's messages.
local function fails(spec, msg)
  local v, err = silences.new(spec)
  t.ok(v == nil and err and err:find(msg, 1, true), msg .. ": " .. tostring(err))
end
fails({ matchers = {}, starts_at = 1, ends_at = 2 }, "at least one matcher required")
fails({ matchers = { 'a=""', 'b=~".*"', 'c!="x"', 'd!~".+"' }, starts_at = 1, ends_at = 2 },
  "at least one matcher must not match the empty string")
fails({ matchers = 'a="b"', ends_at = 2 }, "invalid zero start timestamp")
fails({ matchers = 'a="b"', starts_at = 2 }, "invalid zero end timestamp")
fails({ matchers = 'a="b"', starts_at = 3, ends_at = 2 }, "end time must not be before start time")
fails({ matchers = 'a:b="c"', starts_at = 1, ends_at = 2 }, 'invalid label name "a:b"')
fails({ matchers = 'a=~"("', starts_at = 1, ends_at = 2 }, "error parsing regexp")
t.ok(silences.new{ matchers = { 'a=""', 'b="x"' }, starts_at = 1, ends_at = 2 },
  "one matcher that needs a value is enough")

t.raises(function() silences.new{ matchers = 'a="b"', starts_at = "now", ends_at = 2 } end,
  "starts_at: number", "non-number time raises")
t.raises(function() silences.new{ matcher = 'a="b"' } end, "unknown field matcher", "unknown field raises")
t.raises(function() s:state("x") end, "now: number", "state(non-number) raises")
t.done()
