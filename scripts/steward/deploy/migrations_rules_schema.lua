-- squawk's rules about what a migration does to the schema clients see (squawk-cli 2.66's ids
-- and default set): dropping and renaming, column types to prefer, names PostgreSQL would
-- truncate, columns named twice. Entries as in migrations_rules_locks.lua.
local src_util = require "steward.deploy.migrations_source"
local locks = require "steward.deploy.migrations_rules_locks"

local node, each_cmd = src_util.node, locks.each_cmd

local R = {}

local function rule(id, check) R[#R + 1] = { ids = { id }, check = check } end

local function at(st, k) return src_util.action_at(st, k) end

rule("ban-drop-column", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_DropColumn" then
      ctx.report("ban-drop-column", at(st, k), "dropping a column breaks clients that still read or write it")
    end
  end)
end)

rule("ban-drop-not-null", function(ctx)
  each_cmd(ctx, function(st, cmd, k)
    if cmd.subtype == "AT_DropNotNull" then
      ctx.report("ban-drop-not-null", at(st, k), "dropping NOT NULL lets NULLs reach clients that never expected them")
    end
  end)
end)

rule("ban-drop-table", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "DropStmt" and st.n.removeType == "OBJECT_TABLE" then
      ctx.report("ban-drop-table", st.start, "dropping a table breaks clients that still use it")
    end
  end
end)

rule("ban-drop-database", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "DropdbStmt" then
      ctx.report("ban-drop-database", st.start, "dropping a database breaks every client of it")
    end
  end
end)

rule("ban-truncate-cascade", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "TruncateStmt" and st.n.behavior == "DROP_CASCADE" then
      ctx.report("ban-truncate-cascade", st.start,
        "TRUNCATE ... CASCADE also empties every table with a foreign key to these, and theirs in turn: name the tables instead")
    end
  end
end)

-- ALTER TABLE ... RENAME COLUMN / RENAME TO (squawk counts only ALTER TABLE, not views).
local function is_table_rename(st, what)
  return st.kind == "RenameStmt" and st.n.renameType == what
    and (what == "OBJECT_TABLE" or st.n.relationType == "OBJECT_TABLE")
end

rule("renaming-column", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if is_table_rename(st, "OBJECT_COLUMN") then
      ctx.report("renaming-column", st.start, "renaming a column breaks clients that use the old name")
    end
  end
end)

rule("renaming-table", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if is_table_rename(st, "OBJECT_TABLE") then
      ctx.report("renaming-table", st.start, "renaming a table breaks clients that use the old name")
    end
  end
end)

rule("require-enum-value-ordering", function(ctx)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "AlterEnumStmt" and st.n.newVal and not st.n.oldVal and not st.n.newValNeighbor then
      ctx.report("require-enum-value-ordering", st.start,
        "ADD VALUE without BEFORE or AFTER puts the value last, which may not be the order you sort by")
    end
  end
end)

-- ---- column types (CREATE TABLE columns, ADD COLUMN, ALTER COLUMN TYPE) ----

-- Every column type a statement declares: fn(typename, location).
local function each_type(ctx, fn)
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "CreateStmt" then
      for _, e in ipairs(st.n.tableElts or {}) do
        local kind, col = node(e)
        if kind == "ColumnDef" and col.typeName then fn(col.typeName) end
      end
    end
  end
  each_cmd(ctx, function(_, cmd)
    if cmd.subtype == "AT_AddColumn" or cmd.subtype == "AT_AlterColumnType" then
      local kind, col = node(cmd.def)
      if kind == "ColumnDef" and col.typeName then fn(col.typeName) end
    end
  end)
end

-- Types written with SQL's keyword syntax come out of the parser as pg_catalog.<name>.
local function type_rule(id, message, match)
  rule(id, function(ctx)
    each_type(ctx, function(tn)
      local last, names = src_util.type_of(tn)
      if last and match(last, names, tn) then ctx.report(id, tn.location or 0, message) end
    end)
  end)
end

local INT = { int4 = true, serial = true, serial4 = true, int = true, integer = true }
local SMALLINT = { int2 = true, smallserial = true, serial2 = true, smallint = true }
local SERIAL = { serial = true, serial2 = true, serial4 = true, serial8 = true, smallserial = true, bigserial = true }
local CHAR = { bpchar = true, char = true, character = true }

type_rule("prefer-bigint-over-int", "a 32-bit integer runs out at 2^31: use bigint",
  function(last) return INT[last] end)
type_rule("prefer-bigint-over-smallint", "a 16-bit integer runs out at 32767: use bigint",
  function(last) return SMALLINT[last] end)
type_rule("prefer-identity", "serial types complicate permissions and dumps: use an IDENTITY column",
  function(last) return SERIAL[last] end)
