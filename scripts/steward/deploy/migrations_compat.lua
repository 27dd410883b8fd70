-- Backward compatibility of a migration: can the release that ran before it still work against
-- the migrated schema? That release's queries name the tables, columns, types and functions it
-- was written against and insert rows without the columns it does not know. A migration that
-- takes any of those away (drop, rename, retype, move to another schema), or makes a new
-- column mandatory without a default, breaks it; steward.deploy.rollout refuses to roll back
-- past such a migration (rollout.rollback_blocked). Objects the same migration creates are
-- new to the old release too, so changing them is fine.
local src_util = require "steward.deploy.migrations_source"

local node = src_util.node

local M = {}

local DROPPED_OBJECTS = {
  OBJECT_TABLE = "table", OBJECT_VIEW = "view", OBJECT_MATVIEW = "materialized view",
  OBJECT_SEQUENCE = "sequence", OBJECT_TYPE = "type", OBJECT_DOMAIN = "domain",
  OBJECT_FUNCTION = "function", OBJECT_PROCEDURE = "procedure", OBJECT_SCHEMA = "schema",
  OBJECT_FOREIGN_TABLE = "foreign table",
}

local function qualified(rv)
  if not rv then return "?" end
  return rv.schemaname and (rv.schemaname .. "." .. rv.relname) or rv.relname
end

-- The name of a DROP's object: a List of Strings, a TypeName, an ObjectWithArgs or a String.
local function object_name(o)
  local kind, n = node(o)
  if kind == "List" then return table.concat(src_util.strings(n.items), ".") end
  if kind == "TypeName" then return table.concat(src_util.strings(n.names), ".") end
  if kind == "ObjectWithArgs" then return table.concat(src_util.strings(n.objname), ".") end
  if kind == "String" then return n.sval end
  return "?"
end

local function last_part(name) return (name:match("([^.]+)$")) end

