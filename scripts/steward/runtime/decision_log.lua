-- The decision log writer: every handler run and every decision becomes a row of the
-- decisions table (steward.runtime.store.decisions reads them). docs/policies.md, "The
-- decision log", states what each mode guarantees across kill -9.
--
-- async (the default): a row is buffered and the answer goes out at once; a flusher task
-- writes the buffer as multi-row INSERTs a quarter of the loss window after its first row,
-- so a crash loses at most the rows of the last `window` (decision_log_window, 100 ms).
-- When the store falls behind (the oldest unwritten row is older than half the window) a
-- record writes its own row and waits for it: the answers slow down, the window holds.
-- durable (a decision of a policy or a daemon that asks for it): the record waits for its
-- row's commit (the store's group commit shares it with the concurrent ones); the answer
-- never names a decision the log could lose.
--
-- A row is cheap: what a caller already holds as JSON text (the request body, the encoded
-- result) is stored as it is, unless a mask must change it; the INSERT text for a batch
-- size is built once.
local json = require "steward.json"
local time = require "steward.time"
local task = require "steward.task"
local crypto = require "steward.crypto"
local taps = require "steward.runtime.taps"
local log = require "steward.log"

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local concat = table.concat
local now, monotonic = time.now, time.monotonic

local M = {}

M.WINDOW = 0.1       -- seconds: the default loss window of the async mode
local CHUNKS = { 128, 16, 1 } -- rows per INSERT statement (12 parameters each)
local COLS = 12
local INSERT = "INSERT INTO decisions (ref, policy, version, event_id, input, outcome, result, error, " ..
  "duration, side_effects, time, tenant) VALUES "

-- The INSERT of n rows, built once per n.
local sql_cache = {}
local function insert_sql(n)
  local sql = sql_cache[n]
  if sql then return sql end
  local values, p = {}, 0
  for i = 1, n do
    local marks = {}
    for c = 1, COLS do marks[c] = "$" .. (p + c) end
    p = p + COLS
    values[i] = "(" .. concat(marks, ",") .. ")"
  end
  sql = INSERT .. concat(values, ",")
  sql_cache[n] = sql
  return sql
end

local L = {}
L.__index = L

