#!/usr/bin/env bash
# steward.deploy.migrations.measure on a real PostgreSQL (tests/support/pg.sh): the locks of
# ALTER TABLE ... ADD COLUMN ... NOT NULL DEFAULT (ACCESS EXCLUSIVE on the table, held to the
# end of its transaction) against CREATE INDEX (SHARE) and CREATE INDEX CONCURRENTLY (SHARE
# UPDATE EXCLUSIVE, sampled while it runs), on a scratch copy of the schema made by pg_dump and
# by TEMPLATE; the target database is left as it was, the scratch one is dropped, also when a
# statement fails. Skipped when PostgreSQL is not installed.
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"

dir=$(mktemp -d)
trap 'pg_stop; rm -rf "$dir"' EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }

cat > "$dir/locks.lua" <<'LUA'
local t = require "steward.tap"
local pg = require "steward.pg"
local migrations = require "steward.deploy.migrations"

local url = arg[1]
local db = assert(pg.connect(url))
assert(db:query("CREATE TABLE accounts (id bigint PRIMARY KEY, email text, plan text)"))
assert(db:query("INSERT INTO accounts SELECT g, 'u' || g || '@example.com', 'free' FROM generate_series(1, 1000) g"))

local function databases()
  local rows = assert(db:query("SELECT datname FROM pg_database WHERE datname LIKE 'steward_scratch_%'"))
  return rows.n
end

-- Locks of statement i as "relation mode" strings.
local function locks(report, i)
  local out = {}
  for _, l in ipairs((report.statements[i] or { locks = {} }).locks) do out[#out + 1] = l.relation .. " " .. l.mode end
  table.sort(out)
  return table.concat(out, ", ")
end
local function has(report, i, want)
  for _, l in ipairs((report.statements[i] or { locks = {} }).locks) do
    if l.relation .. " " .. l.mode == want then return true end
  end
  return false
end

local MIGRATION = [[
SET lock_timeout = '2s';
BEGIN;
ALTER TABLE accounts ADD COLUMN region text NOT NULL DEFAULT 'eu';
CREATE INDEX accounts_plan_idx ON accounts (plan);
COMMIT;
CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);
]]

