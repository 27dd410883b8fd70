-- The tenants' tables (steward.tenants): the tenant records, and the durable sagas that
-- provision them (steward.tenants.saga): one row per saga with its lease, one row per step
-- with its status, so a restarted daemon knows which steps ran and which were undone.
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("tenants", {
  { version = 1, sql = both [[
    CREATE TABLE tenants (
      id {text} PRIMARY KEY,
      name TEXT NOT NULL,
      plan {text} NOT NULL,
      state {text} NOT NULL,
      failed_step TEXT,
      reason TEXT,
      contact TEXT NOT NULL,
      branding TEXT NOT NULL,
      config TEXT NOT NULL,
      limits TEXT NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      version INTEGER NOT NULL);
    CREATE INDEX tenants_state ON tenants (state, plan);
    CREATE TABLE tenant_sagas (
      id {text} PRIMARY KEY,
      kind {text} NOT NULL,
      subject {text} NOT NULL,
      state {text} NOT NULL,
      data TEXT NOT NULL,
      failed_step TEXT,
      error TEXT,
      owner TEXT,
      lease_until DOUBLE PRECISION NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL);
    CREATE INDEX tenant_sagas_state ON tenant_sagas (state, lease_until);
    CREATE TABLE tenant_saga_steps (
      saga {text} NOT NULL,
      step {text} NOT NULL,
      seq INTEGER NOT NULL,
      status {text} NOT NULL,
      result TEXT,
      error TEXT,
      runs INTEGER NOT NULL,
      started DOUBLE PRECISION NOT NULL,
      finished DOUBLE PRECISION,
      PRIMARY KEY (saga, step));
  ]] },
})

return true
