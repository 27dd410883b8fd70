-- steward.runtime.events: the event log. Validates incoming events, appends them idempotently (an id
-- is stored once), and reads them back by filter, cursor or replay in sequence order.
local json = require "steward.json"
local util = require "steward.runtime.store.util"
require "steward.runtime.store.schema"

local type, pairs, ipairs, error, tostring, concat, min = type, pairs, ipairs, error, tostring, table.concat, math.min
local byte, char, huge = string.byte, string.char, math.huge

local M = {}

local null = json.null
local FIELDS = { id = true, type = true, tenant = true, source = true, time = true, data = true }
local COLUMNS = "seq, id, type, tenant, time, source, data, received, depth"
local CHUNK = 500 -- rows per INSERT: 8 parameters each stays far below both backends' limits

-- A dotted name: segments of [a-z0-9_-] joined by single dots. (Three finds, no
-- per-segment strings: this runs for every ingested event.)
local find, sub = string.find, string.sub
local function dotted(s)
  if s == "" or find(s, "[^a-z0-9_.-]") or find(s, "..", 1, true) then return false end
  return sub(s, 1, 1) ~= "." and sub(s, -1) ~= "."
end

function M.is_type(s) return type(s) == "string" and #s <= 200 and dotted(s) end

-- Event times are seconds since the Unix epoch, from 1970-01-01T00:00:00Z to
-- 9999-12-31T23:59:59Z: a time outside them is a client's bug (-1e300, milliseconds sent
-- as seconds), and the store, cursors and RFC 3339 rendering all assume this range.
local TIME_MIN, TIME_MAX = 0, 253402300799
M.TIME_MIN, M.TIME_MAX = TIME_MIN, TIME_MAX

local function bad(field, reason, index)
  return nil, { field = field, reason = reason, index = index }
end

-- An optional string field: returns ok, value (ok false means the value is wrong).
local function optional_string(v, max)
  if v == nil or v == null then return true, nil end
  if type(v) ~= "string" then return false, "string expected, got " .. type(v) end
  if #v > max then return false, "longer than " .. max .. " bytes" end
  return true, v
end

function M.validate(ev, index, now)
  if type(ev) ~= "table" or json.is_array(ev) then return bad("(event)", "object expected", index) end
  for k in pairs(ev) do
    if not FIELDS[k] then return bad(tostring(k), "unknown field", index) end
  end
  local out = {}
  local t = ev.type
  if t == nil or t == null then return bad("type", "required", index) end
  if type(t) ~= "string" then return bad("type", "string expected, got " .. type(t), index) end
  if #t > 200 then return bad("type", "longer than 200 bytes", index) end
  if not dotted(t) then return bad("type", "dotted name of [a-z0-9_-] segments expected", index) end
  out.type = t

  local id = ev.id
  if id == nil or id == null then
    out.id = util.uuidv7(now)
  elseif type(id) ~= "string" then
    return bad("id", "string expected, got " .. type(id), index)
  elseif #id < 1 or #id > 200 or id:find("[%z\1-\31\127]") then
    return bad("id", "1 to 200 printable bytes expected", index)
  else
    out.id = id
  end

  local ok, v = optional_string(ev.tenant, 200)
  if not ok then return bad("tenant", v, index) end
  out.tenant = v
  ok, v = optional_string(ev.source, 500)
  if not ok then return bad("source", v, index) end
  out.source = v

  local tm = ev.time
  if tm == nil or tm == null then
    out.time = util.now(now)
  elseif type(tm) == "number" then
    if tm ~= tm or tm == huge or tm == -huge then return bad("time", "finite number expected", index) end
    out.time = tm
  elseif type(tm) == "string" then
    local secs, err = util.parse_rfc3339(tm)
    if not secs then return bad("time", err, index) end
    out.time = secs
  else
    return bad("time", "number or RFC 3339 string expected, got " .. type(tm), index)
  end
  if out.time < TIME_MIN or out.time > TIME_MAX then
    return bad("time", "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z (0 to 253402300799 seconds)", index)
  end

  local data = ev.data
  if data == nil or data == null then data = {} end
  if not util.is_object(data) then return bad("data", "JSON object expected", index) end
  local text, err = json.encode(data)
  if not text then return bad("data", err, index) end
  out.data = data
  return out, nil, text
end

