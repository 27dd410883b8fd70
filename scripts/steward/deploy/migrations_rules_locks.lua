-- squawk's rules about locks and table scans (the ids and conditions of squawk-cli 2.66's
-- default set): what blocks reads or writes on a table that already holds rows. Each entry is
-- {ids = {...}, check = function(ctx)}; ctx is built by steward.deploy.migrations.check.
local src_util = require "steward.deploy.migrations_source"
local nonvolatile = require "steward.deploy.migrations_nonvolatile"

local node = src_util.node

local R = {}

local function rule(id, check) R[#R + 1] = { ids = { id }, check = check } end

-- Each command of each ALTER TABLE: fn(st, cmd, k) with cmd the AlterTableCmd body.
local function each_cmd(ctx, fn)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "AlterTableStmt" and (st.n.objtype == "OBJECT_TABLE") and st.n.relation then
      for k, c in ipairs(st.n.cmds or {}) do
        local kind, cmd = node(c)
        if kind == "AlterTableCmd" then fn(st, cmd, k) end
      end
    end
  end
end
R.each_cmd = each_cmd

-- The constraints of an ADD COLUMN's column definition, as {contype, body}.
local function column_constraints(cmd)
  local out = {}
  local kind, def = node(cmd.def)
  if kind ~= "ColumnDef" then return out end
  for _, c in ipairs(def.constraints or {}) do
    local ck, body = node(c)
    if ck == "Constraint" then out[#out + 1] = body end
  end
  return out
end

local function added_constraint(cmd)
  local kind, body = node(cmd.def)
  if kind == "Constraint" then return body end
end

local function at(st, k, loc)
  return loc and loc >= 0 and loc or src_util.action_at(st, k)
end

-- Tables created inside a transaction of this file: their new constraints and indexes lock
-- nothing anyone else can see yet.
local function tables_created(ctx)
  local set, inside = {}, ctx.assume_tx
  for _, st in ipairs(ctx.stmts) do
    if ctx.is_begin(st) then inside = true
    elseif ctx.is_commit(st) then inside = false
    elseif st.kind == "CreateStmt" and inside and st.n.relation then set[st.n.relation.relname] = true end
  end
  return set
end
R.tables_created = tables_created

-- A DEFAULT that PostgreSQL 11+ stores in the catalog instead of writing into every row.
local function non_volatile(e)
  local kind, n = node(e)
  if kind == "A_Const" or kind == "A_ArrayExpr" then return true end
  if kind == "A_Expr" then
    return n.kind == "AEXPR_OP" and n.lexpr ~= nil and n.rexpr ~= nil
      and non_volatile(n.lexpr) and non_volatile(n.rexpr)
  end
  if kind == "FuncCall" then
    local names = src_util.strings(n.funcname)
    return #names == 1 and not n.args and not n.agg_star and nonvolatile[names[1]] == true
  end
  if kind == "TypeCast" then return non_volatile(n.arg) end
  if kind == "CollateClause" then return non_volatile(n.arg) end
  if kind == "SQLValueFunction" then return n.op == "SVFOP_CURRENT_TIMESTAMP" end
  return false
end

rule("adding-field-with-default", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype ~= "AT_AddColumn" then return end
    for _, c in ipairs(column_constraints(cmd)) do
      if c.contype == "CONSTR_DEFAULT" and c.raw_expr then
        if not (ctx.pg_after(11) and non_volatile(c.raw_expr)) then
          ctx.report("adding-field-with-default", at(st, k, src_util.expr_start(c.raw_expr) or c.location),
            "a column added with a volatile DEFAULT (or before PostgreSQL 11, any DEFAULT) rewrites the table under an ACCESS EXCLUSIVE lock")
        end
      elseif c.contype == "CONSTR_GENERATED" or c.contype == "CONSTR_IDENTITY" then
        ctx.report("adding-field-with-default", at(st, k, c.location),
          "a generated column is computed for every row: the table is rewritten under an ACCESS EXCLUSIVE lock")
      end
    end
  end)
end)

rule("adding-foreign-key-constraint", function(ctx)
  local created = tables_created(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_AddConstraint" then
      local c = added_constraint(cmd)
      if c and c.contype == "CONSTR_FOREIGN" and not c.skip_validation
        and not created[st.n.relation.relname] then
        ctx.report("adding-foreign-key-constraint", at(st, k, c.location),
          "a validated foreign key scans the table under a SHARE ROW EXCLUSIVE lock on both tables: add it NOT VALID, VALIDATE it in another transaction")
      end
    elseif cmd.subtype == "AT_AddColumn" then
      for _, c in ipairs(column_constraints(cmd)) do
        if c.contype == "CONSTR_FOREIGN" then
          ctx.report("adding-foreign-key-constraint", at(st, k, c.location),
            "a column added with REFERENCES takes a SHARE ROW EXCLUSIVE lock on both tables: add the column, then the constraint NOT VALID")
        end
      end
    end
  end)
end)

-- "x IS NOT NULL" over one column: its name.
local function not_null_check_column(e)
  local kind, n = node(e)
  if kind ~= "NullTest" or n.nulltesttype ~= "IS_NOT_NULL" then return nil end
  local ck, ref = node(n.arg)
  if ck ~= "ColumnRef" then return nil end
  local fields = src_util.strings(ref.fields)
  if #fields == 1 and #ref.fields == 1 then return fields[1] end
end

rule("adding-not-nullable-field", function(ctx)
  local pg12 = ctx.pg_at_least(12)
  local checks, validated, external = {}, {}, {}
  each_cmd(ctx, function(st, cmd, k)
    local table = st.n.relation.relname
    if cmd.subtype == "AT_AddConstraint" and pg12 then
      local c = added_constraint(cmd)
      if c and c.skip_validation and c.contype == "CONSTR_CHECK" and c.conname then
        local col = not_null_check_column(c.raw_expr)
        if col then checks[c.conname] = { table = table, column = col } end
      end
    elseif cmd.subtype == "AT_ValidateConstraint" and pg12 and cmd.name then
      local tc = checks[cmd.name]
      if tc and tc.table == table then
        validated[table .. "\0" .. tc.column] = true
      else
        external[table] = true
      end
    elseif cmd.subtype == "AT_SetNotNull" then
      if pg12 and cmd.name and (validated[table .. "\0" .. cmd.name] or external[table]) then return end
      ctx.report("adding-not-nullable-field", at(st, k),
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock: add a CHECK (col IS NOT NULL) NOT VALID, validate it, then SET NOT NULL")
    end
  end)
end)

rule("adding-serial-primary-key-field", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_AddConstraint" then
      local c = added_constraint(cmd)
      if c and c.contype == "CONSTR_PRIMARY" and not c.indexname then
        ctx.report("adding-serial-primary-key-field", at(st, k, c.location),
          "a primary key builds its index under an ACCESS EXCLUSIVE lock: build a unique index CONCURRENTLY, then ADD PRIMARY KEY USING INDEX")
      end
    elseif cmd.subtype == "AT_AddColumn" then
      for _, c in ipairs(column_constraints(cmd)) do
        if c.contype == "CONSTR_PRIMARY" and not c.indexname then
          ctx.report("adding-serial-primary-key-field", at(st, k, c.location),
            "a column added as PRIMARY KEY builds its index under an ACCESS EXCLUSIVE lock")
        end
      end
    end
  end)
end)

rule("adding-required-field", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype ~= "AT_AddColumn" then return end
    local not_null, default, generated = false, false, false
    for _, c in ipairs(column_constraints(cmd)) do
      if c.contype == "CONSTR_NOTNULL" then not_null = true
      elseif c.contype == "CONSTR_DEFAULT" then default = true
      elseif c.contype == "CONSTR_GENERATED" or c.contype == "CONSTR_IDENTITY" then generated = true end
    end
    if not_null and not default and not generated then
      ctx.report("adding-required-field", at(st, k),
        "a NOT NULL column without a DEFAULT fails on a table with rows, and inserts of the running release (which omit it) fail")
    end
  end)
end)

