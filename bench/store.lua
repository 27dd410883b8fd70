-- Measures the SQLite store's write paths (group commit) and read path, durable settings
-- (WAL, synchronous=full) on a temporary file. Prints key=value lines for bench/run.
--   steward script bench/store.lua [seconds] [store-url]
local native = require "steward.runtime.store.native"
local task = require "steward.task"
local time = require "steward.time"

local seconds = tonumber(arg[1]) or 2
local path = os.tmpname()
local url = arg[2] or ("sqlite:" .. path)
local db = assert(native.open(url))
assert(db:exec("CREATE TABLE IF NOT EXISTS ev (id INTEGER PRIMARY KEY, kind TEXT, source TEXT, at REAL, body TEXT)"))
local body = string.rep("b", 120)

local function out(k, v, fmt) io.write(string.format("%s=" .. (fmt or "%.0f") .. "\n", k, v)); io.stdout:flush() end

-- Runs workers tasks, each calling fn until the time is up; prints units/s, rows/s and
-- what the store's own counters say.
local function measure(name, workers, fn, rows_per_unit)
  local s0, t0 = db:stats(), time.monotonic()
  local deadline, units = t0 + seconds, 0
  local hs = {}
  for w = 1, workers do
    hs[w] = task.spawn(function()
      local i = 0
      while time.monotonic() < deadline do
        i = i + 1
        assert(fn(w, i))
        units = units + 1
      end
    end)
  end
  for w = 1, workers do assert(hs[w]:join()) end
  local dt, s1 = time.monotonic() - t0, db:stats()
  out(name .. "_units_per_s", units / dt)
  out(name .. "_rows_per_s", units * rows_per_unit / dt)
  out(name .. "_commits_per_s", (s1.commits - s0.commits) / dt)
  out(name .. "_units_per_commit", (s1.units - s0.units) / math.max(1, s1.commits - s0.commits), "%.1f")
end

-- (a) many tasks, each a one-row exec.
local single = "INSERT INTO ev (kind, source, at, body) VALUES ($1, $2, $3, $4)"
measure("exec_1row_256tasks", 256, function(w, i) return db:exec(single, "k", "w" .. w, i, body) end, 1)

-- (b) batches of 100 single-row INSERTs (one cached prepared statement, run 100 times).
local function rows100(w)
  local list = {}
  for r = 1, 100 do list[r] = { single, "k", "w" .. w, r, body } end
  return list
end
measure("batch_100x1row_4tasks", 4, function(w) return db:batch(rows100(w)) end, 100)
measure("batch_100x1row_16tasks", 16, function(w) return db:batch(rows100(w)) end, 100)

-- (c) batches of one 100-row INSERT ... VALUES (...),(...).
local vals, params = {}, {}
for r = 0, 99 do vals[#vals + 1] = string.format("($%d, $%d, $%d, $%d)", r * 4 + 1, r * 4 + 2, r * 4 + 3, r * 4 + 4) end
local multi = "INSERT INTO ev (kind, source, at, body) VALUES " .. table.concat(vals, ",")
measure("exec_100row_values_4tasks", 4, function(w)
  for r = 0, 99 do params[r * 4 + 1], params[r * 4 + 2], params[r * 4 + 3], params[r * 4 + 4] = "k", "w" .. w, r, body end
  return db:exec(multi, unpack(params, 1, 400))
end, 100)

-- Reads while nothing writes: point queries through the reader pool.
measure("query_point_64tasks", 64, function(_, i) return db:query("SELECT id, kind FROM ev WHERE id = $1", i) end, 1)

local st = db:stats()
out("max_batch_units", st.max_batch_units)
db:close()
os.remove(path); os.remove(path .. "-wal"); os.remove(path .. "-shm")
