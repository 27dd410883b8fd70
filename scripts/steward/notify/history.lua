-- Notification history for steward.notify: a store-backed table (notify_history, see
-- notify/schema.lua) or, without a store, an in-process list with the same behaviour that a
-- restart forgets. claim() is the idempotency check: it inserts the "sending" row, or says
-- the key was delivered already, or is being sent by someone else right now.
local json = require "steward.json"

local type, ipairs, setmetatable, tostring = type, ipairs, setmetatable, tostring

local M = {}

local COLUMNS = "id, channel, kind, key, status, attempts, response_status, last_error, " ..
                "summary, lease_until, created, updated, sent_at"

-- A row as callers see it: SQL NULL columns are absent already; drop the lease of a row
-- that is no longer being sent, it means nothing there.
local function public(row)
  if not row then return nil end
  local out = {}
  for k, v in pairs(row) do if v ~= json.null then out[k] = v end end
  if out.status ~= "sending" then out.lease_until = nil end
  return out
end
M.public = public

-- May this claim take the row over? A failed notification may be tried again; one left
-- "sending" only once its lease ran out (its sender crashed or hung: at-least-once).
local function takeable(row, now)
  return row.status == "failed" or (row.status == "sending" and (row.lease_until or 0) < now)
end

---------------------------------------------------------------------------- store backend
local StoreH = {}
StoreH.__index = StoreH

local migrated = setmetatable({}, { __mode = "k" })

function M.for_store(st)
  return setmetatable({ st = st }, StoreH)
end

-- steward.notify may be required after the store was opened: apply our migration then.
function StoreH:ready()
  if migrated[self.st] then return true end
  local ok, err = self.st:migrate()
  if not ok then return nil, "notify: history: " .. tostring(err) end
  migrated[self.st] = true
  return true
end

local function dberr(err) return nil, "notify: history: " .. tostring(err) end

function StoreH:get(channel, key)
  local rows, err = self.st:sql("SELECT " .. COLUMNS .. " FROM notify_history WHERE channel = $1 AND key = $2",
                                channel, key)
  if not rows then return dberr(err) end
  return rows[1] or false
end

-- -> "claimed", row | "duplicate", row | "busy", row | nil, err
function StoreH:claim(c)
  local ok, err = self:ready()
  if not ok then return nil, err end
  local st = self.st
  for _ = 1, 3 do
    local r
    -- A new row already counts the first attempt: one write before the first request, not two.
    r, err = st:sql("INSERT INTO notify_history (channel, kind, key, status, attempts, summary, " ..
                    "lease_until, created, updated) VALUES ($1, $2, $3, 'sending', 1, $4, $5, $6, $6) " ..
                    "ON CONFLICT (channel, key) DO NOTHING RETURNING id",
                    c.channel, c.kind, c.key, c.summary, c.now + c.lease, c.now)
    if not r then return dberr(err) end
    if r.rows and r.rows[1] then
      return "claimed", { id = r.rows[1].id, attempts = 0, channel = c.channel, key = c.key, first_recorded = true }
    end
    local row
    row, err = self:get(c.channel, c.key)
    if row == nil then return nil, err end
    if row then
      if row.status == "sent" then return "duplicate", public(row) end
      if not takeable(row, c.now) then return "busy", public(row) end
      -- The guard repeats the check in SQL: of two senders taking over at once, one wins.
      r, err = st:sql("UPDATE notify_history SET status = 'sending', lease_until = $2, updated = $3 " ..
                      "WHERE id = $1 AND (status = 'failed' OR (status = 'sending' AND lease_until < $3))",
                      row.id, c.now + c.lease, c.now)
      if not r then return dberr(err) end
      if r.changes == 1 then
        row.status = "sending"
        return "claimed", public(row)
      end
    end
    -- lost a race (or the row was purged meanwhile): look again
  end
  return nil, "notify: history: key " .. tostring(c.key) .. " keeps changing under us"
end

function StoreH:attempt(id, n, lease_until, now)
  local r, err = self.st:sql("UPDATE notify_history SET attempts = $2, lease_until = $3, updated = $4 WHERE id = $1",
                             id, n, lease_until, now)
  if not r then return dberr(err) end
  return true
end

