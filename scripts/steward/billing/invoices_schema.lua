-- The invoice tables (migration set billing_invoices; steward.billing.invoices and
-- steward.billing.credit_notes). An invoice is one row per (subscription, period): its id is
-- made of both, so building it again lands on the same row. The record itself is kept as its
-- JSON (amounts as exact strings) in `body`; the columns beside it are what lists filter on.
-- A credit note's credit left (`remaining`) goes down by one billing_credit_note_uses row per
-- invoice it pays part of. billing_numbering holds the last number taken in each series: the finalizing transaction
-- takes the next one and numbers its invoice together, or neither happens (gap-free).
local store = require "steward.runtime.store"

-- {decimal} is steward.decimal's column type (NUMERIC on PostgreSQL, TEXT on SQLite), replaced
-- here too so the set migrates the same whether or not store.dialects knows it.
local function both(template)
  local d = store.dialects(template)
  return { sqlite = d.sqlite:gsub("{decimal}", "TEXT"), postgres = d.postgres:gsub("{decimal}", "NUMERIC") }
end

store.register_migrations("billing_invoices", {
  { version = 1, sql = both [[
    CREATE TABLE billing_invoices (
      id {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      subscription {text} NOT NULL,
      period_from DOUBLE PRECISION NOT NULL,
      period_to DOUBLE PRECISION NOT NULL,
      state {text} NOT NULL,
      series {text} NOT NULL,
      seq BIGINT,
      number {text},
      currency TEXT NOT NULL,
      total {decimal} NOT NULL,
      body TEXT NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      version BIGINT NOT NULL);
    CREATE INDEX billing_invoices_tenant ON billing_invoices (tenant, state);
    CREATE INDEX billing_invoices_subscription ON billing_invoices (subscription, period_from);
    CREATE UNIQUE INDEX billing_invoices_number ON billing_invoices (series, seq);
    CREATE TABLE billing_numbering (
      series {text} PRIMARY KEY,
      last BIGINT NOT NULL);
    CREATE TABLE billing_credit_notes (
      id {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      invoice {text} NOT NULL,
      series {text} NOT NULL,
      seq BIGINT,
      number {text},
      state {text} NOT NULL,
      method {text} NOT NULL,
      currency TEXT NOT NULL,
      total {decimal} NOT NULL,
      remaining {decimal} NOT NULL,
      last_use {text},
      body TEXT NOT NULL,
      created DOUBLE PRECISION NOT NULL);
    CREATE INDEX billing_credit_notes_invoice ON billing_credit_notes (invoice);
    CREATE INDEX billing_credit_notes_tenant ON billing_credit_notes (tenant, method);
    CREATE UNIQUE INDEX billing_credit_notes_number ON billing_credit_notes (series, seq);
    CREATE TABLE billing_credit_note_uses (
      credit_note {text} NOT NULL,
      invoice {text} NOT NULL,
      tenant {text} NOT NULL,
      amount {decimal} NOT NULL,
      remaining_after {decimal} NOT NULL,
      used DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (credit_note, invoice));
  ]] },
})

return true