for _, copy in ipairs({ "pg_dump", "template" }) do
  -- TEMPLATE needs the target database to itself: this script's session leaves it meanwhile.
  if copy == "template" then db:close() end
  local r, err = migrations.measure(url, MIGRATION, { copy = copy ~= "pg_dump" and copy or nil })
  if copy == "template" then db = assert(pg.connect(url)) end
  t.ok(r, copy .. ": measured " .. tostring(err))
  r = r or { statements = {} }
  t.is(r.copied_by, copy, copy .. ": the scratch copy was made by " .. copy)
  t.is(#r.statements, 6, copy .. ": every statement is reported")
  t.is(r.error, nil, copy .. ": no statement failed")
  local add = r.statements[3] or { locks = {} }
  t.ok(has(r, 3, "accounts AccessExclusiveLock"),
    copy .. ": ADD COLUMN ... NOT NULL DEFAULT takes ACCESS EXCLUSIVE on the table: " .. locks(r, 3))
  t.is(add.transaction, true, copy .. ": ... inside the migration's transaction")
  t.ok(add.locks[1] and add.locks[1].held_ms >= add.duration_ms,
    copy .. ": ... held until that transaction ends (held_ms >= its own duration)")
  t.ok(has(r, 4, "accounts ShareLock"), copy .. ": CREATE INDEX takes SHARE on the table: " .. locks(r, 4))
  local cic = r.statements[6] or { locks = {} }
  t.is(cic.transaction, false, copy .. ": CREATE INDEX CONCURRENTLY runs outside a transaction")
  t.ok(cic.sampled, copy .. ": ... and was sampled while it ran")
  t.ok(has(r, 6, "accounts ShareUpdateExclusiveLock"),
    copy .. ": CREATE INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on the table: " .. locks(r, 6))
  t.ok(not has(r, 6, "accounts ShareLock") and not has(r, 6, "accounts AccessExclusiveLock"),
    copy .. ": ... and nothing that blocks writes")
  t.like(r.statements[2].skipped or "", "transactions of its own", copy .. ": BEGIN and COMMIT are steward's own")
  t.is(databases(), 0, copy .. ": the scratch database is dropped")
end

do
  local r = migrations.measure(url, "ALTER TABLE accounts ADD COLUMN x int;", { copy = "template" })
  t.is(r and r.copied_by, "pg_dump", "template while others use the target: pg_dump instead")
  t.like(r and r.copy_note or "", "being accessed by other users", "... saying why")
  t.ok(r and has(r, 1, "accounts AccessExclusiveLock"), "... and measured all the same")
end

local cols = assert(db:query("SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts' ORDER BY 1"))
local names = {}
for _, c in ipairs(cols) do names[#names + 1] = c.column_name end
t.is(table.concat(names, ","), "email,id,plan", "the target database is not migrated")
local idx = assert(db:query("SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'accounts'"))
t.is(idx[1].n, 1, "nor indexed")

local r = assert(migrations.measure(url, "ALTER TABLE accounts ADD COLUMN x int;\nALTER TABLE nowhere ADD COLUMN y int;\n" ..
  "ALTER TABLE accounts ADD COLUMN z int;"))
t.like(r.error or "", "^statement 2 %(line 2%): SQLSTATE 42P01", "a failing statement is the report's error, named")
t.is(#r.statements, 2, "nothing runs after it")
t.ok(has(r, 1, "accounts AccessExclusiveLock"), "what ran before it is measured")
t.is(databases(), 0, "the scratch database is dropped after a failure too")

r = assert(migrations.measure(url, "CREATE INDEX CONCURRENTLY nowhere_idx ON nowhere (a);"))
t.like(r.error or "", "^statement 1 %(line 1%): SQLSTATE 42P01: relation \"nowhere\"",
  "CONCURRENTLY on a missing table: the statement's own error")
t.is(databases(), 0, "and the scratch database is dropped")

local none, err = migrations.measure(url, "ALTER TABLE accounts ADD COLUMN;")
t.is(none, nil, "an unparsable migration is refused")
t.like(err, "syntax error.*line 1, column 32", "... naming where")
none, err = migrations.measure(url:gsub("/steward$", "/no_such_db"), "SELECT 1")
t.is(none, nil, "an unreachable target database is nil, err")
t.like(err, "no_such_db", "... naming it")
t.raises(function() migrations.measure(url, 42) end, "sql: string expected", "measure: sql must be a string")

-- The same from the shell: steward migrations measure --db URL FILE.
local proc = require "steward.proc"
local bin, dir = arg[2], arg[3]
local f = io.open(dir .. "/m.sql", "w")
f:write(MIGRATION)
f:close()
local out = assert(proc.run{ cmd = { bin, "migrations", "measure", "--db", url, dir .. "/m.sql" } })
t.is(out.code, 0, "steward migrations measure: exit 0 " .. out.stderr)
t.like(out.stdout, "m%.sql:3: ALTER TABLE accounts ADD COLUMN region[^\n]*%.%.%.  AccessExclusiveLock on accounts, held [%d.]+ ms\n",
  "  one line per lock: file, line, statement, mode, relation, time held")
t.like(out.stdout, "m%.sql:6: CREATE INDEX CONCURRENTLY [^\n]* ShareUpdateExclusiveLock on accounts, held [%d.]+ ms %(sampled while it ran%)",
  "  statements run alone say they were sampled")
out = assert(proc.run{ cmd = { bin, "migrations", "measure", "--json", "--db", url, dir .. "/m.sql" } })
local rep = require("steward.json").decode(out.stdout)
t.is(rep and #rep.statements, 6, "  --json: the report")
f = io.open(dir .. "/bad.sql", "w")
f:write("ALTER TABLE nowhere ADD COLUMN x int;\n")
f:close()
out = assert(proc.run{ cmd = { bin, "migrations", "measure", "--db", url, dir .. "/bad.sql" } })
t.is(out.code, 1, "  a failing statement: exit 1")
t.like(out.stdout, "FAILED: SQLSTATE 42P01", "  and the statement's error")
t.is(databases(), 0, "  the scratch databases are dropped")
t.done()
LUA

cd "$here" || exit 1
timeout 300 "$BIN" script "$dir/locks.lua" "$PG_URL" "$BIN" "$dir"