rule("changing-column-type", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_AlterColumnType" then
      ctx.report("changing-column-type", at(st, k),
        "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock, and clients reading the column may break")
    end
  end)
end)

rule("constraint-missing-not-valid", function(ctx)
  -- VALIDATE in the same transaction as the ADD ... NOT VALID gains nothing.
  local inside, not_valid = ctx.assume_tx, {}
  for _, st in ipairs(ctx.stmts) do
    if ctx.is_begin(st) then
      if not inside then not_valid = {} end
      inside = true
    elseif ctx.is_commit(st) then
      inside = false
    elseif st.kind == "AlterTableStmt" and st.n.objtype == "OBJECT_TABLE" then
      for k, c in ipairs(st.n.cmds or {}) do
        local _, cmd = node(c)
        if cmd and cmd.subtype == "AT_ValidateConstraint" and cmd.name then
          if inside and not_valid[cmd.name] then
            ctx.report("constraint-missing-not-valid", at(st, k),
              "VALIDATE CONSTRAINT in the transaction that added it NOT VALID holds the lock for the whole scan: validate in a separate transaction")
          end
        elseif cmd and cmd.subtype == "AT_AddConstraint" then
          local con = added_constraint(cmd)
          if con and con.skip_validation and con.conname then not_valid[con.conname] = true end
        end
      end
    end
  end
  local created = tables_created(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype ~= "AT_AddConstraint" or created[st.n.relation.relname] then return end
    local c = added_constraint(cmd)
    if not c or c.skip_validation then return end
    if (c.contype == "CONSTR_UNIQUE" or c.contype == "CONSTR_PRIMARY") and c.indexname then return end
    ctx.report("constraint-missing-not-valid", at(st, k),
      "a new constraint is checked against every row while writes are blocked: add it NOT VALID, then VALIDATE CONSTRAINT")
  end)
end)

