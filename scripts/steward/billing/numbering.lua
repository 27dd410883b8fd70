-- steward.billing.numbering: gap-free numbers per series for invoices and credit notes. A number
-- is taken by statements that run inside the caller's batch (one transaction): the row to number
-- is first moved out of its draft state by the caller's own statement; then the series' counter
-- goes up only if that row is now waiting for a number, and the row takes the counter's value.
-- Either the whole batch commits (the counter and the number together) or nothing does, so no
-- number is lost; the counter's row lock (PostgreSQL) or the single writer (SQLite) orders
-- concurrent finalizers, so no number is given twice. Several instances on one PostgreSQL
-- share the counter row.
local type, error, format = type, error, string.format

local M = {}

M.DEFAULT_WIDTH = 6

-- series_name(template, tenant) -> the series: "{tenant}" in the template becomes the tenant's
-- id in capitals ("INV-{tenant}" -> "INV-ACME"), so a tenant's invoices can count on their own.
function M.series_name(template, tenant)
  if type(template) ~= "string" then error("numbering.series_name: template: string expected", 2) end
  return (template:gsub("{tenant}", function() return (tenant or ""):upper() end))
end

-- format_number(series, seq, width) -> "INV-000042"
function M.format_number(series, seq, width)
  return format("%s-%0" .. (width or M.DEFAULT_WIDTH) .. "d", series, seq)
end

-- check_series(v, field) -> true | nil, "field: reason"
function M.check_series(v, field)
  if type(v) ~= "string" or not v:match("^[%w{}_.-]+$") or #v > 40 then
    return nil, field .. ": a series name of letters, digits, '_', '.', '-' (and {tenant}) expected"
  end
  return true
end

-- lock_statement(series) -> the statement a numbering batch starts with: it takes the series'
-- row lock before any row of the batch's own (PostgreSQL), so that two instances' write groups
-- (several units in one transaction) wait for each other in one order instead of each holding
-- an invoice the other's next unit needs (a deadlock). A no-op on SQLite's single writer.
function M.lock_statement(series)
  return { "UPDATE billing_numbering SET last = last WHERE series = $1", series }
end

-- statements(backend, tbl, id, series, width) -> the two statements that number row `id` of
-- table `tbl` (which must have columns state, seq, number) once the caller's earlier statement
-- in the same batch has set its state and left seq NULL. The last one returns {seq, number}.
function M.statements(backend, tbl, id, series, width)
  width = width or M.DEFAULT_WIDTH
  local pad = backend == "postgres"
    and format("lpad(CAST(n.last AS TEXT), %d, '0')", width)
    or format("printf('%%0%dd', n.last)", width)
  return {
    { format("INSERT INTO billing_numbering (series, last) SELECT $1, 1 WHERE EXISTS " ..
        "(SELECT 1 FROM %s WHERE id = $2 AND seq IS NULL AND state <> 'draft') " ..
        "ON CONFLICT (series) DO UPDATE SET last = billing_numbering.last + 1", tbl), series, id },
    { format("UPDATE %s SET seq = (SELECT n.last FROM billing_numbering n WHERE n.series = $1), " ..
        "number = (SELECT $1 || '-' || %s FROM billing_numbering n WHERE n.series = $1) " ..
        "WHERE id = $2 AND seq IS NULL AND state <> 'draft' RETURNING seq, number", tbl, pad), series, id },
  }
end

return M
