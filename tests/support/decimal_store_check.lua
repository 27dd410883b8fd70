-- Exact decimals through the store (run by tests/e2e/decimal_store.t on each backend): a
-- {decimal} column (TEXT on SQLite, NUMERIC on PostgreSQL) takes 1,000 values of many scales
-- as decimal.string(d) and gives back text that decimal.new reads as the same value.
-- arg[1]: the store URL (a SQLite path or postgres://...).
local t = require "steward.tap"
local store = require "steward.runtime.store"
local decimal = require "steward.decimal"

local url = assert(arg[1], "usage: decimal_store_check.lua STORE_URL")
local backend = url:match("^postgres") and "postgres" or "sqlite"

store.register_migrations("decimal_check", {
  { version = 1, sql = store.dialects [[
    CREATE TABLE decimal_check (id INTEGER PRIMARY KEY, amount {decimal} NOT NULL, label {text})]] },
})
local st = assert(store.open(url))

-- 1,000 values: every scale 0..30, up to 60 digits, both signs, zero, and the extremes decimal.new
-- accepts (2,000 digits before the point, 2,000 after it, 1,000 significant digits).
math.randomseed(18)
local values = { decimal("0"), decimal("-0.000"), decimal("12.50"), decimal("0.001"), decimal("-0.001"),
                 decimal("1e100"), decimal("-1e-100"), decimal("9007199254740993"),
                 decimal("123456789012345678901234567890.123456789012345678901234567890"),
                 decimal("1e-2000"), decimal("-9e1999"), decimal(string.rep("7", 1000) .. "e-1500") }
while #values < 1000 do
  local n = math.random(1, 60)
  local digits = {}
  for i = 1, n do digits[i] = tostring(math.random(0, 9)) end
  local scale = (#values) % 31
  local text = table.concat(digits) .. "e-" .. scale
  if math.random() < 0.4 then text = "-" .. text end
  values[#values + 1] = decimal(text)
end

local batch = {}
for i, d in ipairs(values) do
  batch[i] = { "INSERT INTO decimal_check (id, amount, label) VALUES ($1, $2, $3)", i, decimal.string(d), "v" .. i }
end
batch[3][3] = "12.50" -- as a caller with d:format(2) would write it
local ok, err = st:batch(batch)
t.ok(ok, backend .. ": 1000 decimals written as strings in one batch " .. tostring(err or ""))

local rows = assert(st:query("SELECT id, amount FROM decimal_check ORDER BY id"))
t.is(#rows, 1000, backend .. ": 1000 rows read back")
local wrong_type, wrong_value = 0, {}
for _, row in ipairs(rows) do
  if type(row.amount) ~= "string" then
    wrong_type = wrong_type + 1
  elseif decimal(row.amount) ~= values[row.id] then
    wrong_value[#wrong_value + 1] = row.id .. ": wrote " .. tostring(values[row.id]) .. ", read " .. row.amount
  end
end
t.is(wrong_type, 0, backend .. ": every amount comes back as text, never a double")
t.is_deeply(wrong_value, {}, backend .. ": every amount reads back as the same decimal")
t.is(decimal.sum(values), decimal.sum((function()
  local l = {}
  for i, row in ipairs(rows) do l[i] = row.amount end
  return l
end)()), backend .. ": the sum of what was read is the sum of what was written")

-- Exact comparisons and lookups in SQL: the column compares as a number on PostgreSQL.
local one = assert(st:query("SELECT amount FROM decimal_check WHERE id = 3"))[1]

-- Round trip again: what was read, written back, reads the same (text is stable).
local again = {}
for i, row in ipairs(rows) do
  again[i] = { "UPDATE decimal_check SET amount = $1 WHERE id = $2", decimal.string(decimal(row.amount)), row.id }
end
assert(st:batch(again))
local rows2 = assert(st:query("SELECT id, amount FROM decimal_check ORDER BY id"))
local drift = 0
for i, row in ipairs(rows2) do
  if decimal(row.amount) ~= decimal(rows[i].amount) then drift = drift + 1 end
end
t.is(drift, 0, backend .. ": read, written back, read again: no drift")

t.ok(decimal(one.amount) == decimal("12.5"), backend .. ": 12.50 reads back equal to 12.5 (compare decimals, not strings)")

if backend == "postgres" then
  local col = assert(st:query("SELECT data_type FROM information_schema.columns " ..
    "WHERE table_name = 'decimal_check' AND column_name = 'amount'"))[1]
  t.is(col.data_type, "numeric", "postgres: {decimal} is NUMERIC")
  t.is(one.amount, "12.50", "postgres: NUMERIC keeps the scale that was written")
  local big = assert(st:query("SELECT id FROM decimal_check WHERE amount > 1e99"))
  t.is(#big, 1, "postgres: the column compares numerically in SQL")
  local sum = assert(st:query("SELECT SUM(amount) AS s FROM decimal_check"))[1]
  t.is(type(sum.s), "number", "postgres: a computed numeric (SUM) is a number, as before; sum decimals in Lua")
else
  local types = assert(st:query("SELECT DISTINCT typeof(amount) AS ty FROM decimal_check"))
  t.is(#types == 1 and types[1].ty, "text", "sqlite: {decimal} is TEXT: no REAL affinity rounds it")
end

-- The caller's side of the contract: a value with no finite decimal form is refused before
-- it reaches the store.
t.raises(function() return decimal.string(decimal(1) / 3) end, "1/3 has no finite decimal form",
  backend .. ": 1/3 cannot be bound; round it first")

st:close()
t.done()