function StoreH:finish(id, f)
  local r, err = self.st:sql("UPDATE notify_history SET status = $2, attempts = $3, response_status = $4, " ..
                             "last_error = $5, lease_until = NULL, updated = $6, sent_at = $7 WHERE id = $1",
                             id, f.status, f.attempts, f.response_status, f.last_error, f.now,
                             f.status == "sent" and f.now or nil)
  if not r then return dberr(err) end
  return true
end

function StoreH:query(q)
  local ok, err = self:ready()
  if not ok then return nil, err end
  local where, args = {}, {}
  local function add(cond, v)
    args[#args + 1] = v
    where[#where + 1] = cond:gsub("%?", "$" .. #args)
  end
  if q.channel then add("channel = ?", q.channel) end
  if q.kind then add("kind = ?", q.kind) end
  if q.key then add("key = ?", q.key) end
  if q.status then add("status = ?", q.status) end
  if q.since then add("created >= ?", q.since) end
  if q.before then add("id < ?", q.before) end
  local sql = "SELECT " .. COLUMNS .. " FROM notify_history" ..
              (#where > 0 and (" WHERE " .. table.concat(where, " AND ")) or "") ..
              " ORDER BY id DESC LIMIT " .. q.limit
  local rows
  rows, err = self.st:sql(sql, unpack(args, 1, #args))
  if not rows then return dberr(err) end
  for i, row in ipairs(rows) do rows[i] = public(row) end
  return rows
end

function StoreH:purge(before)
  local ok, err = self:ready()
  if not ok then return nil, err end
  local r
  r, err = self.st:sql("DELETE FROM notify_history WHERE updated < $1 AND status <> 'sending'", before)
  if not r then return dberr(err) end
  return r.changes
end

--------------------------------------------------------------------------- memory backend
local MemH = {}
MemH.__index = MemH

function M.memory()
  return setmetatable({ rows = {}, by_key = {}, next_id = 1 }, MemH)
end

local function copy(row)
  local out = {}
  for k, v in pairs(row) do out[k] = v end
  return out
end

function MemH:claim(c)
  local slot = c.key and (c.channel .. "\0" .. c.key)
  local row = slot and self.by_key[slot]
  if row then
    if row.status == "sent" then return "duplicate", public(copy(row)) end
    if not takeable(row, c.now) then return "busy", public(copy(row)) end
    row.status, row.lease_until, row.updated = "sending", c.now + c.lease, c.now
    return "claimed", public(copy(row))
  end
  row = { id = self.next_id, channel = c.channel, kind = c.kind, key = c.key, status = "sending",
          attempts = 0, summary = c.summary, lease_until = c.now + c.lease, created = c.now,
          updated = c.now }
  self.next_id = self.next_id + 1
  self.rows[#self.rows + 1] = row
  if slot then self.by_key[slot] = row end
  return "claimed", public(copy(row))
end

function MemH:find(id)
  for i = #self.rows, 1, -1 do
    if self.rows[i].id == id then return self.rows[i] end
  end
end

function MemH:attempt(id, n, lease_until, now)
  local row = self:find(id)
  if row then row.attempts, row.lease_until, row.updated = n, lease_until, now end
  return true
end

function MemH:finish(id, f)
  local row = self:find(id)
  if row then
    row.status, row.attempts, row.response_status = f.status, f.attempts, f.response_status
    row.last_error, row.lease_until, row.updated = f.last_error, nil, f.now
    row.sent_at = f.status == "sent" and f.now or nil
  end
  return true
end

function MemH:query(q)
  local out = {}
  for i = #self.rows, 1, -1 do
    local r = self.rows[i]
    if (not q.channel or r.channel == q.channel) and (not q.kind or r.kind == q.kind)
       and (not q.key or r.key == q.key) and (not q.status or r.status == q.status)
       and (not q.since or r.created >= q.since) and (not q.before or r.id < q.before) then
      out[#out + 1] = public(copy(r))
      if #out >= q.limit then break end
    end
  end
  return out
end

function MemH:purge(before)
  local keep, n = {}, 0
  for _, r in ipairs(self.rows) do
    if r.updated < before and r.status ~= "sending" then
      n = n + 1
      if r.key then self.by_key[r.channel .. "\0" .. r.key] = nil end
    else
      keep[#keep + 1] = r
    end
  end
  self.rows = keep
  return n
end

return M