-- The INSERT statements (chunked) that add validated events; ON CONFLICT makes a known id a
-- no-op, and RETURNING tells which rows were new.
function M.insert_statements(list, texts, received)
  local stmts = {}
  for first = 1, #list, CHUNK do
    local last = min(first + CHUNK - 1, #list)
    local values, stmt = {}, { false }
    local p = 1
    for i = first, last do
      local e = list[i]
      values[#values + 1] = "($" .. p .. ",$" .. (p + 1) .. ",$" .. (p + 2) .. ",$" .. (p + 3) ..
        ",$" .. (p + 4) .. ",$" .. (p + 5) .. ",$" .. (p + 6) .. ",$" .. (p + 7) .. ")"
      stmt[p + 1], stmt[p + 2], stmt[p + 3], stmt[p + 4] = e.id, e.type, util.nullable(e.tenant), e.time
      stmt[p + 5], stmt[p + 6], stmt[p + 7], stmt[p + 8] = util.nullable(e.source), texts[i], received, e.depth or 0
      p = p + 8
    end
    stmt[1] = "INSERT INTO events (id, type, tenant, time, source, data, received, depth) VALUES " ..
      concat(values, ",") .. " ON CONFLICT (id) DO NOTHING RETURNING id, seq"
    stmts[#stmts + 1] = stmt
  end
  return stmts
end

-- Who hears about events committed inside this process (the daemon's dispatcher): a list
-- of subscribers instead of a hook on the daemon, so no module reaches into the daemon.
local subscribers = {}

-- subscribe(fn(st, events)) -> unsubscribe(): fn hears of every event appended (by a handler,
-- the REPL, a runtime module) once committed, in seq order; events carry their seq.
function M.subscribe(fn)
  if type(fn) ~= "function" then error("events.subscribe: fn: function expected", 2) end
  subscribers[#subscribers + 1] = fn
  return function()
    for i, f in ipairs(subscribers) do
      if f == fn then table.remove(subscribers, i); return true end
    end
    return false
  end
end

-- published(st, events): tells the subscribers of events committed by a caller that wrote
-- them itself (the alerting engine's batches, incidents, SLO alerts).
function M.published(st, fresh)
  if #fresh == 0 then return end
  for _, fn in ipairs(subscribers) do fn(st, fresh) end
end

function M.append(st, list, opts)
  util.store_arg(st, "events.append")
  if type(list) ~= "table" then error("events.append: list: table expected, got " .. type(list), 2) end
  opts = util.opt_table(opts, "events.append: opts")
  local now = util.now(opts.now)
  local depth = opts.depth
  if depth ~= nil and (type(depth) ~= "number" or depth ~= math.floor(depth) or depth < 0) then
    error("events.append: opts.depth: integer >= 0 expected", 2)
  end
  local valid, texts = {}, {}
  if opts.texts then
    -- The caller validated already (M.validate's first and third results).
    valid, texts = list, opts.texts
  else
    for i = 1, #list do
      local ev, err, text = M.validate(list[i], i, now)
      if not ev then return nil, err end
      valid[i], texts[i] = ev, text
    end
  end
  local result = { accepted = 0, duplicates = 0, ids = {}, seqs = {}, duplicate = {} }
  if #valid == 0 then return result end
  if depth then
    for _, ev in ipairs(valid) do ev.depth = depth end
  end
  local res, err = st.db:batch(M.insert_statements(valid, texts, now))
  if not res then return nil, err end
  local new = {}
  for _, r in ipairs(res) do
    for _, row in ipairs(r.rows or {}) do new[row.id] = row.seq end
  end
  local fresh = {}
  for i, ev in ipairs(valid) do
    result.ids[i] = ev.id
    local seq = new[ev.id]
    if seq then
      new[ev.id] = nil -- a second copy of the id in the same list is a duplicate
      result.seqs[i] = seq
      result.duplicate[i] = false
      result.accepted = result.accepted + 1
      fresh[#fresh + 1] = ev
      ev.seq = seq
    else
      result.duplicate[i] = true
      result.duplicates = result.duplicates + 1
    end
  end
  -- Inside the daemon, events appended by handlers and modules go to dispatch now (the HTTP
  -- ingest path passes dispatch = false: it notifies itself).
  if opts.dispatch ~= false then M.published(st, fresh) end
  return result
end

local function row_event(r)
  local data = json.decode(r.data)
  return {
    seq = r.seq, id = r.id, type = r.type, tenant = r.tenant, time = r.time,
    source = r.source, data = data, received = r.received, depth = r.depth,
  }
end
M.row_event = row_event

function M.get(st, id)
  util.store_arg(st, "events.get")
  if type(id) ~= "string" then error("events.get: id: string expected, got " .. type(id), 2) end
  local rows, err = st.db:query("SELECT " .. COLUMNS .. " FROM events WHERE id = $1", id)
  if not rows then return nil, err end
  return rows[1] and row_event(rows[1]) or nil
end

-- The smallest string above every string that starts with prefix (types are ASCII).
local function successor(prefix)
  while #prefix > 0 do
    local b = byte(prefix, #prefix)
    if b < 255 then return prefix:sub(1, -2) .. char(b + 1) end
    prefix = prefix:sub(1, -2)
  end
  return nil
end

-- Builds the WHERE clause shared by query and replay. Parameters are only added for filters
-- that are set: PostgreSQL cannot type a bare "$n IS NULL".
local function where(f, what)
  local conds, params = {}, {}
  local function add(cond, ...)
    local parts = { ... }
    local s = cond:gsub("%?", function()
      params[#params + 1] = table.remove(parts, 1)
      return "$" .. #params
    end)
    conds[#conds + 1] = s
  end
  if f.type ~= nil then
    local t = f.type
    if type(t) ~= "string" then error(what .. ": type: string expected", 3) end
    if t == "*" then
      -- every type
    elseif t:sub(-1) == "*" then
      local prefix = t:sub(1, -2)
      if prefix:find("*", 1, true) or not (prefix:sub(-1) == "." and dotted(prefix:sub(1, -2)) or dotted(prefix)) then
        error(what .. ": type: a dotted name, optionally ending in *, expected", 3)
      end
      local upper = successor(prefix)
      add("type >= ? AND type < ?", prefix, upper)
    else
      if not dotted(t) then error(what .. ": type: a dotted name, optionally ending in *, expected", 3) end
      add("type = ?", t)
    end
  end
  if f.tenant ~= nil then
    if type(f.tenant) ~= "string" then error(what .. ": tenant: string expected", 3) end
    add("tenant = ?", f.tenant)
  end
  local function int(name)
    local v = f[name]
    if v ~= nil and (type(v) ~= "number" or v ~= math.floor(v)) then error(what .. ": " .. name .. ": integer expected", 4) end
    return v
  end
  local after, before = int("after_seq"), int("before_seq")
  local from, to = int("from_seq"), int("to_seq")
  if after then add("seq > ?", after) end
  if before then add("seq < ?", before) end
  if from then add("seq >= ?", from) end
  if to then add("seq <= ?", to) end
  if f.since ~= nil then add("time >= ?", util.time_arg(f.since, what .. ": since")) end
  if f["until"] ~= nil then add("time < ?", util.time_arg(f["until"], what .. ": until")) end
  return conds, params
end

local function select_page(st, conds, params, after, limit)
  local c, p = { unpack(conds) }, { unpack(params) }
  if after then
    p[#p + 1] = after
    c[#c + 1] = "seq > $" .. #p
  end
  p[#p + 1] = limit
  local sql = "SELECT " .. COLUMNS .. " FROM events" .. (#c > 0 and (" WHERE " .. concat(c, " AND ")) or "") ..
    " ORDER BY seq LIMIT $" .. #p
  return st.db:query(sql, unpack(p, 1, #p))
end

function M.query(st, f)
  util.store_arg(st, "events.query")
  f = util.opt_table(f, "events.query: filter")
  local limit = util.limit_arg(f.limit, "events.query: limit", 100, 1000)
  local conds, params = where(f, "events.query")
  local after
  if f.cursor ~= nil then
    after = util.cursor_decode("ev", f.cursor)
    if not after then return nil, "events.query: cursor: not a cursor this function returned" end
  end
  local rows, err = select_page(st, conds, params, after, limit + 1)
  if not rows then return nil, err end
  local out = {}
  for i = 1, min(#rows, limit) do out[i] = row_event(rows[i]) end
  local next_cursor
  if #rows > limit then next_cursor = util.cursor_encode("ev", out[#out].seq) end
  return { events = out, next_cursor = next_cursor }
end

-- Archived segments (steward.archive sets this): replay(f) -> iterator, high; high() -> the
-- highest archived seq. Events up to high are read from the archive only, so rows a crashed
-- archive run left behind in the store are never returned twice.
local archive
function M.set_archive(src) archive = src end

-- An iterator over every matching event in seq order, reading `page` rows at a time, the
-- archived part of the range first. A store error or a bad archive file raises (a for loop
-- cannot see a nil, err).
function M.replay(st, f)
  util.store_arg(st, "events.replay")
  f = util.opt_table(f, "events.replay: filter")
  local page = util.limit_arg(f.page, "events.replay: page", 500, 10000)
  local conds, params = where(f, "events.replay")
  local buf, pos, after, done = {}, 1, nil, false
  local archived
  if archive then
    local high
    archived, high = archive.replay(f)
    if high > 0 then after = high end
  end
  return function()
    if archived then
      local e = archived()
      if e then return e end
      archived = nil
    end
    if pos > #buf then
      if done then return nil end
      local rows, err = select_page(st, conds, params, after, page)
      if not rows then error("events.replay: " .. tostring(err), 2) end
      buf, pos = rows, 1
      if #rows < page then done = true end
      if #rows == 0 then return nil end
      after = rows[#rows].seq
    end
    local r = buf[pos]
    pos = pos + 1
    return row_event(r)
  end
end

function M.purge(st, opts)
  util.store_arg(st, "events.purge")
  if type(opts) ~= "table" or opts.before == nil then error("events.purge: opts.before: time expected", 2) end
  local before = util.time_arg(opts.before, "events.purge: before")
  local res, err = st.db:exec("DELETE FROM events WHERE time < $1", before)
  if not res then return nil, err end
  return res.changes
end

function M.last_seq(st)
  util.store_arg(st, "events.last_seq")
  local rows, err = st.db:query("SELECT MAX(seq) AS s FROM events")
  if not rows then return nil, err end
  local s = rows[1] and rows[1].s
  if type(s) ~= "number" then s = 0 end
  if archive then -- a store emptied by archival still ends where the archive ends
    local high, aerr = archive.high()
    if not high then return nil, aerr end
    if high > s then s = high end
  end
  return s
end

function M.count(st)
  util.store_arg(st, "events.count")
  local rows, err = st.db:query("SELECT COUNT(*) AS n FROM events")
  if not rows then return nil, err end
  return rows[1].n
end

return M
