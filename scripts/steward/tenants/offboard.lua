-- steward.tenants.offboard: a tenant's data leaves, provably. run(id) suspends the tenant (no
-- new data while it runs), exports every row of it as a signed archive
-- (steward.tenants.offboard_archive), erases those rows in one transaction, and writes a proof
-- to the audit log: counts per table before and after, the digest of each table's exported
-- rows, the archive's SHA-256. Its phases are durable (table tenant_offboards), so a crash
-- resumes where it stopped (resume(), at the daemon's start): nothing is erased before its
-- export is on disk, and nothing is done twice.
local store = require "steward.runtime.store"
local audit = require "steward.runtime.store.audit"
local audit_key = require "steward.runtime.store.audit_key"
local util = require "steward.runtime.store.util"
local archive = require "steward.tenants.offboard_archive"
local suspension = require "steward.tenants.suspension"
local json = require "steward.json"
local fs = require "steward.fs"
local time = require "steward.time"
local log = require "steward.log"

local type, ipairs, pairs, pcall, tostring, tonumber, error = type, ipairs, pairs, pcall, tostring, tonumber, error
local format, unpack = string.format, unpack

local M = {}

store.register_migrations("tenant_offboard", {
  { version = 1, sql = [[CREATE TABLE tenant_offboards (
      tenant TEXT PRIMARY KEY, phase TEXT NOT NULL, started DOUBLE PRECISION NOT NULL,
      archive TEXT, sha256 TEXT, proof TEXT, finished DOUBLE PRECISION)]] },
})

M.ID = "^[a-z0-9][a-z0-9_-]*$"

-- Set by the daemon (configure): the signing key and where archives go.
local conf = { key = nil, dir = "var/exports" }

-- configure{key, dir}: the daemon's audit key and the archives' directory.
function M.configure(opts)
  if type(opts) ~= "table" then error("offboard.configure: opts: table expected", 2) end
  if opts.key ~= nil then conf.key = opts.key end
  if opts.dir ~= nil then conf.dir = opts.dir end
end

-- A test may stop a run between phases (fault(phase) is called after each one commits).
M.fault = nil

-- Tables of the store that are not the tenant's data even though they name it.
local OWN = { tenant_offboards = true, tenant_suspensions = true, tenants = true }

local function tables_with_tenant(st)
  local rows, err
  if st:backend() == "postgres" then
    rows, err = st:sql([[SELECT table_name AS name FROM information_schema.columns
      WHERE column_name = 'tenant' AND table_schema = current_schema() ORDER BY table_name]])
  else
    rows, err = st:sql([[SELECT m.name AS name FROM sqlite_master m, pragma_table_info(m.name) p
      WHERE m.type = 'table' AND p.name = 'tenant' ORDER BY m.name]])
  end
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do out[r.name] = true end
  return out
end

local function has_table(st, name)
  local rows
  if st:backend() == "postgres" then
    rows = st:sql("SELECT 1 AS x FROM information_schema.tables WHERE table_name = $1 AND table_schema = current_schema()", name)
  else
    rows = st:sql("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = $1", name)
  end
  return rows ~= nil and rows[1] ~= nil
end

-- The tenant's rows, table by table: what is exported and what is erased. Each source says how
-- to select its rows (in a stable order) and how to delete them; the order of `deletes` keeps
-- references valid (completions before their events).
local function sources(st, id)
  local list, notes = {}, {}
  local kv_prefix = "tenant:" .. id .. ":"
  local function add(name, select, delete, ...)
    list[#list + 1] = { name = name, select = select, delete = delete, args = { ... } }
  end
  local with_tenant, err = tables_with_tenant(st)
  if not with_tenant then return nil, err end
  if with_tenant.events then
    if has_table(st, "handled") then
      add("handled", "SELECT * FROM handled WHERE seq IN (SELECT seq FROM events WHERE tenant = $1) ORDER BY seq, policy",
        "DELETE FROM handled WHERE seq IN (SELECT seq FROM events WHERE tenant = $1)", id)
    end
    if has_table(st, "dead_letters") then
      add("dead_letters", "SELECT * FROM dead_letters WHERE seq IN (SELECT seq FROM events WHERE tenant = $1) ORDER BY id",
        "DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM events WHERE tenant = $1)", id)
    end
    add("events", "SELECT * FROM events WHERE tenant = $1 ORDER BY seq", "DELETE FROM events WHERE tenant = $1", id)
  end
  if with_tenant.decisions then
    add("decisions", "SELECT * FROM decisions WHERE tenant = $1 ORDER BY id", "DELETE FROM decisions WHERE tenant = $1", id)
  end
  if has_table(st, "kv") then
    add("kv", "SELECT * FROM kv WHERE substr(ns, 1, " .. #kv_prefix .. ") = $1 ORDER BY ns, key",
      "DELETE FROM kv WHERE substr(ns, 1, " .. #kv_prefix .. ") = $1", kv_prefix)
  end
  if with_tenant.api_tokens then -- metadata only: the hashes stay out of the archive
    add("api_tokens", "SELECT id, name, role, tenant, created, revoked FROM api_tokens WHERE tenant = $1 ORDER BY id",
      "DELETE FROM api_tokens WHERE tenant = $1", id)
  end
  if has_table(st, "incidents") then -- an incident is the tenant's when its labels say so
    local like = '%"tenant":"' .. id .. '"%'
    -- LIKE is a first cut ('_' matches any byte): the rows are kept by their exact labels
    -- (incident_ids), and deleted by id.
    add("incidents", "SELECT * FROM incidents WHERE labels LIKE $1 ORDER BY id", nil, like)
    add("incident_timeline", [[SELECT * FROM incident_timeline WHERE incident_id IN
        (SELECT id FROM incidents WHERE labels LIKE $1) ORDER BY incident_id, at, id]], nil, like)
  end
  -- Every other table with a tenant column (billing's invoices, tables added later).
  local known = { events = true, decisions = true, api_tokens = true }
  local names = {}
  for name in pairs(with_tenant) do
    if not known[name] and not OWN[name] then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    add(name, "SELECT * FROM " .. name .. " WHERE tenant = $1", "DELETE FROM " .. name .. " WHERE tenant = $1", id)
  end
  if not with_tenant.invoices then notes[#notes + 1] = "no invoices table (billing not installed): none exported" end
  return list, notes
end

local function plain(row)
  local out = {}
  for k, v in pairs(row) do out[k] = v end
  return out
end

-- An incident is the tenant's when its labels name the tenant exactly.
local function incident_is(row, id)
  local labels = json.decode(row.labels or "")
  return type(labels) == "table" and labels.tenant == id
end

-- incident_ids(st, id) -> set of the ids of the tenant's incidents, and their number
local function incident_ids(st, id)
  local set, n = {}, 0
  local rows = st:sql("SELECT id, labels FROM incidents WHERE labels LIKE $1", '%"tenant":"' .. id .. '"%') or {}
  for _, r in ipairs(rows) do
    if incident_is(r, id) then set[r.id] = true; n = n + 1 end
  end
  return set, n
end

-- Keeps the rows that are the tenant's: incidents and their timelines by the exact label.
local function theirs(s, rows, id, ids)
  if s.name ~= "incidents" and s.name ~= "incident_timeline" then return rows end
  local kept = {}
  for _, r in ipairs(rows) do
    if (s.name == "incidents" and incident_is(r, id)) or (s.name == "incident_timeline" and ids[r.incident_id]) then
      kept[#kept + 1] = r
    end
  end
  return kept
end

local function collect(st, list, id)
  local tables, ids = {}, has_table(st, "incidents") and incident_ids(st, id) or {}
  for _, s in ipairs(list) do
    local rows, err = st:sql(s.select, unpack(s.args))
    if not rows then return nil, s.name .. ": " .. tostring(err) end
    local kept = {}
    for i, r in ipairs(theirs(s, rows, id, ids)) do kept[i] = plain(r) end
    tables[#tables + 1] = { name = s.name, rows = kept }
  end
  return tables
end

local function count(st, s, id, ids)
  if s.name == "incidents" or s.name == "incident_timeline" then
    local rows, err = st:sql(s.select, unpack(s.args))
    if not rows then return nil, err end
    return #theirs(s, rows, id, ids)
  end
  local rows, err = st:sql("SELECT COUNT(*) AS n FROM (" .. s.select .. ") q", unpack(s.args))
  if not rows then return nil, err end
  return tonumber(rows[1].n)
end

local function state_row(st, id)
  local rows, err = st:sql("SELECT tenant, phase, started, archive, sha256, proof, finished FROM tenant_offboards WHERE tenant = $1", id)
  if not rows then return nil, err end
  return rows[1] or false
end

-- status(id [, st]) -> { phase, started, archive, sha256, proof, finished } | false | nil, err
function M.status(id, st)
  st = st or store.default()
  if not st then return nil, "no store" end
  local ok, err = st:migrate()
  if not ok then return nil, err end
  local r
  r, err = state_row(st, id)
  if not r then return r, err end
  local out = {}
  for k, v in pairs(r) do if v ~= json.null then out[k] = v end end
  if out.proof then out.proof = json.decode(out.proof) end
  return out
end

local running = {}

local function export_phase(st, id, row)
  local key = conf.key
  if not key or not key.secret then return nil, "offboard: no signing key (the daemon configures it)" end
  local list, notes = sources(st, id)
  if not list then return nil, notes end
  local tables, err = collect(st, list, id)
  if not tables then return nil, err end
  -- The record itself, from steward.tenants when it is installed.
  local ok, tenants = pcall(require, "steward.tenants")
  if ok and type(tenants) == "table" and tenants.get then
    local rec = tenants.get(id)
    tables[#tables + 1] = { name = "tenant", rows = rec and { rec } or {} }
  end
  local created = util.format_rfc3339(row.started)
  local text, digests, counts, sum = archive.build(id, tables, key, created)
  local okd, derr = fs.mkdir(conf.dir, { parents = true, mode = tonumber("700", 8) })
  if not okd and not fs.exists(conf.dir) then return nil, "cannot create " .. conf.dir .. ": " .. tostring(derr) end
  local path = format("%s/%s-%d.jsonl.zst", conf.dir, id, math.floor(row.started))
  ok, err = archive.write(path, text)
  if not ok then return nil, "cannot write the archive " .. path .. ": " .. tostring(err) end
  local tabs = {}
  for _, t in ipairs(tables) do tabs[t.name] = { before = counts[t.name], digest = digests[t.name] } end
  local proof = { tables = tabs, notes = json.array(notes), archive = path, sha256 = sum, key_id = key.id }
  ok, err = st:sql("UPDATE tenant_offboards SET phase = 'exported', archive = $2, sha256 = $3, proof = $4 WHERE tenant = $1",
    id, path, sum, json.encode(proof))
  if not ok then return nil, err end
  return true
end

local function erase_phase(st, id)
  local r, err = state_row(st, id)
  if not r then return nil, err or "offboard: no state" end
  local proof = json.decode(r.proof)
  local list, notes = sources(st, id)
  if not list then return nil, notes end
  local stmts = {}
  for _, s in ipairs(list) do
    if s.delete then
      local stmt = { s.delete }
      for i, a in ipairs(s.args) do stmt[i + 1] = a end
      stmts[#stmts + 1] = stmt
    end
  end
  if proof.tables.incidents and proof.tables.incidents.before > 0 then
    for iid in pairs((incident_ids(st, id))) do
      stmts[#stmts + 1] = { "DELETE FROM incident_timeline WHERE incident_id = $1", iid }
      stmts[#stmts + 1] = { "DELETE FROM incidents WHERE id = $1", iid }
    end
  end
  stmts[#stmts + 1] = { "UPDATE tenant_offboards SET phase = 'erased' WHERE tenant = $1", id }
  local ok
  ok, err = st:batch(stmts)
  if not ok then return nil, err end
  return true
end

local function proof_phase(st, id)
  local r, err = state_row(st, id)
  if not r then return nil, err or "offboard: no state" end
  local proof = json.decode(r.proof)
  local list
  list, err = sources(st, id)
  if not list then return nil, err end
  local ids = has_table(st, "incidents") and incident_ids(st, id) or {}
  for _, s in ipairs(list) do
    local n
    n, err = count(st, s, id, ids)
    if not n then return nil, err end
    proof.tables[s.name] = proof.tables[s.name] or { before = 0, digest = archive.sha256_hex("") }
    proof.tables[s.name].after = n
  end
  for _, t in pairs(proof.tables) do t.after = t.after or 0 end
  -- One proof entry per offboarding, even when a crash repeats this phase.
  local seen = st:sql("SELECT id FROM audit WHERE command = 'tenant.offboard' AND target = $1 AND outcome = 'ok'", id)
  if not (seen and seen[1]) then
    local before, after = {}, {}
    for name, t in pairs(proof.tables) do before[name] = t.before; after[name] = t.after end
    local id_, aerr = audit.append(st, { source = "tenants", command = "tenant.offboard", target = id,
      before = audit.digest(before), after = audit.digest(after), outcome = "ok", detail = json.encode(proof) })
    if not id_ then return nil, "audit: " .. tostring(aerr) end
  end
  -- The record (steward.tenants) stays, as removed: the id is not given out again.
  local rok, record = pcall(require, "steward.tenants.record")
  if rok and type(record) == "table" and record.change then
    local rec = record.get(st, id)
    if rec and rec.state ~= "removed" then
      local changed, cerr = record.change(st, id, function(r) r.state = "removed"; return true end, "removed")
      if not changed then return nil, "the record: " .. tostring(cerr) end
    end
  end
  local ok
  ok, err = st:sql("UPDATE tenant_offboards SET phase = 'done', proof = $2, finished = $3 WHERE tenant = $1",
    id, json.encode(proof), time.now())
  if not ok then return nil, err end
  return true
end

local PHASES = {
  { from = "exporting", run = export_phase },
  { from = "exported", run = erase_phase },
  { from = "erased", run = proof_phase },
}

-- run(id [, st]) -> status | nil, err: offboards the tenant, or carries on an offboarding a
-- crash interrupted. Call in a task. A finished one answers its status again.
function M.run(id, st)
  if type(id) ~= "string" or not id:match(M.ID) then error("offboard.run: id: a tenant id expected", 2) end
  st = st or store.default()
  if not st then return nil, "no store: the daemon's store is not open" end
  if not conf.key or not conf.key.secret then return nil, "offboard: no signing key (the daemon configures it)" end
  if running[id] then return nil, "tenant " .. id .. " is being offboarded already" end
  running[id] = true
  local ok, res, err = pcall(function()
    local mok, merr = st:migrate()
    if not mok then return nil, merr end
    -- Nothing new may arrive while the data leaves: ingest is refused, handling held.
    local sok, serr = suspension.apply(id, true, "offboarding", st)
    if not sok then return nil, serr end
    local row, rerr = state_row(st, id)
    if row == nil then return nil, rerr end
    if not row then
      local now = time.now()
      mok, merr = st:sql("INSERT INTO tenant_offboards (tenant, phase, started) VALUES ($1, 'exporting', $2)", id, now)
      if not mok then return nil, merr end
      row = { phase = "exporting", started = now }
      log.info("tenant offboarding started", { tenant = id })
    end
    for _, p in ipairs(PHASES) do
      if row.phase == p.from then
        local pok, perr = p.run(st, id, row)
        if not pok then return nil, perr end
        row = state_row(st, id) or row
        if M.fault then M.fault(row.phase, id) end
      end
    end
    log.info("tenant offboarded", { tenant = id, archive = row.archive })
    return M.status(id, st)
  end)
  running[id] = nil
  if not ok then return nil, tostring(res) end
  if res == nil then log.warn("tenant offboarding stopped", { tenant = id, error = tostring(err) }) end
  return res, err
end

-- resume([st]) -> n: carries on every offboarding a crash interrupted (the daemon's start).
function M.resume(st)
  st = st or store.default()
  if not st then return 0 end
  local ok = st:migrate()
  if not ok then return 0 end
  local rows = st:sql("SELECT tenant FROM tenant_offboards WHERE phase <> 'done' ORDER BY started") or {}
  -- A record steward.tenants moved to offboarding before a crash stopped the run's first write.
  if has_table(st, "tenants") then
    local seen = {}
    for _, r in ipairs(rows) do seen[r.tenant] = true end
    for _, r in ipairs(st:sql([[SELECT id FROM tenants WHERE state = 'offboarding'
        AND id NOT IN (SELECT tenant FROM tenant_offboards) ORDER BY updated]]) or {}) do
      if not seen[r.id] then rows[#rows + 1] = { tenant = r.id } end
    end
  end
  for _, r in ipairs(rows) do
    log.info("resuming a tenant offboarding", { tenant = r.tenant })
    local res, err = M.run(r.tenant, st)
    if not res then log.error("tenant offboarding failed", { tenant = r.tenant, error = tostring(err) }) end
  end
  return #rows
end

-- load_key(var_dir) -> key | nil, err (for callers outside the daemon).
function M.load_key(var_dir) return audit_key.load(audit_key.path(var_dir)) end

return M
