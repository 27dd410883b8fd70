-- steward.deploy.migrations.measure: the locks a migration really takes, on a real PostgreSQL.
-- The target database's schema is copied into a scratch database (pg_dump --schema-only into
-- psql, or CREATE DATABASE ... TEMPLATE when asked), the migration runs there statement by
-- statement, and what each statement locked is read from pg_locks:
--   * statements that run in a transaction run in one (as a migration tool would), and each
--     one's locks are those its backend holds after it that it did not hold before; they are
--     held until that transaction ends, which gives how long;
--   * statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM, ...) run
--     on their own while a second session keeps a snapshot and a share lock on the tables they
--     name, so that they must wait for it half-way; a third session samples their locks while
--     they wait, then the snapshot is released. held_ms is then what the samples saw.
-- Then the scratch database is dropped, also when a statement failed. The copy has no rows:
-- the durations are those of the catalog work, not of rewriting your data; the lock modes and
-- the relations they cover are the point.
local pg = require "steward.pg"
local proc = require "steward.proc"
local task = require "steward.task"
local time = require "steward.time"
local crypto = require "steward.crypto"
local src_util = require "steward.deploy.migrations_source"

local node = src_util.node

local M = {}

-- The DSN with another database name: a URI's path, or a conninfo's dbname (the last one wins).
local function with_dbname(dsn, name)
  if dsn:match("^postgres[q]?[l]?://") then
    local head, rest = dsn:match("^(postgres[%a]*://[^/?]*)(.*)$")
    local query = rest:match("(%?.*)$") or ""
    return head .. "/" .. name .. query
  end
  return dsn .. " dbname='" .. name .. "'"
end
M.with_dbname = with_dbname

local function quote_ident(s) return '"' .. s:gsub('"', '""') .. '"' end

local function has_option(list, name)
  for _, o in ipairs(list or {}) do
    local _, d = node(o)
    if d and d.defname == name then return true end
  end
  return false
end

-- Statements PostgreSQL refuses inside a transaction block.
local function needs_own_transaction(st)
  local k, n = st.kind, st.n
  if k == "IndexStmt" then return n.concurrent == true end
  if k == "DropStmt" then return n.concurrent == true end
  if k == "ReindexStmt" then return has_option(n.params, "concurrently") or n.kind == "REINDEX_OBJECT_SYSTEM" or n.kind == "REINDEX_OBJECT_DATABASE" end
  if k == "VacuumStmt" then return n.is_vacuumcmd == true end
  if k == "CreatedbStmt" or k == "DropdbStmt" or k == "AlterSystemStmt" or k == "CreateTableSpaceStmt"
    or k == "DropTableSpaceStmt" then return true end
  if k == "AlterTableStmt" then
    for _, c in ipairs(n.cmds or {}) do
      local _, cmd = node(c)
      local _, pc = node(cmd and cmd.def)
      if cmd and cmd.subtype == "AT_DetachPartition" and pc and pc.concurrent then return true end
    end
  end
  return false
end

