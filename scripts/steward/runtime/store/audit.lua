-- steward.runtime.store.audit: the audit log, append-only. Who did what through the admin socket
-- (each REPL command, its peer uid, role and outcome), so an incident review can replay it.
-- There is deliberately no update or delete here.
local util = require "steward.runtime.store.util"
require "steward.runtime.store.schema"

local type, error, tostring, floor = type, error, tostring, math.floor

local M = {}

local MAX_COMMAND = 64 * 1024 -- a pasted script is kept whole up to this, then cut (marked)

local function str(v, name, required)
  if v == nil and not required then return nil end
  if type(v) ~= "string" or (required and v == "") then
    error("audit.append: " .. name .. ": " .. (required and "non-empty " or "") .. "string expected", 3)
  end
  return v
end

-- append{source, session, uid, role, command, outcome, detail, time} -> id | nil, err
function M.append(st, e)
  util.store_arg(st, "audit.append")
  if type(e) ~= "table" then error("audit.append: entry: table expected, got " .. type(e), 2) end
  local command = str(e.command, "command", true)
  if #command > MAX_COMMAND then command = command:sub(1, MAX_COMMAND) .. "\n-- [cut at 64 KiB]" end
  if e.uid ~= nil and (type(e.uid) ~= "number" or e.uid ~= floor(e.uid)) then
    error("audit.append: uid: integer expected", 2)
  end
  local res, err = st.db:exec("INSERT INTO audit (time, source, session, uid, role, command, outcome, detail) " ..
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    util.now(e.time), str(e.source, "source", true), str(e.session, "session"), e.uid, str(e.role, "role"),
    command, str(e.outcome, "outcome", true), e.detail ~= nil and tostring(e.detail) or nil)
  if not res then return nil, err end
  return res.rows[1].id
end

-- list{since, until, uid, session, outcome, limit, cursor} -> {entries, next_cursor}, newest first
function M.list(st, f)
  util.store_arg(st, "audit.list")
  f = util.opt_table(f, "audit.list: filter")
  local limit = util.limit_arg(f.limit, "audit.list: limit", 100, 1000)
  local conds, params = {}, {}
  local function add(sql, v)
    params[#params + 1] = v
    conds[#conds + 1] = sql:gsub("%$", "$" .. #params)
  end
  if f.since ~= nil then add("time >= $", util.time_arg(f.since, "audit.list: since")) end
  if f["until"] ~= nil then add("time < $", util.time_arg(f["until"], "audit.list: until")) end
  if f.uid ~= nil then add("uid = $", tonumber(f.uid) or error("audit.list: uid: integer expected", 2)) end
  if f.session ~= nil then add("session = $", str(f.session, "session")) end
  if f.outcome ~= nil then add("outcome = $", str(f.outcome, "outcome")) end
  if f.cursor ~= nil then
    local before = util.cursor_decode("au", f.cursor)
    if not before then return nil, "audit.list: cursor: not a cursor this function returned" end
    add("id < $", before)
  end
  params[#params + 1] = limit + 1
  local sql = "SELECT id, time, source, session, uid, role, command, outcome, detail FROM audit" ..
    (#conds > 0 and (" WHERE " .. table.concat(conds, " AND ")) or "") ..
    " ORDER BY id DESC LIMIT $" .. #params
  local rows, err = st.db:query(sql, unpack(params))
  if not rows then return nil, err end
  local out = {}
  for i = 1, math.min(#rows, limit) do out[i] = rows[i] end
  local next_cursor
  if #rows > limit then next_cursor = util.cursor_encode("au", out[#out].id) end
  return { entries = out, next_cursor = next_cursor }
end

return M