type_rule("ban-char-field", "character(n) pads with blanks and is almost never what is meant: use text or varchar",
  function(last) return CHAR[last:lower()] end)
type_rule("prefer-text-field", "changing a varchar's length later takes an ACCESS EXCLUSIVE lock: use text with a CHECK",
  function(last, _, tn) return last == "varchar" and tn.typmods ~= nil end)
type_rule("prefer-timestamp-tz", "timestamp without time zone drops the UTC offset: use timestamptz",
  function(last, names) return last == "timestamp" and names[1] == "pg_catalog" end)

-- ---- names ----

local MAX_IDENT = 63 -- NAMEDATALEN - 1: PostgreSQL truncates longer names

rule("identifier-too-long", function(ctx)
  local text = ctx.src.text
  for _, t in ipairs(ctx.src.tokens) do
    if t.token == "IDENT" then
      local raw = text:sub(t.start + 1, t.stop)
      local name = raw
      if raw:sub(1, 1) == '"' then name = raw:sub(2, -2):gsub('""', '"')
      elseif raw:sub(1, 2):upper() == 'U&' then name = nil end
      if name and #name > MAX_IDENT then
        ctx.report("identifier-too-long", t.start,
          ("name %q is %d bytes: PostgreSQL truncates it to %d"):format(name, #name, MAX_IDENT))
      end
    end
  end
end)

-- Columns named twice in one list: CREATE TABLE, a view's column list, INSERT's column list,
-- UPDATE's SET (assignments to parts of one column, a[1] and a[2], are fine).
rule("ban-duplicate-column-assignments", function(ctx)
  local function check(items, what)
    local seen = {}
    for _, it in ipairs(items) do
      local name = it.name:sub(1, MAX_IDENT)
      seen[name] = seen[name] or {}
      table.insert(seen[name], it)
    end
    for name, list in pairs(seen) do
      local all_partial = true
      for _, it in ipairs(list) do if not it.partial then all_partial = false end end
      if #list > 1 and not all_partial then
        for _, it in ipairs(list) do
          ctx.report("ban-duplicate-column-assignments", it.location,
            ("column %q is %s more than once"):format(name, what))
        end
      end
    end
  end
  local function targets(list)
    local out = {}
    for _, t in ipairs(list or {}) do
      local kind, rt = node(t)
      if kind == "ResTarget" and rt.name then
        out[#out + 1] = { name = rt.name, location = rt.location or 0, partial = rt.indirection ~= nil }
      end
    end
    return out
  end
  -- The names PostgreSQL gives a SELECT's columns: the alias, else a column's or function's
  -- name, else "?column?" (a * names nothing).
  local function figure(e)
    local kind, n = node(e)
    if kind == "ColumnRef" then
      local last = n.fields and n.fields[#n.fields]
      local lk, lv = node(last)
      if lk == "String" then return lv.sval end
      return nil
    elseif kind == "FuncCall" then
      local names = src_util.strings(n.funcname)
      return names[#names]
    elseif kind == "TypeCast" then
      local inner = figure(n.arg)
      if inner and inner ~= "?column?" then return inner end
      local last = src_util.type_of(n.typeName)
      return last or "?column?"
    end
    return "?column?"
  end
  local function output_names(list)
    local out = {}
    for _, t in ipairs(list or {}) do
      local kind, rt = node(t)
      if kind == "ResTarget" then
        local name = rt.name or figure(rt.val)
        if name then out[#out + 1] = { name = name, location = rt.location or 0 } end
      end
    end
    return out
  end
  for _, st in ipairs(ctx.stmts) do
    if st.kind == "CreateStmt" then
      local cols = {}
      for _, e in ipairs(st.n.tableElts or {}) do
        local kind, col = node(e)
        if kind == "ColumnDef" then cols[#cols + 1] = { name = col.colname, location = col.location or st.start } end
      end
      check(cols, "defined")
    elseif st.kind == "ViewStmt" or (st.kind == "CreateTableAsStmt" and st.n.into) then
      local aliases = st.kind == "ViewStmt" and st.n.aliases or (st.n.into and st.n.into.colNames)
      if aliases then
        local cols = {}
        for _, name in ipairs(src_util.strings(aliases)) do cols[#cols + 1] = { name = name, location = st.start } end
        check(cols, "defined")
      elseif st.kind == "ViewStmt" then
        local _, q = node(st.n.query)
        if q then check(output_names(q.targetList), "defined") end
      end
    elseif st.kind == "SelectStmt" and st.n.intoClause then
      check(output_names(st.n.targetList), "defined")
    elseif st.kind == "InsertStmt" then
      check(targets(st.n.cols), "assigned")
    elseif st.kind == "UpdateStmt" then
      check(targets(st.n.targetList), "assigned")
    end
  end
end)

return R
