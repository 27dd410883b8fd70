-- squawk's rules about transactions and re-runs (squawk-cli 2.66's ids and default set):
-- nesting, a BEGIN never committed, CONCURRENTLY inside a transaction, statements that cannot
-- be re-run after a failure half-way, and the lock_timeout / statement_timeout a slow
-- statement needs. Entries as in migrations_rules_locks.lua.
local src_util = require "steward.deploy.migrations_source"

local node = src_util.node

local R = {}

local function rule(id, check) R[#R + 1] = { ids = { id }, check = check } end

rule("transaction-nesting", function(ctx)
  local open = false
  for _, st in ipairs(ctx.stmts) do
    if ctx.is_begin(st) then
      if ctx.assume_tx then
        ctx.report("transaction-nesting", st.start,
          "BEGIN inside the transaction the migration tool already opened")
      elseif open then
        ctx.report("transaction-nesting", st.start, "BEGIN while a transaction is already open")
      end
      open = true
    elseif ctx.is_commit(st) or ctx.is_rollback(st) then
      if ctx.assume_tx then
        ctx.report("transaction-nesting", st.start,
          "this ends the transaction the migration tool manages")
      elseif not open then
        ctx.report("transaction-nesting", st.start, "COMMIT or ROLLBACK without a transaction")
      end
      open = false
    end
  end
end)

rule("ban-uncommitted-transaction", function(ctx)
  local pending
  for _, st in ipairs(ctx.stmts) do
    if ctx.is_begin(st) then pending = st
    elseif ctx.is_commit(st) or ctx.is_rollback(st) then pending = nil end
  end
  if pending then
    ctx.report("ban-uncommitted-transaction", pending.start,
      "this transaction is never committed or rolled back: add COMMIT")
  end
end)

rule("ban-concurrent-index-creation-in-transaction", function(ctx)
  if #ctx.stmts < 2 then return end -- one statement alone: the tool can run it outside
  local inside = ctx.assume_tx
  for _, st in ipairs(ctx.stmts) do
    if ctx.is_begin(st) then inside = true
    elseif ctx.is_commit(st) then inside = false
    elseif st.kind == "IndexStmt" and st.n.concurrent and inside then
      ctx.report("ban-concurrent-index-creation-in-transaction", st.start,
        "CREATE INDEX CONCURRENTLY cannot run inside a transaction")
    end
  end
end)

-- ---- prefer-robust-stmts ----

local MISSING_IF_EXISTS = "missing IF EXISTS: the migration cannot be re-run after failing part way"
local MISSING_IF_NOT_EXISTS = "missing IF NOT EXISTS: the migration cannot be re-run after failing part way"
local MISSING_TX = "outside a transaction: the migration cannot be re-run after failing part way"

-- The actions of ALTER TABLE as squawk sees them: the parser files RENAME and SET SCHEMA
-- under statements of their own.
local function table_actions(st)
  if st.kind == "AlterTableStmt" and st.n.objtype == "OBJECT_TABLE" then
    local out = {}
    for k, c in ipairs(st.n.cmds or {}) do
      local _, cmd = node(c)
      out[#out + 1] = { cmd = cmd or {}, at = src_util.action_at(st, k) }
    end
    return out
  end
  if st.kind == "RenameStmt" and (st.n.renameType == "OBJECT_TABLE"
      or ((st.n.renameType == "OBJECT_COLUMN")
        and st.n.relationType == "OBJECT_TABLE") or st.n.renameType == "OBJECT_TABCONSTRAINT") then
    return { { cmd = {}, at = st.start } }
  end
  if st.kind == "AlterObjectSchemaStmt" and st.n.objectType == "OBJECT_TABLE" then
    return { { cmd = {}, at = st.start } }
  end
end

rule("prefer-robust-stmts", function(ctx)
  local inside = ctx.assume_tx
  local constraints = {} -- name -> "dropped" | "added"
  for _, st in ipairs(ctx.stmts) do
    local n = st.n
    local actions = table_actions(st)
    if ctx.is_begin(st) then
      inside = true
    elseif ctx.is_commit(st) then
      inside = false
    elseif actions then
      for _, a in ipairs(actions) do
        local cmd, message = a.cmd, MISSING_TX
        local skip = false
        if cmd.subtype == "AT_DropConstraint" then
          if cmd.name then constraints[cmd.name] = "dropped" end
          skip, message = cmd.missing_ok, MISSING_IF_EXISTS
        elseif cmd.subtype == "AT_AddColumn" then
          skip, message = cmd.missing_ok, MISSING_IF_NOT_EXISTS
        elseif cmd.subtype == "AT_ValidateConstraint" then
          skip = cmd.name ~= nil and constraints[cmd.name] ~= nil
        elseif cmd.subtype == "AT_AddConstraint" then
          local _, c = node(cmd.def)
          if c and c.conname and constraints[c.conname] == "dropped" then
            constraints[c.conname] = "added"
            skip = true
          end
        elseif cmd.subtype == "AT_DropColumn" then
          skip, message = cmd.missing_ok, MISSING_IF_EXISTS
        end
        if not skip and not inside then ctx.report("prefer-robust-stmts", a.at, message) end
      end
    elseif st.kind == "IndexStmt" and not n.if_not_exists and n.idxname and (n.concurrent or not inside) then
      ctx.report("prefer-robust-stmts", st.start, MISSING_IF_NOT_EXISTS)
    elseif st.kind == "CreateStmt" and not n.if_not_exists and not inside then
      local temp = n.relation and n.relation.relpersistence == "t"
      if not (temp and n.oncommit == "ONCOMMIT_DROP") then
        ctx.report("prefer-robust-stmts", st.start, MISSING_IF_NOT_EXISTS)
      end
    elseif st.kind == "DropStmt" and not n.missing_ok and not inside
      and (n.removeType == "OBJECT_INDEX" or n.removeType == "OBJECT_TABLE" or n.removeType == "OBJECT_TYPE") then
      ctx.report("prefer-robust-stmts", st.start, MISSING_IF_EXISTS)
    end
  end
end)

-- ---- require-lock-timeout / require-statement-timeout ----

-- Statements that may wait on, or hold, a lock others need: DDL and the maintenance commands.
-- DML and session commands are not (squawk's "possibly slow" statements).
local FAST = {
  TransactionStmt = true, VariableSetStmt = true, VariableShowStmt = true, SelectStmt = true,
  InsertStmt = true, UpdateStmt = true, DeleteStmt = true, MergeStmt = true, CopyStmt = true,
  ExplainStmt = true, DoStmt = true, CallStmt = true, GrantStmt = true, GrantRoleStmt = true,
  PrepareStmt = true, ExecuteStmt = true, DeallocateStmt = true, DeclareCursorStmt = true,
  FetchStmt = true, ClosePortalStmt = true, ListenStmt = true, UnlistenStmt = true,
  NotifyStmt = true, CheckPointStmt = true, DiscardStmt = true, ReassignOwnedStmt = true,
  SecLabelStmt = true, ConstraintsSetStmt = true, PLAssignStmt = true, ReturnStmt = true,
}
local SLOW = {
  IndexStmt = true, ViewStmt = true, RuleStmt = true, DefineStmt = true, CompositeTypeStmt = true,
  CommentStmt = true, ClusterStmt = true, ImportForeignSchemaStmt = true, LoadStmt = true,
  LockStmt = true, RefreshMatViewStmt = true, ReindexStmt = true, TruncateStmt = true,
  RenameStmt = true, DropdbStmt = true, CreatedbStmt = true, CreateTableAsStmt = true,
}

local function has_foreign_key(n)
  for _, e in ipairs(n.tableElts or {}) do
    local kind, body = node(e)
    if kind == "Constraint" and body.contype == "CONSTR_FOREIGN" then return true end
    if kind == "ColumnDef" then
      for _, c in ipairs(body.constraints or {}) do
        local _, cb = node(c)
        if cb and cb.contype == "CONSTR_FOREIGN" then return true end
      end
    end
  end
  return false
end

local function possibly_slow(st)
  local k, n = st.kind, st.n
  if k == "CreateStmt" then return has_foreign_key(n) end
  if k == "VacuumStmt" then return n.is_vacuumcmd == true end -- ANALYZE alone is not
  if k == "SelectStmt" then return n.intoClause ~= nil end     -- SELECT INTO creates a table
  if FAST[k] then return false end
  if SLOW[k] then return true end
  return k:match("^Alter") ~= nil or k:match("^Create") ~= nil or k:match("^Drop") ~= nil
end

-- The lock a statement takes, for the message (the strongest over an ALTER TABLE's actions).
local ORDER = { "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
  "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE" }
local STRENGTH = {}
for i, m in ipairs(ORDER) do STRENGTH[m] = i end

local SUE_CMDS = { AT_ClusterOn = true, AT_DropCluster = true, AT_SetRelOptions = true,
  AT_ResetRelOptions = true, AT_ValidateConstraint = true, AT_SetOptions = true,
  AT_ResetOptions = true, AT_SetStatistics = true }
local SRE_CMDS = { AT_EnableTrig = true, AT_EnableAlwaysTrig = true, AT_EnableReplicaTrig = true,
  AT_DisableTrig = true, AT_EnableTrigAll = true, AT_DisableTrigAll = true,
  AT_EnableTrigUser = true, AT_DisableTrigUser = true }

local function lock_of(st)
  local k, n = st.kind, st.n
  if k == "AlterTableStmt" then
    local best
    for _, c in ipairs(n.cmds or {}) do
      local _, cmd = node(c)
      local m = "ACCESS EXCLUSIVE"
      if cmd and SUE_CMDS[cmd.subtype] then m = "SHARE UPDATE EXCLUSIVE"
      elseif cmd and SRE_CMDS[cmd.subtype] then m = "SHARE ROW EXCLUSIVE"
      elseif cmd and cmd.subtype == "AT_AddConstraint" then
        local _, con = node(cmd.def)
        if con and con.contype == "CONSTR_FOREIGN" then m = "SHARE ROW EXCLUSIVE" end
      end
      if not best or STRENGTH[m] > STRENGTH[best] then best = m end
    end
    return best or "ACCESS EXCLUSIVE"
  end
  if k == "IndexStmt" then return n.concurrent and "SHARE UPDATE EXCLUSIVE" or "SHARE" end
  if k == "DropStmt" and n.removeType == "OBJECT_INDEX" then
    return n.concurrent and "SHARE UPDATE EXCLUSIVE" or "ACCESS EXCLUSIVE"
  end
  if k == "DropStmt" and (n.removeType == "OBJECT_TABLE" or n.removeType == "OBJECT_VIEW") then
    return "ACCESS EXCLUSIVE"
  end
  if k == "CommentStmt" then return "SHARE UPDATE EXCLUSIVE" end
  if k == "ClusterStmt" or k == "TruncateStmt" then return "ACCESS EXCLUSIVE" end
  if k == "RefreshMatViewStmt" then return n.concurrent and "EXCLUSIVE" or "ACCESS EXCLUSIVE" end
  if k == "LockStmt" then
    local modes = { "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE",
      "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE" }
    return modes[n.mode or 8] or "ACCESS EXCLUSIVE"
  end
  if k == "VacuumStmt" then
    for _, o in ipairs(n.options or {}) do
      local _, d = node(o)
      if d and d.defname == "full" then return "ACCESS EXCLUSIVE" end
    end
    return "SHARE UPDATE EXCLUSIVE"
  end
  if k == "ReindexStmt" then
    for _, p in ipairs(n.params or {}) do
      local _, d = node(p)
      if d and d.defname == "concurrently" then return "SHARE UPDATE EXCLUSIVE" end
    end
    return "ACCESS EXCLUSIVE"
  end
  return nil
end
R.lock_of = lock_of
R.possibly_slow = possibly_slow

R[#R + 1] = {
  ids = { "require-lock-timeout", "require-statement-timeout" },
  check = function(ctx)
    local lock_set = not ctx.enabled["require-lock-timeout"]
    local stmt_set = not ctx.enabled["require-statement-timeout"]
    for _, st in ipairs(ctx.stmts) do
      if lock_set and stmt_set then break end
      if st.kind == "VariableSetStmt" and st.n.kind ~= "VAR_RESET" and st.n.kind ~= "VAR_RESET_ALL" then
        if st.n.name == "lock_timeout" then lock_set = true
        elseif st.n.name == "statement_timeout" then stmt_set = true end
      elseif possibly_slow(st) then
        if not lock_set then
          local lock = lock_of(st)
          ctx.report("require-lock-timeout", st.start,
            ("no SET lock_timeout before this statement%s: waiting for its lock queues every query behind it")
              :format(lock and (" (it takes " .. lock .. ")") or ""))
          lock_set = true
        end
        if not stmt_set then
          ctx.report("require-statement-timeout", st.start,
            "no SET statement_timeout before this potentially slow statement")
          stmt_set = true
        end
      end
    end
  end,
}

return R