-- The tables a statement names (for the holder's share lock): "schema.rel" strings.
local function relations_of(st)
  local out = {}
  local function add(rv)
    if type(rv) == "table" and rv.relname then
      out[#out + 1] = (rv.schemaname and (quote_ident(rv.schemaname) .. ".") or "") .. quote_ident(rv.relname)
    end
  end
  local n = st.n
  add(n.relation)
  for _, r in ipairs(n.rels or {}) do
    local _, vr = node(r)
    if vr then add(vr.relation) end
  end
  return out
end

-- Relation locks of one backend; the system catalogs' own (PostgreSQL's bookkeeping of any DDL)
-- and the lock this query takes on pg_locks are left out, as are relations known only by
-- number (the new files a rewrite builds, not yet committed: no other session can want them).
local LOCKS_SQL = [[
SELECT l.mode, l.granted, l.relation::regclass::text AS relation
  FROM pg_locks l
 WHERE l.pid = $1 AND l.locktype = 'relation'
   AND NOT EXISTS (SELECT 1 FROM pg_class c
                    WHERE c.oid = l.relation AND c.relnamespace = 'pg_catalog'::regnamespace)]]

local function lock_key(r) return r.relation .. "\0" .. r.mode end

-- A statement's text without the blanks and comments before it.
local function stmt_text(src, st)
  return (src.text:sub(st.start + 1, st.location + st.len):gsub("%s+$", ""))
end

local function ms(seconds) return math.floor(seconds * 100000 + 0.5) / 100 end

-- Copies the schema of the target into the scratch database (already created).
local function copy_schema(dsn, scratch_dsn, opts)
  local dump, err = proc.run{ cmd = { opts.pg_dump or "pg_dump", "--schema-only", "--no-owner",
    "--no-privileges", "--dbname", dsn }, timeout = opts.copy_timeout or "5m", max_output = 256 * 1048576 }
  if not dump then return nil, "pg_dump: " .. tostring(err) end
  if dump.code ~= 0 then return nil, "pg_dump: " .. (dump.stderr:gsub("%s+$", "")) end
  local load
  load, err = proc.run{ cmd = { opts.psql or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname",
    scratch_dsn, "-f", "-" }, stdin = dump.stdout, timeout = opts.copy_timeout or "5m" }
  if not load then return nil, "psql: " .. tostring(err) end
  if load.code ~= 0 then return nil, "psql: " .. (load.stderr:gsub("%s+$", "")) end
  return true
end

-- Runs one statement outside a transaction while holder keeps it waiting half-way and
-- sampler watches its locks.
local function run_alone(conns, st, text, rec, opts)
  local a, holder, sampler = conns.a, conns.holder, conns.sampler
  local rels = relations_of(st)
  if st.kind == "DropStmt" and st.n.removeType == "OBJECT_INDEX" then
    -- DROP INDEX CONCURRENTLY waits for every session using the index's table.
    for _, o in ipairs(st.n.objects or {}) do
      local _, list = node(o)
      local parts = {}
      for _, p in ipairs(src_util.strings(list and list.items)) do parts[#parts + 1] = quote_ident(p) end
      local rows = holder:query("SELECT indrelid::regclass::text AS t FROM pg_index WHERE indexrelid = to_regclass($1)",
        table.concat(parts, "."))
      if rows and rows[1] then rels[#rels + 1] = rows[1].t end
    end
  end
  local ok = holder:query("BEGIN ISOLATION LEVEL REPEATABLE READ")
  if ok then
    ok = holder:query("SELECT 1")
    for _, r in ipairs(rels) do
      if ok then ok = holder:query("SELECT 1 FROM " .. r .. " LIMIT 0") end
    end
  end
  local released = false
  if not ok then
    -- A table the holder cannot read (say it does not exist): the statement runs unheld,
    -- and its own error, if any, is the one reported.
    holder:query("ROLLBACK")
    released = true
  end

  local started = time.monotonic()
  local h = task.spawn(function() return a:query(text) end)
  local seen = {}
  local deadline = started + (opts.sample_timeout or 10)
  local function sample()
    local rows = sampler:query(LOCKS_SQL, conns.a_pid)
    local now = time.monotonic()
    for _, r in ipairs(rows or {}) do
      if r.relation ~= pg.null and not r.relation:match("^%d+$") then
        local key = lock_key(r)
        local s = seen[key]
        if not s then
          s = { mode = r.mode, relation = r.relation, first = now, waited = not r.granted or nil }
          seen[key] = s
          seen[#seen + 1] = s
        end
        s.last = now
      end
    end
    return now
  end
  while h:status() == "running" do
    local now = sample()
    local waiting = sampler:query(
      "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", conns.a_pid)
    local wtype = waiting and waiting[1] and waiting[1].wait_event_type
    -- Waiting on the holder (its snapshot or its share lock), or sampled long enough: let it go.
    -- The statement may have begun waiting after the sample above: sample it once more while it
    -- is surely held, or a loaded machine lets it finish before the next sample sees a lock.
    if not released and (wtype == "Lock" or now > deadline) then
      if wtype == "Lock" then sample() end
      holder:query("COMMIT")
      released = true
    end
    time.sleep(0.002)
  end
  if not released then holder:query("COMMIT") end
  local joined, res, qerr = h:join()
  if not joined then return nil, res end
  local finished = time.monotonic()
  rec.duration_ms = ms(finished - started)
  rec.sampled = #seen > 0
  for _, s in ipairs(seen) do
    rec.locks[#rec.locks + 1] = { mode = s.mode, relation = s.relation, waited = s.waited,
      held_ms = ms((s.last or s.first) - s.first) }
  end
  if not res then return nil, qerr end
  return true
end

function M.measure(dsn, sql, opts)
  local src, perr, info = src_util.parse(sql)
  if not src then
    return nil, ("migration: %s (line %d, column %d)"):format(perr, info.line or 1, info.column or 1)
  end
  local admin, err = pg.connect(dsn, { connect_timeout = opts.connect_timeout or "10s" })
  if not admin then return nil, err end
  local rows
  rows, err = admin:query("SELECT current_database() AS db, current_setting('server_version_num')::int AS v")
  if not rows then admin:close(); return nil, err end
  local target, server = rows[1].db, rows[1].v
  local scratch = opts.scratch or ("steward_scratch_" .. crypto.hex(crypto.random(6)))
  local scratch_dsn = with_dbname(dsn, scratch)
  local report = { database = target, scratch = scratch, server_version = server,
    copied_by = opts.copy == "template" and "template" or "pg_dump", statements = {} }

  local created = false
  local conns = {}
  local function cleanup()
    for _, c in pairs(conns) do if type(c) == "table" and c.close then c:close() end end
    if created then
      local drop = "DROP DATABASE IF EXISTS " .. quote_ident(scratch) .. (server >= 130000 and " WITH (FORCE)" or "")
      local ok, derr = admin:query(drop)
      if not ok then report.cleanup_error = derr end
    end
    admin:close()
  end

  local function fail(e)
    cleanup()
    return nil, e
  end

  if opts.copy == "template" then
    -- TEMPLATE copies rows too, and needs the target without other sessions: ours moves to
    -- the maintenance database first. When others are connected (55006), pg_dump it is.
    admin:close()
    admin, err = pg.connect(with_dbname(dsn, opts.maintenance_db or "postgres"))
    if not admin then return nil, err end
    local ok, code
    ok, err, code = admin:query(("CREATE DATABASE %s TEMPLATE %s"):format(quote_ident(scratch), quote_ident(target)))
    if ok then
      created = true
    elseif code == "55006" then
      report.copied_by, report.copy_note = "pg_dump", "TEMPLATE refused: " .. tostring(err)
    else
      return fail("scratch database: " .. tostring(err))
    end
  end
  if not created then
    local ok
    ok, err = admin:query("CREATE DATABASE " .. quote_ident(scratch) .. " TEMPLATE template0")
    if not ok then return fail("scratch database: " .. tostring(err)) end
    created = true
    ok, err = copy_schema(dsn, scratch_dsn, opts)
    if not ok then return fail("copying the schema: " .. err) end
  end

  for _, name in ipairs({ "a", "holder", "sampler" }) do
    local c
    c, err = pg.connect(scratch_dsn)
    if not c then return fail(err) end
    conns[name] = c
  end
  conns.a_pid = conns.a:backend_pid()
  local timeout = tostring(opts.statement_timeout or "60s"):gsub("'", "''")
  conns.a:query("SET statement_timeout = '" .. timeout .. "'")

  local open, in_tx = false, {}
  local function close_tx()
    if not open then return true end
    local ok, cerr = conns.a:query("COMMIT")
    local now = time.monotonic()
    for _, item in ipairs(in_tx) do
      for _, l in ipairs(item.rec.locks) do l.held_ms = ms(now - item.started) end
    end
    open, in_tx = false, {}
    return ok, cerr
  end

  for _, st in ipairs(src.stmts) do
    local line = src.line_col(st.start)
    local text = stmt_text(src, st)
    local rec = { index = st.index, line = line, kind = st.kind, sql = text, locks = {} }
    report.statements[#report.statements + 1] = rec
    if st.kind == "TransactionStmt" then
      rec.skipped = "steward runs the statements in transactions of its own"
    elseif needs_own_transaction(st) then
      local ok, cerr = close_tx()
      if not ok then rec.error = cerr; break end
      rec.transaction = false
      ok, cerr = run_alone(conns, st, text, rec, opts)
      if not ok then rec.error = cerr; break end
    else
      rec.transaction = true
      if not open then
        local ok, berr = conns.a:query("BEGIN")
        if not ok then rec.error = berr; break end
        open = true
      end
      local before = {}
      for _, r in ipairs(conns.a:query(LOCKS_SQL, conns.a_pid) or {}) do before[lock_key(r)] = true end
      local started = time.monotonic()
      local ok, qerr = conns.a:query(text)
      rec.duration_ms = ms(time.monotonic() - started)
      if not ok then
        rec.error = qerr
        conns.a:query("ROLLBACK")
        open = false
        break
      end
      for _, r in ipairs(conns.a:query(LOCKS_SQL, conns.a_pid) or {}) do
        if not before[lock_key(r)] and r.relation ~= pg.null and not r.relation:match("^%d+$") then
          rec.locks[#rec.locks + 1] = { mode = r.mode, relation = r.relation }
        end
      end
      in_tx[#in_tx + 1] = { rec = rec, started = started }
    end
  end
  local ok, cerr = close_tx()
  if not ok and not report.error then report.error = cerr end
  for _, rec in ipairs(report.statements) do
    if rec.error then report.error = ("statement %d (line %d): %s"):format(rec.index, rec.line, rec.error) end
  end
  cleanup()
  return report
end

return M
