-- steward.runtime.decision_log: the async mode (batched rows, the loss window, writing its own
-- row when the store falls behind, a failed batch retried once), the durable mode (the row
-- committed before record returns, or an error), masks over JSON texts the caller already
-- had; the decision_log configuration keys and policy field.
local t = require "steward.tap"
local json = require "steward.json"
local time = require "steward.time"
local decision_log = require "steward.runtime.decision_log"
local decisions = require "steward.runtime.store.decisions"
local policies = require "steward.runtime.policies"
local config = require "steward.runtime.config"

local st, tmp = require("tests.support.test_store").open()

-- A store stand-in that records each batch's rows (by ref) and answers as told.
local function fake(answer)
  local f = { batches = {} }
  function f.batch(_, stmts)
    local refs = {}
    for _, s in ipairs(stmts) do
      for i = 2, s.n, 12 do refs[#refs + 1] = s[i] end
    end
    f.batches[#f.batches + 1] = refs
    return answer(#f.batches)
  end
  return f
end

local function raw(ref)
  local rows = assert(st.db:query("SELECT input, result FROM decisions WHERE ref = $1", ref))
  return rows[1]
end

t.raises(function() decision_log.new({ store = st, mode = "sync" }) end, "mode", "new: a bad mode names mode")
t.raises(function() decision_log.new({ store = st, window = 0 }) end, "window", "new: a bad window names window")

-- async: answered at once, written within the window, texts stored as given
local log = decision_log.new({ store = st, window = 0.05 })
local body = '{"b": 2,  "a": [1, 2]}'
local ref = log:record({ policy = "spec.async", version = "v1", input = json.decode(body), input_json = body,
  outcome = "ok", result = { ok = true }, result_json = '{"ok":true}', duration = 0.001 })
t.ok(type(ref) == "string" and #ref == 36, "async record returns the decision id at once")
t.is(decisions.get_ref(st, ref), nil, "the row is not written yet")
for _ = 1, 100 do if decisions.get_ref(st, ref) then break end; time.sleep(0.01) end
local row = raw(ref)
t.is(row and row.input, body, "the input's JSON text is stored as the caller sent it")
t.is(row and row.result, '{"ok":true}', "the result's JSON text is stored as encoded once")

-- many records: one batch, every row written
local refs = {}
for i = 1, 300 do
  refs[i] = log:record({ policy = "spec.async", outcome = "ok", input = { i = i }, result = { i = i } })
end
log:close()
local missing = 0
for _, r in ipairs(refs) do if not decisions.get_ref(st, r) then missing = missing + 1 end end
t.is(missing, 0, "close writes what is buffered: 300 rows, none missing")
t.is(decisions.get_ref(st, refs[300]).result.i, 300, "rows without texts are encoded by the log")

-- masks apply to the texts too: a masked field never reaches the store
log = decision_log.new({ store = st, mask = { "/input/secret", "/result/token" } })
body = '{"secret":"hunter2","user":"ann"}'
ref = log:record({ policy = "spec.mask", input = json.decode(body), input_json = body, outcome = "ok",
  result = { token = "t0k" }, result_json = '{"token":"t0k"}' }, true)
row = raw(ref)
t.ok(row and not row.input:find("hunter2") and json.decode(row.input).secret == "***" and json.decode(row.input).user == "ann",
  "a mask on the input re-encodes a masked copy of the body")
t.ok(row and not row.result:find("t0k") and json.decode(row.result).token == "***", "a mask on the result too")
log:close()

-- durable: written when record returns; a failed write is an error carrying the id. The
-- log's mode is what a decide applies by default; a record without the flag (a handler
-- run) stays async in either mode.
log = decision_log.new({ store = st, mode = "durable", window = 0.05 })
t.is(log.mode, "durable", "the mode a decide applies by default")
ref = assert(log:record({ policy = "spec.durable", outcome = "ok", input = {}, result = 1 }, true))
t.ok(decisions.get_ref(st, ref) ~= nil, "record(rec, true): the row is committed when record returns")
ref = assert(log:record({ policy = "spec.handler", event_id = "ev-1", outcome = "ok" }))
t.is(decisions.get_ref(st, ref), nil, "a record without the flag is buffered, also in durable mode")
log:close()
t.ok(decisions.get_ref(st, ref) ~= nil, "and written by the flush")
local down = decision_log.new({ store = fake(function() return nil, "the store is down" end) })
local r2, err, id = down:record({ policy = "spec.durable", outcome = "ok" }, true)
t.ok(r2 == nil and tostring(err):find("down") and type(id) == "string", "durable: a failed commit returns nil, err, the decision id")

-- async: a failed batch is written with the next one; a row failing twice is dropped
local f = fake(function(n) if n == 1 then return nil, "busy" end return true end)
log = decision_log.new({ store = f, window = 0.02 })
ref = log:record({ policy = "spec.retry", outcome = "ok" })
for _ = 1, 100 do if #f.batches >= 2 then break end; time.sleep(0.01) end
t.ok(#f.batches == 2 and f.batches[2][1] == ref, "a batch that failed is written again")
f = fake(function() return nil, "broken" end)
log = decision_log.new({ store = f, window = 0.02 })
log:record({ policy = "spec.retry", outcome = "ok" })
for _ = 1, 100 do if #f.batches >= 2 then break end; time.sleep(0.01) end
time.sleep(0.05)
t.is(#f.batches, 2, "a row that fails twice is dropped, not retried for ever")

-- async, store behind: with a batch in flight past half the window, a record writes its own
-- row (and waits for it) instead of adding to the backlog
local release = false
f = fake(function(n)
  if n == 1 then while not release do time.sleep(0.005) end end
  return true
end)
log = decision_log.new({ store = f, window = 0.04 })
local first = log:record({ policy = "spec.behind", outcome = "ok" })
for _ = 1, 100 do if #f.batches >= 1 then break end; time.sleep(0.005) end
time.sleep(0.03) -- the first row is now older than half the window and not committed
local late = log:record({ policy = "spec.behind", outcome = "ok" })
t.ok(#f.batches == 2 and f.batches[1][1] == first and #f.batches[2] == 1 and f.batches[2][1] == late,
  "a record made while the log is behind writes its own row")
release = true
log:close()

-- the policy field
local p = policies.check({ name = "d", decision_log = "durable", decide = function() end }, "d.lua", "d")
t.is(p and p.decision_log, "durable", "policy field decision_log = \"durable\"")
local _, perr = policies.check({ name = "d", decision_log = "sync", decide = function() end }, "d.lua", "d")
t.like(perr, "decision_log: must be \"async\" or \"durable\"", "a bad decision_log names the field and the choices")
_, perr = policies.check({ name = "d", decision_log = "durable", on = "x.y", handle = function() end }, "d.lua", "d")
t.like(perr, "decision_log: applies to decide", "decision_log without decide is refused")

-- the configuration keys
local function env(vars) return function(k) return vars[k] end end
local cfg = assert(config.load({ file = "/nonexistent/steward.lua", getenv = env({}) }))
t.ok(cfg.decision_log == "async" and cfg.decision_log_window == 0.1, "defaults: async, a 100 ms window")
cfg = assert(config.load({ file = "/nonexistent/steward.lua",
  getenv = env({ STEWARD_DECISION_LOG = "durable", STEWARD_DECISION_LOG_WINDOW = "250ms" }) }))
t.ok(cfg.decision_log == "durable" and cfg.decision_log_window == 0.25, "set from the environment")
local _, cerr = config.load({ file = "/nonexistent/steward.lua", getenv = env({ STEWARD_DECISION_LOG = "sometimes" }) })
t.like(cerr, "decision_log", "a bad decision_log is refused, naming the key")
_, cerr = config.load({ file = "/nonexistent/steward.lua", getenv = env({ STEWARD_DECISION_LOG_WINDOW = "0s" }) })
t.like(cerr, "decision_log_window.*1ms to 10s", "a window out of range is refused, naming the key and the range")

st:close()
if tmp then for _, s in ipairs { "", "-wal", "-shm" } do os.remove(tmp .. s) end end
t.done()