rule("disallowed-unique-constraint", function(ctx)
  local created = tables_created(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_AddConstraint" then
      local c = added_constraint(cmd)
      if c and c.contype == "CONSTR_UNIQUE" and not c.indexname and not created[st.n.relation.relname] then
        ctx.report("disallowed-unique-constraint", at(st, k, c.location),
          "a UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock: CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX")
      end
    elseif cmd.subtype == "AT_AddColumn" then
      for _, c in ipairs(column_constraints(cmd)) do
        if c.contype == "CONSTR_UNIQUE" then
          ctx.report("disallowed-unique-constraint", at(st, k, c.location),
            "a column added as UNIQUE builds its index under an ACCESS EXCLUSIVE lock")
        end
      end
    end
  end)
end)

rule("require-concurrent-index-creation", function(ctx)
  local created = tables_created(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "IndexStmt" and st.n.relation and not st.n.concurrent
      and not created[st.n.relation.relname] then
      ctx.report("require-concurrent-index-creation", st.start,
        "CREATE INDEX blocks writes to the table while it builds: use CREATE INDEX CONCURRENTLY")
    end
  end
end)

rule("require-concurrent-index-deletion", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "DropStmt" and st.n.removeType == "OBJECT_INDEX" and not st.n.concurrent then
      ctx.report("require-concurrent-index-deletion", st.start,
        "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table: use DROP INDEX CONCURRENTLY")
    end
  end
end)

rule("require-concurrent-partition-detach", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_DetachPartition" then
      local _, pc = node(cmd.def)
      if not (pc and pc.concurrent) then
        ctx.report("require-concurrent-partition-detach", at(st, k),
          "DETACH PARTITION takes an ACCESS EXCLUSIVE lock on the parent: use DETACH PARTITION ... CONCURRENTLY")
      end
    end
  end)
end)

rule("require-concurrent-reindex", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "ReindexStmt" and st.n.kind ~= "REINDEX_OBJECT_SYSTEM" then
      local concurrently = false
      for _, p in ipairs(st.n.params or {}) do
        local _, d = node(p)
        if d and d.defname == "concurrently" then concurrently = true end
      end
      if not concurrently then
        ctx.report("require-concurrent-reindex", st.start,
          "REINDEX without CONCURRENTLY blocks reads and writes of the table")
      end
    end
  end
end)

rule("ban-create-domain-with-constraint", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "CreateDomainStmt" and st.n.constraints and #st.n.constraints > 0 then
      local _, c = node(st.n.constraints[1])
      ctx.report("ban-create-domain-with-constraint", c and c.location or st.start,
        "a domain's constraints cannot be changed online: put the constraint on the table's columns")
    end
  end
end)

rule("ban-alter-domain-with-add-constraint", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "AlterDomainStmt" and st.n.subtype == "C" then
      local _, c = node(st.n.def)
      ctx.report("ban-alter-domain-with-add-constraint", c and c.location or st.start,
        "adding a constraint to a domain checks every column of that domain: use table constraints")
    end
  end
end)

-- REPACK exists from PostgreSQL 19: before that squawk stays silent, and so do we.
rule("prefer-repack", function(ctx)
  if not ctx.pg_at_least(19) then return end
  for _, st in ipairs(ctx.stmts) do
    local full = false
    if st.kind == "VacuumStmt" and st.n.is_vacuumcmd then
      for _, o in ipairs(st.n.options or {}) do
        local _, d = node(o)
        if d and d.defname == "full" then full = true end
      end
    end
    if st.kind == "ClusterStmt" or full then
      ctx.report("prefer-repack", st.start,
        "CLUSTER and VACUUM FULL hold an ACCESS EXCLUSIVE lock while they rewrite the table: use REPACK (CONCURRENTLY)")
    end
  end
end)

return R
