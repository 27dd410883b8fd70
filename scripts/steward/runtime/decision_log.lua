-- The decision log writer: every handler run and every decision becomes a row of the
-- decisions table (steward.runtime.store.decisions reads them). Rows are buffered and written in
-- groups, one multi-row INSERT every few milliseconds, so logging costs the hot path a table
-- insert, not a commit. A decision's id (ref) is a UUIDv7 assigned at once, so
-- POST /v1/decide answers with it before the row is written. A crash can lose the rows of
-- the last few milliseconds; events and their completion records are never at stake.
local json = require "steward.json"
local time = require "steward.time"
local task = require "steward.task"
local crypto = require "steward.crypto"
local taps = require "steward.runtime.taps"
local log = require "steward.log"

local type, ipairs, tostring, min = type, ipairs, tostring, math.min
local format, concat = string.format, table.concat

local M = {}

local FLUSH_DELAY, FLUSH_ROWS = 0.005, 200
local COLS = 12

local L = {}
L.__index = L

-- new{store, mask = {"/input/password", ...}} -> log
function M.new(opts)
  local masks = {}
  for i, path in ipairs(opts.mask or {}) do
    local parts = {}
    for seg in path:gmatch("[^/]+") do parts[#parts + 1] = seg end
    masks[i] = parts
  end
  return setmetatable({ st = opts.store, buf = {}, masks = masks }, L)
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

function L:flush()
  while #self.buf > 0 do
    local buf = self.buf
    self.buf = {}
    for first = 1, #buf, FLUSH_ROWS do
      local last = min(first + FLUSH_ROWS - 1, #buf)
      local values, stmt, n = {}, { false }, 0
      for i = first, last do
        local r = buf[i]
        local marks = {}
        for c = 1, COLS do marks[c] = "$" .. (n + c) end
        values[#values + 1] = "(" .. concat(marks, ",") .. ")"
        stmt[n + 2], stmt[n + 3], stmt[n + 4], stmt[n + 5] = r.ref, r.policy, r.version, r.event_id
        stmt[n + 6], stmt[n + 7], stmt[n + 8], stmt[n + 9] = enc(r.input), r.outcome, enc(r.result), r.error
        stmt[n + 10], stmt[n + 11], stmt[n + 12], stmt[n + 13] = r.duration, enc(r.side_effects), r.time, r.tenant
        n = n + COLS
      end
      stmt.n = n + 1
      stmt[1] = "INSERT INTO decisions (ref, policy, version, event_id, input, outcome, result, error, " ..
        "duration, side_effects, time, tenant) VALUES " .. concat(values, ",")
      local ok, err = self.st:batch({ stmt })
      if not ok then log.error("cannot write decision log rows", { count = last - first + 1, error = err }) end
    end
  end
end

-- record{policy, version, tenant, event_id | input, outcome, result, error, duration, side_effects}
-- -> ref (the decision id)
function L:record(rec)
  rec.ref = rec.ref or crypto.uuidv7()
  rec.time = rec.time or time.now()
  if rec.error ~= nil then rec.error = tostring(rec.error) end
  if #self.masks > 0 then apply_masks(self, rec) end
  taps.publish("decision", rec)
  -- After close() the store is closed too: a late record (a handler cancelled at shutdown
  -- runs again after the restart and is logged then) is not written.
  if self.closed then return rec.ref end
  self.buf[#self.buf + 1] = rec
  if not self.flusher then
    self.flusher = task.spawn({ name = "decision_log.flush" }, function()
      time.sleep(FLUSH_DELAY)
      self:flush()
      self.flusher = nil
    end)
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
