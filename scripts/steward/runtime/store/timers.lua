-- steward.runtime.store.timers: durable one-shot timers. A timer is a row; firing it inserts its event
-- under the deterministic id "timer:<id>" and deletes the row in one atomic batch, so a timer
-- fires exactly once even when two tasks (or a crash and a restart) fire it at the same time.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
local events = require "steward.runtime.events"

local type, error, ipairs, tostring, tonumber, concat = type, error, ipairs, tostring, tonumber, table.concat

local M = {}

local BATCH = 200

-- Validates an event template for later: its id is set when it fires, its time defaults to the
-- time it was due.
function M.check_event(ev, what)
  if type(ev) ~= "table" then error(what .. ": event table expected, got " .. type(ev), 3) end
  if ev.id ~= nil then error(what .. ": event.id: set when the event fires; leave it out", 3) end
  local v, err = events.validate(ev, nil, 0)
  if not v then error(what .. ": event." .. err.field .. ": " .. err.reason, 3) end
  local tmpl = { type = v.type, tenant = v.tenant, source = v.source, data = v.data }
  if ev.time ~= nil and ev.time ~= json.null then tmpl.time = v.time end
  return (json.encode(tmpl))
end

function M.after(st, d, ev, opts)
  util.store_arg(st, "timers.after")
  local secs = util.duration_arg(d, "timers.after: d")
  if secs < 0 then error("timers.after: d: non-negative duration expected", 2) end
  local text = M.check_event(ev, "timers.after")
  opts = util.opt_table(opts, "timers.after: opts")
  local depth = opts.depth
  if depth ~= nil then
    if type(depth) ~= "number" or depth ~= math.floor(depth) or depth < 0 then
      error("timers.after: opts.depth: integer >= 0 expected", 2)
    end
    -- The cause depth the event gets when it fires (steward.runtime.policy.emit), kept beside it.
    local tmpl = json.decode(text)
    tmpl.depth = depth
    text = json.encode(tmpl)
  end
  local now = util.now(opts.now)
  -- A key makes arming idempotent: a handler that runs again after a crash arms nothing new.
  local id = opts.key
  if id ~= nil and (type(id) ~= "string" or #id == 0 or #id > 200) then
    error("timers.after: opts.key: string of 1 to 200 bytes expected", 2)
  end
  id = id and ("k:" .. id) or util.uuidv7(now)
  local res, err = st.db:exec("INSERT INTO timers (id, due_at, event, created) VALUES ($1, $2, $3, $4) " ..
    "ON CONFLICT (id) DO NOTHING", id, now + secs, text, now)
  if not res then return nil, err end
  return id
end

function M.cancel(st, id)
  util.store_arg(st, "timers.cancel")
  if type(id) ~= "string" then error("timers.cancel: id: string expected, got " .. type(id), 2) end
  local res, err = st.db:exec("DELETE FROM timers WHERE id = $1", id)
  if not res then return nil, err end
  return res.changes > 0
end

function M.pending(st, opts)
  util.store_arg(st, "timers.pending")
  opts = util.opt_table(opts, "timers.pending: opts")
  local limit = util.limit_arg(opts.limit, "timers.pending: opts.limit", 1000, 100000)
  local rows, err = st.db:query("SELECT id, due_at, event, created FROM timers ORDER BY due_at, id LIMIT $1", limit)
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { id = r.id, due_at = r.due_at, event = json.decode(r.event), created = r.created }
  end
  return out
end

function M.next_due(st)
  util.store_arg(st, "timers.next_due")
  local rows, err = st.db:query("SELECT MIN(due_at) AS t FROM timers")
  if not rows then return nil, err end
  return rows[1] and rows[1].t or nil
end

-- fire_due(st, now) → the events this call fired (events another caller fired are not
-- repeated). Due timers go in groups of BATCH, each group one atomic batch.
function M.fire_due(st, now)
  util.store_arg(st, "timers.fire_due")
  now = util.now(now)
  local fired = {}
  while true do
    local rows, err = st.db:query("SELECT id, due_at, event FROM timers WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2",
      now, BATCH)
    if not rows then return nil, err end
    if #rows == 0 then break end
    local list, texts, ids, marks = {}, {}, {}, {}
    for i, r in ipairs(rows) do
      local tmpl = json.decode(r.event) or {}
      local depth = tonumber(tmpl.depth)
      tmpl.depth = nil
      tmpl.id = "timer:" .. r.id
      if tmpl.time == nil then tmpl.time = r.due_at end
      local ev, verr, text = events.validate(tmpl, i, now)
      if not ev then return nil, "timers: stored event of " .. r.id .. " invalid: " .. tostring(verr.reason) end
      ev.depth = depth
      list[i], texts[i], ids[i] = ev, text, r.id
      marks[i] = "$" .. i
    end
    local stmts = events.insert_statements(list, texts, now)
    local del = { "DELETE FROM timers WHERE id IN (" .. concat(marks, ",") .. ")" }
    for i, id in ipairs(ids) do del[i + 1] = id end
    stmts[#stmts + 1] = del
    local res, berr = st.db:batch(stmts)
    if not res then return nil, berr end
    local new = {}
    for i = 1, #res - 1 do
      for _, row in ipairs(res[i].rows or {}) do new[row.id] = row.seq end
    end
    for _, ev in ipairs(list) do
      if new[ev.id] then
        ev.seq = new[ev.id]
        fired[#fired + 1] = ev
      end
    end
    if #rows < BATCH then break end
  end
  return fired
end

return M
