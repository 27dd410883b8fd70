-- Used by tests/e2e/store_durability.t: writes rows as fast as it can from several tasks
-- (single execs and batches) and prints each id once its write is acknowledged, until killed.
local native = require "steward.runtime.store.native"
local task = require "steward.task"

local db = assert(native.open(arg[1]))
assert(db:exec("CREATE TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)"))
local next_id = tonumber(arg[2])
local payload = string.rep("p", 200)
local function take(n)
  local first = next_id + 1
  next_id = next_id + n
  return first
end

for _ = 1, 8 do
  task.spawn(function()
    while true do
      local id = take(1)
      if db:exec("INSERT INTO acked (id, payload) VALUES ($1, $2)", id, payload) then
        io.stdout:write(id, "\n")
        io.stdout:flush()
      end
    end
  end)
end
for _ = 1, 2 do
  task.spawn(function()
    while true do
      local first, list = take(20), {}
      for i = 0, 19 do list[#list + 1] = { "INSERT INTO acked (id, payload) VALUES ($1, $2)", first + i, payload } end
      if db:batch(list) then
        local ids = {}
        for i = 0, 19 do ids[#ids + 1] = first + i end
        io.stdout:write(table.concat(ids, "\n"), "\n")
        io.stdout:flush()
      end
    end
  end)
end