-- compatible(sql) -> true | false, reasons | nil, err, info
-- reasons: { {kind =, object =, line =, message =}, ... } in the migration's order.
function M.compatible(sql)
  local src, err, info = src_util.parse(sql)
  if not src then return nil, err, info end
  local reasons = {}
  local created = {} -- names of relations and columns this migration creates: "t", "t.c"
  local function reason(kind, object, offset, message)
    local line = src.line_col(offset)
    reasons[#reasons + 1] = { kind = kind, object = object, line = line, message = message }
  end

  for _, st in ipairs(src.stmts) do
    local k, n = st.kind, st.n
    if k == "CreateStmt" and n.relation then
      created[n.relation.relname] = true
    elseif (k == "ViewStmt" and n.view) or (k == "CreateTableAsStmt" and n.into and n.into.rel) then
      created[(n.view or n.into.rel).relname] = true
    elseif k == "CompositeTypeStmt" and n.typevar then
      created[n.typevar.relname] = true
    elseif k == "CreateEnumStmt" or k == "CreateDomainStmt" then
      local names = src_util.strings(k == "CreateEnumStmt" and n.typeName or n.domainname)
      if #names > 0 then created[names[#names]] = true end
    elseif k == "CreateSeqStmt" and n.sequence then
      created[n.sequence.relname] = true
    elseif k == "CreateFunctionStmt" then
      local names = src_util.strings(n.funcname)
      if #names > 0 then created[names[#names]] = true end
    elseif k == "DropStmt" and DROPPED_OBJECTS[n.removeType] then
      for _, o in ipairs(n.objects or {}) do
        local name = object_name(o)
        if not created[last_part(name)] then
          reason("drop", name, st.start, ("drops %s %s, which the previous release may still use"):format(
            DROPPED_OBJECTS[n.removeType], name))
        end
      end
    elseif k == "RenameStmt" then
      local table_name = n.relation and n.relation.relname
      if n.renameType == "OBJECT_COLUMN" and table_name and not created[table_name]
        and not created[table_name .. "." .. (n.subname or "")] then
        reason("rename", qualified(n.relation) .. "." .. (n.subname or "?"), st.start,
          ("renames column %s.%s to %s: the previous release still uses the old name"):format(
            qualified(n.relation), n.subname or "?", n.newname or "?"))
      elseif (n.renameType == "OBJECT_TABLE" or n.renameType == "OBJECT_VIEW"
          or n.renameType == "OBJECT_MATVIEW") and table_name and not created[table_name] then
        reason("rename", qualified(n.relation), st.start,
          ("renames %s to %s: the previous release still uses the old name"):format(
            qualified(n.relation), n.newname or "?"))
      elseif n.renameType == "OBJECT_TYPE" or n.renameType == "OBJECT_SCHEMA"
          or n.renameType == "OBJECT_FUNCTION" or n.renameType == "OBJECT_DOMAIN" then
        local name = n.subname or object_name(n.object or {})
        if not created[last_part(name)] then
          reason("rename", name, st.start, ("renames %s to %s: the previous release still uses the old name")
            :format(name, n.newname or "?"))
        end
      end
    elseif k == "AlterObjectSchemaStmt" and n.relation and not created[n.relation.relname] then
      reason("move", qualified(n.relation), st.start,
        ("moves %s to schema %s: the previous release looks for it where it was"):format(
          qualified(n.relation), n.newschema or "?"))
    elseif k == "AlterEnumStmt" and n.oldVal then
      local name = table.concat(src_util.strings(n.typeName), ".")
      if not created[last_part(name)] then
        reason("rename", name, st.start, ("renames value %q of %s: the previous release still writes the old one")
          :format(n.oldVal, name))
      end
    elseif k == "AlterTableStmt" and n.relation and n.objtype == "OBJECT_TABLE" then
      local t = n.relation.relname
      local tq = qualified(n.relation)
      for idx, c in ipairs(n.cmds or {}) do
        local _, cmd = node(c)
        local at = src_util.action_at(st, idx)
        local col = cmd and cmd.name
        local new_here = created[t] or (col and created[t .. "." .. col])
        if not cmd or created[t] then
          -- a table made by this migration: the previous release never saw it
        elseif cmd.subtype == "AT_AddColumn" then
          local _, def = node(cmd.def)
          local not_null, default, generated = false, false, false
          for _, cc in ipairs(def and def.constraints or {}) do
            local _, con = node(cc)
            local ct = con and con.contype
            if ct == "CONSTR_NOTNULL" or ct == "CONSTR_PRIMARY" then not_null = true
            elseif ct == "CONSTR_DEFAULT" then default = true
            elseif ct == "CONSTR_GENERATED" or ct == "CONSTR_IDENTITY" then generated = true end
          end
          if def and def.colname then created[t .. "." .. def.colname] = true end
          if not_null and not default and not generated then
            reason("required", tq .. "." .. (def and def.colname or "?"), at,
              ("adds %s.%s NOT NULL without a default: the previous release's inserts omit it and fail")
                :format(tq, def and def.colname or "?"))
          end
        elseif new_here then
          -- a column this migration added
        elseif cmd.subtype == "AT_DropColumn" then
          reason("drop", tq .. "." .. (col or "?"), at,
            ("drops column %s.%s, which the previous release still reads or writes"):format(tq, col or "?"))
        elseif cmd.subtype == "AT_AlterColumnType" then
          reason("type", tq .. "." .. (col or "?"), at,
            ("changes the type of %s.%s: the previous release's queries and parameters expect the old one")
              :format(tq, col or "?"))
        elseif cmd.subtype == "AT_SetNotNull" then
          reason("required", tq .. "." .. (col or "?"), at,
            ("makes %s.%s NOT NULL: the previous release may insert rows without it"):format(tq, col or "?"))
        elseif cmd.subtype == "AT_ColumnDefault" and not cmd.def then
          reason("default", tq .. "." .. (col or "?"), at,
            ("drops the default of %s.%s: the previous release's inserts that rely on it fail or store NULL")
              :format(tq, col or "?"))
        end
      end
    end
  end
  if #reasons == 0 then return true end
  return false, reasons
end

return M
