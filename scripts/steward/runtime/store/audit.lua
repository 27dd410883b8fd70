-- steward.runtime.store.audit: the audit log, append-only and hash-chained (docs/audit.md). Who changed
-- what through any door (REPL commands, HTTP mutations, CLI), with the target, digests of the
-- state before and after, and the outcome. Each entry's canonical line names the hash of the
-- entry before it, and its own hash is the SHA-256 of that line, so editing, deleting or
-- reordering entries breaks the chain (steward.runtime.store.audit_chain verifies and signs it).
-- There is deliberately no update or delete here.
local util = require "steward.runtime.store.util"
local crypto = require "steward.crypto"
local json = require "steward.json"
local time = require "steward.time"
local metrics = require "steward.metrics"
require "steward.runtime.store.schema"

local type, error, tostring, tonumber, pairs, ipairs = type, error, tostring, tonumber, pairs, ipairs
local floor, format, concat = math.floor, string.format, table.concat

local M = {}

local MAX_COMMAND = 64 * 1024 -- a pasted script is kept whole up to this, then cut (marked)
local MAX_FIELD = 4096        -- targets, digests, details
-- The chain's first entry names this as its previous hash.
M.GENESIS = string.rep("0", 64)
-- Appends from several tasks or instances race for the next id; the loser reads the head again.
local ATTEMPTS = 200

local m_retries = metrics.counter("steward_audit_append_retries_total",
  "Audit appends that lost the race for the chain's next entry and chained onto the new head", {})

local COLUMNS = "id, time, source, session, uid, role, actor, command, target, before_digest, after_digest, " ..
  "outcome, detail, key_id, sig, prev_hash, hash"

local function str(v, name, required, max)
  if v == nil and not required then return nil end
  if type(v) ~= "string" or (required and v == "") then
    error("audit.append: " .. name .. ": " .. (required and "non-empty " or "") .. "string expected", 3)
  end
  if max and #v > max then v = v:sub(1, max) .. " [cut]" end
  return v
end

-- A canonical string for the line: cjson's escaping of one string is deterministic, and the
-- keys are written by hand in a fixed order (a table's key order is not).
local function jstr(v)
  if v == nil or v == json.null then return "null" end
  return json.encode(tostring(v))
end

local function jint(v)
  if v == nil or v == json.null then return "null" end
  return format("%d", v)
end

-- The time as it is hashed: RFC 3339 UTC with milliseconds (stored times are whole ms).
local function time_text(t)
  local ms = floor(t * 1000 + 0.5)
  local s = floor(ms / 1000)
  return (util.format_rfc3339(s):gsub("Z$", format(".%03dZ", ms - s * 1000)))
end

-- canonical(row) -> the exact bytes whose SHA-256 is the entry's hash (one JSON line, no
-- newline). The auditor's recipe in docs/audit.md relies on prev_hash coming first.
function M.canonical(r)
  return concat({
    '{"prev_hash":', jstr(r.prev_hash),
    ',"id":', jint(r.id),
    ',"time":', jstr(time_text(r.time)),
    ',"source":', jstr(r.source),
    ',"actor":', jstr(r.actor),
    ',"uid":', jint(r.uid),
    ',"role":', jstr(r.role),
    ',"session":', jstr(r.session),
    ',"command":', jstr(r.command),
    ',"target":', jstr(r.target),
    ',"before":', jstr(r.before_digest),
    ',"after":', jstr(r.after_digest),
    ',"outcome":', jstr(r.outcome),
    ',"detail":', jstr(r.detail),
    ',"key_id":', jstr(r.key_id),
    ',"sig":', jstr(r.sig),
    '}' })
end

function M.hash(line) return crypto.hex(crypto.sha256(line)) end

