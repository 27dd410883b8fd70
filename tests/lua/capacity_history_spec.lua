-- steward.capacity.history on a real store (SQLite here; tests/e2e/capacity_report.t runs the
-- daemon on PostgreSQL too): samples at 4 Hz aggregate in memory into one row per series per
-- minute (count, mean, min, max), written only by flush and only for closed minutes; the open
-- minute is visible to history() before it is written; a minute flushed twice merges; import
-- back-fills; steps aggregate; retention purges; misuse raises naming the argument.
local t = require "steward.tap"
local history = require "steward.capacity.history"

local spec = assert(loadfile("tests/support/domain_spec.lua"))()
local st = spec.st

local T0 = 1796000040 -- a minute boundary

local function main()
  history.reset()
  -- 3 minutes at 4 Hz: minute k has values k*100 + (0..239)
  for k = 0, 2 do
    for i = 0, 239 do history.record("api:rps", k * 100 + i, T0 + k * 60 + i * 0.25) end
  end
  local rows = assert(st.db:query("SELECT COUNT(*) AS n FROM capacity_samples"))
  t.is(rows[1].n, 0, "recording writes nothing by itself")
  t.is(assert(history.flush(st, T0 + 150)), 2, "flush writes the two closed minutes")
  t.is(assert(history.flush(st, T0 + 170)), 0, "... and nothing more while the third is open")
  local h = assert(history.history(st, "api:rps", T0, T0 + 180))
  t.is(#h, 3, "history has three minutes (the open one from memory)")
  t.is(h[1][1], T0, "... the first at its minute")
  t.is(h[1][2], 119.5, "... its mean")
  t.is(h[1].min .. "/" .. h[1].max .. "/" .. h[1].n, "0/239/240", "... min, max and count")
  t.is(h[3][2], 319.5, "... the open minute's mean")
  t.is(assert(history.flush(st, T0 + 180)), 1, "the third minute is written once it closed")
  -- a late sample of the first minute (another worker, or after a restart) merges
  history.record("api:rps", 1000, T0 + 10)
  t.is(assert(history.flush(st, T0 + 300)), 1, "a second row for a written minute")
  h = assert(history.history(st, "api:rps", T0, T0 + 60))
  t.is(h[1].n, 241, "... merges into it: count")
  t.is(h[1].max, 1000, "... max")
  t.is(h[1][2], (119.5 * 240 + 1000) / 241, "... mean")
  rows = assert(st.db:query("SELECT COUNT(*) AS n FROM capacity_samples WHERE series = 'api:rps'"))
  t.is(rows[1].n, 3, "still one row per minute")

  -- steps
  h = assert(history.history(st, "api:rps", T0, T0 + 180, "3m"))
  t.is(#h, 1, "a 3m step: one bucket")
  t.is(h[1].n, 721, "... of every sample")
  t.raises(function() history.history(st, "api:rps", T0, T0 + 180, "30s") end, "step: at least 1m", "a step under a minute")

  -- import
  local pts = {}
  for i = 0, 47 do pts[#pts + 1] = { T0 + i * 3600, 10 + i } end
  pts[#pts + 1] = { t = T0 + 30, v = 20 } -- same minute as the first point: merged
  t.is(assert(history.import(st, "db:connections", pts)), 48, "import: 48 hourly points, one merged")
  h = assert(history.history(st, "db:connections", T0, T0 + 48 * 3600, "1h"))
  t.is(#h, 48, "... read back by the hour")
  t.is(h[1][2], 15, "... the merged minute's mean")
  t.is(h[48][2], 57, "... the last point")
  t.is(table.concat(assert(history.series(st)), ","), "api:rps,db:connections", "series lists both")
  t.raises(function() history.import(st, "x:y", { { T0, "many" } }) end, "points%[1%]%.v: finite number", "a bad point is named")
  t.raises(function() history.import(st, "x:y", { { "now", 1 } }) end, "points%[1%]%.t: Unix seconds", "a bad time is named")

  -- misuse
  t.raises(function() history.record("", 1) end, "series: string of 1 to 200 bytes", "an empty series")
  t.raises(function() history.record("a:b", 0 / 0) end, "value: finite number", "NaN")
  t.raises(function() history.record("a:b", "5") end, "value: finite number", "a string value")

  -- retention
  t.is(assert(history.purge(st, T0 + 3600)), 4, "purge removes the rows before the cut (3 minutes of api, 1 hour of db)")
  t.is(#assert(history.history(st, "api:rps", T0, T0 + 180)), 0, "... api's minutes are gone")
end

spec.run(main)
