-- Turns ../shared/bench/events100.json (metric samples) into steward events: one batch of
-- 100 and one single event, written to the files given as arguments.
local json = require "steward.json"
local fs = require "steward.fs"
local src, batch_out, single_out = arg[1], arg[2], arg[3]
local samples = assert(json.decode(assert(fs.read(src))))
local list = {}
for i, s in ipairs(samples) do
  list[i] = { type = "metric.sample", tenant = s.tenant, source = "bench",
              data = { metric = s.metric, value = s.value, labels = s.labels } }
end
assert(fs.write(batch_out, json.encode(list)))
assert(fs.write(single_out, json.encode(list[1])))