-- digest(v) -> hex SHA-256 of v for the before/after fields: a string as it is, a table as
-- JSON with its keys sorted (so the same state always has the same digest).
local function stable(v, out)
  if type(v) ~= "table" then out[#out + 1] = json.encode(v); return end
  if json.is_array(v) or v[1] ~= nil then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      stable(v[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = json.encode(k) .. ":"
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    stable(x, out)
  end
  out[#out + 1] = "}"
end

function M.digest(v)
  if v == nil then return nil end
  if type(v) == "string" then return crypto.hex(crypto.sha256(v)) end
  local out = {}
  stable(v, out)
  return crypto.hex(crypto.sha256(concat(out)))
end

-- head(st) -> {id, hash} of the newest entry (hash = GENESIS when no entry is chained yet: an
-- empty log, or only entries written before the chain existed) | nil, err
function M.head(st)
  local rows, err = st.db:query("SELECT id, hash, command FROM audit ORDER BY id DESC LIMIT 1")
  if not rows then return nil, err end
  local top = rows[1]
  if not top then return { id = 0, hash = M.GENESIS } end
  if top.hash ~= nil then return { id = top.id, hash = top.hash, command = top.command } end
  local chained
  chained, err = st.db:query("SELECT id FROM audit WHERE hash IS NOT NULL LIMIT 1")
  if not chained then return nil, err end
  if chained[1] then
    return nil, "audit: the newest entry (id " .. top.id .. ") has no hash: the log was altered " ..
      "outside steward (run steward audit verify)"
  end
  return { id = top.id, hash = M.GENESIS }
end

-- append{source, command, outcome, session, uid, role, actor, target, before, after, detail,
-- time, key_id, sig} -> id | nil, err. before/after are digests (see M.digest).
function M.append(st, e)
  util.store_arg(st, "audit.append")
  if type(e) ~= "table" then error("audit.append: entry: table expected, got " .. type(e), 2) end
  local command = str(e.command, "command", true)
  if #command > MAX_COMMAND then command = command:sub(1, MAX_COMMAND) .. "\n-- [cut at 64 KiB]" end
  if e.uid ~= nil and (type(e.uid) ~= "number" or e.uid ~= floor(e.uid)) then
    error("audit.append: uid: integer expected", 2)
  end
  if e.time ~= nil and type(e.time) ~= "number" then error("audit.append: time: number expected", 2) end
  local row = {
    time = floor(util.now(e.time) * 1000 + 0.5) / 1000, -- whole milliseconds: hashed as text
    source = str(e.source, "source", true, 200), session = str(e.session, "session", false, 200),
    uid = e.uid, role = str(e.role, "role", false, 200), actor = str(e.actor, "actor", false, 400),
    command = command, target = str(e.target, "target", false, MAX_FIELD),
    before_digest = str(e.before, "before", false, MAX_FIELD), after_digest = str(e.after, "after", false, MAX_FIELD),
    outcome = str(e.outcome, "outcome", true, 200),
    detail = e.detail ~= nil and str(tostring(e.detail), "detail", false, MAX_FIELD) or nil,
    key_id = str(e.key_id, "key_id", false, 200), sig = str(e.sig, "sig", false, 200),
  }
  local last_err
  for attempt = 1, ATTEMPTS do
    local head, err = M.head(st)
    if not head then return nil, err end
    row.id, row.prev_hash = head.id + 1, head.hash
    if e.sign then -- a checkpoint signs the hash it follows; its target is the entry it covers
      row.key_id, row.sig = e.sign(row.prev_hash)
      row.target = tostring(head.id)
    end
    row.hash = M.hash(M.canonical(row))
    local res, code
    res, err, code = st.db:exec("INSERT INTO audit (" .. COLUMNS .. ") VALUES " ..
      "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
      row.id, row.time, row.source, row.session, row.uid, row.role, row.actor, row.command, row.target,
      row.before_digest, row.after_digest, row.outcome, row.detail, row.key_id, row.sig, row.prev_hash, row.hash)
    if res then return row.id end
    -- The id (primary key) and prev_hash (unique) say that another writer chained onto the same
    -- head first: one chain, no forks. Read the new head and try again after a short pause.
    if code ~= "unique_violation" then return nil, err end
    last_err = err
    m_retries:inc(1)
    time.sleep(crypto.random(1):byte() / 255 * math.min(0.05, 0.002 * attempt))
  end
  return nil, "audit: could not append after " .. ATTEMPTS .. " attempts: " .. tostring(last_err)
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
  local sql = "SELECT " .. COLUMNS .. " FROM audit" ..
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

-- range(st, from_id, limit) -> rows in id order from from_id (every column), for verify/export
function M.range(st, from, limit)
  return st.db:query("SELECT " .. COLUMNS .. " FROM audit WHERE id >= $1 ORDER BY id LIMIT $2", from, limit)
end

M.columns = COLUMNS
return M