-- new{store, mask = {"/input/password", ...}, mode = "async" | "durable", window = seconds}
function M.new(opts)
  local masks = {}
  for i, path in ipairs(opts.mask or {}) do
    local parts = {}
    for seg in path:gmatch("[^/]+") do parts[#parts + 1] = seg end
    masks[i] = parts
  end
  local mode = opts.mode or "async"
  if mode ~= "async" and mode ~= "durable" then
    error("decision_log.new: mode: \"async\" or \"durable\" expected, got " .. tostring(mode), 2)
  end
  local window = opts.window or M.WINDOW
  if type(window) ~= "number" or window <= 0 then error("decision_log.new: window: seconds > 0 expected", 2) end
  return setmetatable({ st = opts.store, buf = {}, masks = masks, mode = mode, window = window,
                        delay = window / 4 }, L)
end

-- Replaces the values at the mask paths with "***" in a copy of the record's JSON parts.
-- Paths are rooted at the record: /input/password, /result/token.
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  return setmetatable(c, getmetatable(v))
end

local function apply_masks(self, rec)
  for _, parts in ipairs(self.masks) do
    local root = parts[1]
    -- A masked part is encoded again from the masked copy: its text as given would leak.
    rec[root .. "_json"] = nil
    if rec[root] ~= nil and type(rec[root]) == "table" and #parts > 1 then
      rec[root] = deep_copy(rec[root])
      local node = rec[root]
      for i = 2, #parts - 1 do
        node = type(node) == "table" and node[parts[i]] or nil
      end
      if type(node) == "table" and node[parts[#parts]] ~= nil then node[parts[#parts]] = "***" end
    elseif rec[root] ~= nil and #parts == 1 then
      rec[root] = "***"
    end
  end
end

local function enc(v)
  if v == nil then return nil end
  local text = json.encode(v)
  return text or json.encode(tostring(v))
end

-- rows[first..last] as one INSERT statement
local function statement(rows, first, last)
  local stmt, n = { insert_sql(last - first + 1) }, 1
  for i = first, last do
    local r = rows[i]
    stmt[n + 1], stmt[n + 2], stmt[n + 3], stmt[n + 4] = r.ref, r.policy, r.version, r.event_id
    stmt[n + 5], stmt[n + 6] = r.input_json or enc(r.input), r.outcome
    stmt[n + 7], stmt[n + 8] = r.result_json or enc(r.result), r.error
    stmt[n + 9], stmt[n + 10], stmt[n + 11], stmt[n + 12] = r.duration, enc(r.side_effects), r.time, r.tenant
    n = n + COLS
  end
  stmt.n = n
  return stmt
end

-- Writes rows in one batch (one transaction). -> true | nil, err
-- The statements hold CHUNKS[i] rows each, largest first: a few texts in all, so the
-- store's prepared-statement cache keeps them (an INSERT of any row count would be
-- prepared anew, its text evicting the hot statements of other callers).
local function write(st, rows)
  local stmts, first, n = {}, 1, #rows
  for _, size in ipairs(CHUNKS) do
    while n - first + 1 >= size do
      stmts[#stmts + 1] = statement(rows, first, first + size - 1)
      first = first + size
    end
  end
  return st:batch(stmts)
end

-- Writes the buffer until it is empty; one batch in flight at a time.
function L:flush()
  while #self.buf > 0 do
    local rows = self.buf
    self.buf, self.inflight_since, self.buf_since = {}, self.buf_since, nil
    local ok, err = write(self.st, rows)
    if not ok then
      -- Once more with the next batch (a store that went away comes back); a row that
      -- fails twice is dropped and counted, so a bad row cannot wedge the log.
      local again, dropped = {}, 0
      for _, r in ipairs(rows) do
        if r.retried then dropped = dropped + 1 else r.retried = true; again[#again + 1] = r end
      end
      if dropped > 0 then log.error("decision log rows dropped", { count = dropped, error = err }) end
      if #again > 0 then
        log.warn("cannot write decision log rows; retrying", { count = #again, error = err })
        for _, r in ipairs(self.buf) do again[#again + 1] = r end
        self.buf, self.buf_since = again, self.inflight_since
        self.inflight_since = nil
        if self.closed then return end
        time.sleep(self.delay)
      end
    end
    self.inflight_since = nil
  end
end

local function flusher(self)
  time.sleep(self.delay)
  self:flush()
  self.flusher = nil
end

-- record{policy, version, tenant, event_id | input, input_json, outcome, result, result_json,
-- error, duration, side_effects}[, durable] -> ref (the decision id) | nil, err, ref
-- input_json / result_json: the same values as JSON text when the caller has it (stored as
-- is unless a mask applies). durable makes the call wait for the commit of the row; it fails
-- (nil, err, ref) when the row was not written. The log's mode is the default a decide
-- applies (log.mode); handler runs are logged async whatever it says.
function L:record(rec, durable)
  rec.ref = rec.ref or crypto.uuidv7()
  local t = rec.time or now()
  rec.time = t
  if rec.error ~= nil then rec.error = tostring(rec.error) end
  if #self.masks > 0 then apply_masks(self, rec) end
  taps.publish("decision", rec)
  -- After close() the store is closed too: a late record (a handler cancelled at shutdown
  -- runs again after the restart and is logged then) is not written.
  if self.closed then return rec.ref end
  -- The backlog's age on the monotonic clock: a wall clock step must not open the window.
  local m = monotonic()
  local oldest = self.inflight_since or self.buf_since
  if durable or (oldest and m - oldest > self.window / 2) then
    local ok, err = write(self.st, { rec })
    if not ok then return nil, err, rec.ref end
    return rec.ref
  end
  local buf = self.buf
  buf[#buf + 1] = rec
  if not self.buf_since then self.buf_since = m end
  if not self.flusher then
    self.flusher = task.spawn({ name = "decision_log.flush" }, flusher, self)
  end
  return rec.ref
end

-- close(): writes what is buffered (shutdown, before the store closes); later records are
-- not written.
function L:close()
  if self.flusher then self.flusher:join() end
  self:flush()
  self.closed = true
end

return M
