-- steward.deploy.migrations: check()'s shape, ignores, options and errors (the rule semantics
-- themselves are compared with squawk in tests/e2e/migrations_squawk.t); compatible()'s rules,
-- table-driven; and the steward.sqlparse binding under them.
local t = require "steward.tap"
local migrations = require "steward.deploy.migrations"
local sqlparse = require "steward.sqlparse"

local function rules(list)
  local out = {}
  for _, v in ipairs(list) do out[#out + 1] = v.rule end
  return table.concat(out, " ")
end

-- ---- steward.sqlparse ----

do
  local tree = assert(sqlparse.parse("CREATE TABLE a (id bigint);\n ALTER TABLE a ADD COLUMN b text"))
  t.is(#tree.stmts, 2, "parse: two statements")
  t.ok(tree.stmts[1].stmt.CreateStmt, "parse: node tables as in libpg_query's JSON")
  t.is(tree.stmts[1].location, 0, "parse: the first statement's location is filled in (JSON omits 0)")
  t.is(tree.stmts[2].location, 27, "parse: a statement starts after the previous ';'")
  t.is(tree.stmts[2].len, 33, "parse: a last statement without ';' runs to the end")
  local r, err, info = sqlparse.parse("SELECT 1;\nALTER TABLE t ADD COLUMN;")
  t.is(r, nil, "parse: a syntax error is nil, err")
  t.like(err, "syntax error", "parse: PostgreSQL's message")
  t.is(info.position, 35, "parse: the 1-based character position")
  t.raises(function() sqlparse.parse("SELECT 1;\0DROP TABLE t") end, "NUL byte at offset 9",
    "parse: a NUL byte would hide the rest from the checks: raises")
  t.raises(function() sqlparse.parse(nil) end, "string expected", "parse: sql must be a string")
  local toks = assert(sqlparse.scan("-- hi\nSELECT /* c */ 1"))
  t.is(toks[1].token, "SQL_COMMENT", "scan: comments are tokens")
  t.is(toks[3].token, "C_COMMENT", "scan: block comments too")
  t.is(toks[1].start .. "-" .. toks[1].stop, "0-5", "scan: byte offsets, stop exclusive")
end

-- ---- check ----

do
  local v = assert(migrations.check("SET lock_timeout = '1s';\nSET statement_timeout = '1s';\n" ..
    "CREATE INDEX i ON t (a);\n"))
  t.is(rules(v), "prefer-robust-stmts require-concurrent-index-creation", "check: rule ids")
  t.is_deeply({ v[2].line, v[2].column }, { 3, 1 }, "check: 1-based line and column")
  t.like(v[2].message, "CONCURRENTLY", "check: a message saying what to do")

  v = assert(migrations.check("BEGIN;\nSET LOCAL lock_timeout='1s'; SET LOCAL statement_timeout='1s';\n" ..
    "ALTER TABLE t\n  ADD COLUMN IF NOT EXISTS x text,\n  -- squawk-ignore ban-drop-column\n" ..
    "  DROP COLUMN y,\n  DROP COLUMN z;\nCOMMIT;\n"))
  t.is(rules(v), "ban-drop-column", "ignore: the comment covers the next line only")
  t.is(v[1].line, 7, "ignore: the action's own line, not the statement's")

  v = assert(migrations.check("-- squawk-ignore-file\nDROP TABLE t;\n"))
  t.is(#v, 0, "ignore-file without rules: everything")
  v = assert(migrations.check("-- squawk-ignore nonsense\nSET lock_timeout = '1s';\n"))
  t.is(rules(v), "unused-ignore", "an unknown rule in an ignore comment is reported")

  local sql = "BEGIN;\nSET LOCAL lock_timeout='1s';\nSET LOCAL statement_timeout='1s';\n" ..
    "ALTER TABLE t ADD COLUMN a bigint DEFAULT 0;\nCOMMIT;\n"
  t.is(#assert(migrations.check(sql)), 0, "pg_version default 15: a constant DEFAULT is fine")
  t.is(rules(assert(migrations.check(sql, { pg_version = "10" }))), "adding-field-with-default",
    "pg_version 10: every DEFAULT rewrites")
  t.is(rules(assert(migrations.check(sql, { pg_version = "11" }))), "adding-field-with-default",
    "pg_version 11 is not after 11 (squawk compares versions so)")
  t.is(#assert(migrations.check(sql, { pg_version = "11.0" })), 0, "pg_version 11.0 is")

  v = assert(migrations.check("DROP TABLE t;", { exclude = "prefer-robust-stmts,require-timeout-settings" }))
  t.is(rules(v), "ban-drop-table", "exclude: a string list, aliases expand")
  v = assert(migrations.check("DROP TABLE t;", { exclude = { "ban-drop-table", "prefer-robust-stmts",
    "require-lock-timeout", "require-statement-timeout" } }))
  t.is(#v, 0, "exclude: a table")

  v = assert(migrations.check("SET lock_timeout='1s';\nSET statement_timeout='1s';\n" ..
    "CREATE TABLE a (id bigint);\nALTER TABLE a ADD CONSTRAINT c CHECK (id > 0);\n",
    { assume_in_transaction = true }))
  t.is(#v, 0, "assume_in_transaction: a table created in this transaction needs no NOT VALID")

  local r, err, info = migrations.check("CREATE TABLE ok (a bigint);\nALTER TABLE x ADD COLUMN;\n")
  t.is(r, nil, "check: unparsable SQL is nil, err")
  t.like(err, "syntax error", "check: the parser's message")
  t.is_deeply({ info.line, info.column }, { 2, 25 }, "check: line and column of the error")
  r, err, info = migrations.check("SELECT 'é';\nSELEC 1;")
  t.is_deeply({ info.line, info.column }, { 2, 1 }, "check: positions count characters, not bytes")

  t.raises(function() migrations.check(42) end, "sql: string expected", "check: sql must be a string")
  t.raises(function() migrations.check("", { pg_version = "fifteen" }) end, "opts.pg_version",
    "check: a bad pg_version is named")
  t.raises(function() migrations.check("", { exclude = "no-such-rule" }) end, "unknown rule \"no%-such%-rule\"",
    "check: an unknown rule to exclude is named")
  t.ok(#migrations.RULES >= 30, "RULES lists every rule id")
end

-- ---- compatible ----

local COMPATIBLE = {
  { "add a nullable column", "ALTER TABLE users ADD COLUMN nickname text;" },
  { "add NOT NULL with a default", "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';" },
  { "add an identity column", "ALTER TABLE users ADD COLUMN n bigint NOT NULL GENERATED ALWAYS AS IDENTITY;" },
  { "an index", "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);" },
  { "drop an index", "DROP INDEX CONCURRENTLY users_email_idx;" },
  { "a new table, changed in the same migration",
    "CREATE TABLE audit (id bigint, note text);\nALTER TABLE audit ALTER COLUMN note SET NOT NULL;\n" ..
    "ALTER TABLE audit DROP COLUMN note;\nALTER TABLE audit RENAME TO audits;" },
  { "a column added then made NOT NULL", "ALTER TABLE users ADD COLUMN c text;\nUPDATE users SET c = '';\n" ..
    "ALTER TABLE users ALTER COLUMN c SET NOT NULL;" },
  { "a table created then dropped", "CREATE TABLE tmp (a int);\nDROP TABLE tmp;" },
  { "constraints NOT VALID", "ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0) NOT VALID;" },
  { "set a default", "ALTER TABLE users ALTER COLUMN plan SET DEFAULT 'free';" },
  { "drop NOT NULL", "ALTER TABLE users ALTER COLUMN plan DROP NOT NULL;" },
  { "data only", "UPDATE users SET plan = 'free' WHERE plan IS NULL;" },
}

for _, case in ipairs(COMPATIBLE) do
  local ok, reasons = migrations.compatible(case[2])
  t.is(ok, true, "compatible: " .. case[1])
  if ok ~= true then t.diag(require("steward.json").encode(reasons)) end
end

local BREAKING = {
  { "drop a column", "ALTER TABLE users DROP COLUMN email;", "drop", "users.email" },
  { "drop a table", "DROP TABLE IF EXISTS sessions;", "drop", "sessions" },
  { "drop a view", "DROP VIEW active_users;", "drop", "active_users" },
  { "drop a function", "DROP FUNCTION score(int);", "drop", "score" },
  { "rename a column", "ALTER TABLE users RENAME COLUMN email TO mail;", "rename", "users.email" },
  { "rename a table", "ALTER TABLE public.users RENAME TO customers;", "rename", "public.users" },
  { "rename a type", "ALTER TYPE mood RENAME TO feeling;", "rename", "mood" },
  { "rename an enum value", "ALTER TYPE mood RENAME VALUE 'ok' TO 'fine';", "rename", "mood" },
  { "change a column's type", "ALTER TABLE users ALTER COLUMN age TYPE text;", "type", "users.age" },
  { "add NOT NULL without a default", "ALTER TABLE users ADD COLUMN tenant bigint NOT NULL;", "required", "users.tenant" },
  { "make a column NOT NULL", "ALTER TABLE users ALTER COLUMN plan SET NOT NULL;", "required", "users.plan" },
  { "drop a default", "ALTER TABLE users ALTER COLUMN plan DROP DEFAULT;", "default", "users.plan" },
  { "move to another schema", "ALTER TABLE users SET SCHEMA archive;", "move", "users" },
}

for _, case in ipairs(BREAKING) do
  local ok, reasons = migrations.compatible(case[2])
  t.is(ok, false, "not compatible: " .. case[1])
  local r = reasons and reasons[1] or {}
  t.is_deeply({ r.kind, r.object, r.line }, { case[3], case[4], 1 }, "  reason: " .. case[1])
  t.like(r.message or "", "previous release", "  the message says why: " .. case[1])
end

do
  local ok, reasons = migrations.compatible("ALTER TABLE a ADD COLUMN x text;\nALTER TABLE a DROP COLUMN y,\n" ..
    "  ALTER COLUMN z TYPE bigint;\nDROP TABLE b, c;")
  t.is(ok, false, "several breaking changes")
  local got = {}
  for _, r in ipairs(reasons) do got[#got + 1] = r.kind .. ":" .. r.object .. "@" .. r.line end
  t.is(table.concat(got, " "), "drop:a.y@2 type:a.z@3 drop:b@4 drop:c@4", "each reason, in order, with its line")
  local r, err = migrations.compatible("ALTER TABLE;")
  t.is(r, nil, "compatible: unparsable SQL is nil, err")
  t.like(err, "syntax error", "compatible: the parser's message")
  t.raises(function() migrations.compatible(nil) end, "sql: string expected", "compatible: sql must be a string")
end

-- ---- docs/deploy/migrations.md's first Lua block runs as written ----

do
  local text = assert(require("steward.fs").read("docs/deploy/migrations.md"))
  local code = text:match("```lua\n(.-)```")
  local printed = {}
  local fn = assert(loadstring(code, "=migrations.md"))
  setfenv(fn, setmetatable({ print = function(...) printed[#printed + 1] = table.concat({ ... }, " ") end },
    { __index = _G }))
  local ok, err = pcall(fn)
  t.ok(ok, "docs/deploy/migrations.md: the check/compatible example runs " .. tostring(err))
  t.like(table.concat(printed, "\n"), "adding%-required%-field", "  and prints the violation it describes")
  t.like(table.concat(printed, "\n"), "required accounts.plan 1", "  and the reason it is not compatible")
end

-- ---- from a policy: check and compatible are plain; measure needs the `pg` capability ----

do
  local policies = require "steward.runtime.policies"
  local guards = require "steward.runtime.policy.guards"
  local fs = require "steward.fs"
  require("steward.log").set_level("error") -- the refusal is logged as a warning
  local dir = os.tmpname()
  os.remove(dir)
  assert(fs.mkdir(dir, { parents = true }))
  guards.pg_connections = { app = "postgres://nobody@127.0.0.1:1/app", other = "postgres://x@127.0.0.1:1/x" }
  assert(fs.write(dir .. "/gate.lua", [[
local migrations = require "steward.deploy.migrations"
return { capabilities = { pg = { "app" } },
  decide = function(i)
    local v = migrations.check(i.sql)
    local ok = migrations.compatible(i.sql)
    local r, err = migrations.measure(i.target, i.sql, { connect_timeout = 1 })
    return { rules = #v, compatible = ok, err = err }
  end }
]]))
  local p, err = policies.load_file(dir .. "/gate.lua", "deploy.gate", { grants = { ["deploy.gate"] = { pg = { "app" } } } })
  t.ok(p, "a policy requires steward.deploy.migrations " .. tostring(err))
  if p then
    local sql = "ALTER TABLE t DROP COLUMN c;"
    local out = p.decide({ sql = sql, target = "other" }, { config = p.config })
    t.is(out.rules, 4, "policy: check runs in the sandbox")
    t.is(out.compatible, false, "policy: compatible too")
    t.like(out.err, "capability 'pg' not granted to deploy.gate", "policy: measure on a connection not granted is refused")
    out = p.decide({ sql = sql, target = "app" }, { config = p.config })
    t.ok(out.err and not out.err:find("not granted"), "policy: the granted connection is used (and fails on its own): " .. tostring(out.err))
  end
  os.execute("rm -rf " .. dir)
end

t.done()
