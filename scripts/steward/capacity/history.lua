-- steward.capacity.history: the stored history of capacity metrics ("<service>:<metric>").
-- record() is called on every autoscaler sample (4 Hz per metric), so it only adds to the
-- current minute's count, sum, min and max in memory; flush() writes the minutes that have
-- closed, one row per series per minute, in one batch, from a background task (the writer
-- thread or libpq commits it: the loop never waits on disk). A minute written twice (two
-- workers, or a flush before the minute ended) merges in the upsert. history() reads the rows
-- and the minutes not yet written, so a report sees the latest sample.
local util = require "steward.runtime.store.util"
local domain = require "steward.runtime.store.domain"
require "steward.capacity.schema"

local type, pairs, ipairs, tostring, error, format = type, pairs, ipairs, tostring, error, string.format
local floor, huge, sort, concat, unpack = math.floor, math.huge, table.sort, table.concat, unpack

local M = {}

M.MAX_PENDING = 100000 -- closed minutes kept while the store cannot take them
local CHUNK = 200 -- rows per INSERT (6 parameters each: well under SQLite's limit)

local ready = domain.migrator("capacity")
M.ready = ready

local open = {}     -- series -> {t = minute, n, total, lo, hi}: the minute being aggregated
local pending = {}  -- closed minutes waiting for flush, in order

local function now_of(v)
  if v ~= nil then return v end
  return require("steward.time").now() -- late: `steward test` replaces steward.time
end

local function series_arg(s, what)
  if type(s) ~= "string" or #s == 0 or #s > 200 then
    error(what .. ": series: string of 1 to 200 bytes expected (\"<service>:<metric>\"), got " .. tostring(s), 3)
  end
  return s
end

local function finite(v) return type(v) == "number" and v == v and v ~= huge and v ~= -huge end

local function close_minute(series, a)
  if #pending >= M.MAX_PENDING then
    table.remove(pending, 1)
    require("steward.log").warn("capacity: history backlog full, oldest minute dropped", { series = series })
  end
  pending[#pending + 1] = { series = series, t = a.t, n = a.n, total = a.total, lo = a.lo, hi = a.hi }
end

-- record(series, value [, t]): adds one sample. Misuse raises; nothing here waits.
function M.record(series, value, t)
  series_arg(series, "capacity.record")
  if not finite(value) then error("capacity.record: value: finite number expected, got " .. tostring(value), 2) end
  t = now_of(t)
  if not finite(t) then error("capacity.record: t: Unix seconds expected, got " .. tostring(t), 2) end
  local minute = floor(t / 60) * 60
  local a = open[series]
  if a and a.t ~= minute then
    close_minute(series, a)
    a = nil
  end
  if not a then
    open[series] = { t = minute, n = 1, total = value, lo = value, hi = value }
    return
  end
  a.n, a.total = a.n + 1, a.total + value
  if value < a.lo then a.lo = value end
  if value > a.hi then a.hi = value end
end

-- The upsert of rows (a list of {series, t, n, total, lo, hi}) as batch statements.
local function upserts(rows)
  local stmts = {}
  for i = 1, #rows, CHUNK do
    local values, params = {}, {}
    for j = i, math.min(i + CHUNK - 1, #rows) do
      local r = rows[j]
      local b = #params
      values[#values + 1] = format("($%d, $%d, $%d, $%d, $%d, $%d)", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6)
      params[b + 1], params[b + 2], params[b + 3] = r.series, r.t, r.n
      params[b + 4], params[b + 5], params[b + 6] = r.total, r.lo, r.hi
    end
    stmts[#stmts + 1] = { "INSERT INTO capacity_samples (series, t, n, total, lo, hi) VALUES " .. concat(values, ", ") ..
      " ON CONFLICT (series, t) DO UPDATE SET n = capacity_samples.n + excluded.n, " ..
      "total = capacity_samples.total + excluded.total, " ..
      "lo = CASE WHEN excluded.lo < capacity_samples.lo THEN excluded.lo ELSE capacity_samples.lo END, " ..
      "hi = CASE WHEN excluded.hi > capacity_samples.hi THEN excluded.hi ELSE capacity_samples.hi END", unpack(params) }
  end
  return stmts
end

-- Two rows of one (series, minute) in one INSERT would make PostgreSQL refuse the upsert
-- ("cannot affect row a second time"): merge them first.
local function merged(rows)
  local by, out = {}, {}
  for _, r in ipairs(rows) do
    local k = r.series .. "\0" .. r.t
    local m = by[k]
    if not m then
      m = { series = r.series, t = r.t, n = r.n, total = r.total, lo = r.lo, hi = r.hi }
      by[k] = m
      out[#out + 1] = m
    else
      m.n, m.total = m.n + r.n, m.total + r.total
      if r.lo < m.lo then m.lo = r.lo end
      if r.hi > m.hi then m.hi = r.hi end
    end
  end
  return out
end

local flushing = false

-- flush(st [, now]) -> rows written | nil, err. Writes the closed minutes (every minute before
-- now's; with now = math.huge, the open ones too, as at shutdown). On a store error the rows
-- stay queued for the next flush.
function M.flush(st, now)
  local ok, err = ready(st)
  if not ok then return nil, err end
  now = now_of(now)
  for series, a in pairs(open) do
    if a.t + 60 <= now then
      close_minute(series, a)
      open[series] = nil
    end
  end
  if #pending == 0 or flushing then return 0 end
  local rows = merged(pending)
  pending = {}
  flushing = true
  local res
  res, err = st.db:batch(upserts(rows))
  flushing = false
  if not res then
    for i = #rows, 1, -1 do table.insert(pending, 1, rows[i]) end
    while #pending > M.MAX_PENDING do table.remove(pending, 1) end
    return nil, err
  end
  return #rows
end

-- import(st, series, points) -> rows written | nil, err: back-fills a series from
-- {{t, v}, ...} (or {{t = , v = }}); points of one minute merge. Misuse raises naming the point.
function M.import(st, series, points)
  local ok, err = ready(st)
  if not ok then return nil, err end
  series_arg(series, "capacity.import")
  if type(points) ~= "table" then error("capacity.import: points: list of {t, v} expected, got " .. type(points), 2) end
  local rows = {}
  for i, p in ipairs(points) do
    if type(p) ~= "table" then error(format("capacity.import: points[%d]: {t, v} expected", i), 2) end
    local t, v = p.t or p[1], p.v or p[2]
    if not finite(t) then error(format("capacity.import: points[%d].t: Unix seconds expected, got %s", i, tostring(t)), 2) end
    if not finite(v) then error(format("capacity.import: points[%d].v: finite number expected, got %s", i, tostring(v)), 2) end
    rows[#rows + 1] = { series = series, t = floor(t / 60) * 60, n = 1, total = v, lo = v, hi = v }
  end
  rows = merged(rows)
  if #rows == 0 then return 0 end
  local res
  res, err = st.db:batch(upserts(rows))
  if not res then return nil, err end
  return #rows
end

-- history(st, series, from, to [, step]) -> {{t, v, min =, max =, n =}, ...} sorted by t | nil, err.
-- v is the mean of the samples in [t, t + step) (step: seconds, at least 60, default 60); t is a
-- multiple of step (the first bucket may start before from: it holds only samples from on).
function M.history(st, series, from, to, step)
  local ok, err = ready(st)
  if not ok then return nil, err end
  series_arg(series, "capacity.history")
  from = util.time_arg(from, "capacity.history: from")
  to = util.time_arg(to, "capacity.history: to")
  if step ~= nil then
    step = util.duration_arg(step, "capacity.history: step")
    if step < 60 then error("capacity.history: step: at least 1m expected (rows are minutes)", 2) end
  else
    step = 60
  end
  local rows
  rows, err = st.db:query("SELECT t, n, total, lo, hi FROM capacity_samples WHERE series = $1 AND t >= $2 AND t < $3 " ..
    "ORDER BY t", series, from, to)
  if not rows then return nil, err end
  -- The minutes not written yet count too.
  local extra = {}
  for _, r in ipairs(pending) do if r.series == series then extra[#extra + 1] = r end end
  if open[series] then extra[#extra + 1] = open[series] end
  local buckets, keys = {}, {}
  local function add(t, n, total, lo, hi)
    if t < from or t >= to then return end
    local k = floor(t / step) * step -- whole steps of the clock (minutes, hours), not of from
    local b = buckets[k]
    if not b then
      buckets[k] = { n = n, total = total, lo = lo, hi = hi }
      keys[#keys + 1] = k
    else
      b.n, b.total = b.n + n, b.total + total
      if lo < b.lo then b.lo = lo end
      if hi > b.hi then b.hi = hi end
    end
  end
  for _, r in ipairs(rows) do add(r.t, r.n, r.total, r.lo, r.hi) end
  for _, r in ipairs(extra) do add(r.t, r.n, r.total, r.lo, r.hi) end
  sort(keys)
  local out = {}
  for i, k in ipairs(keys) do
    local b = buckets[k]
    out[i] = { k, b.total / b.n, min = b.lo, max = b.hi, n = b.n }
  end
  return out
end

-- series(st) -> the names of the stored series, sorted | nil, err
function M.series(st)
  local ok, err = ready(st)
  if not ok then return nil, err end
  local rows
  rows, err = st.db:query("SELECT DISTINCT series FROM capacity_samples ORDER BY series")
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.series end
  return out
end

-- purge(st, before) -> rows deleted | nil, err (retention)
function M.purge(st, before)
  local ok, err = ready(st)
  if not ok then return nil, err end
  before = util.time_arg(before, "capacity.purge: before")
  local res
  res, err = st.db:exec("DELETE FROM capacity_samples WHERE t < $1", before)
  if not res then return nil, err end
  return res.changes
end

-- reset(): forgets the minutes not yet written (specs).
function M.reset() open, pending = {}, {} end

return M
