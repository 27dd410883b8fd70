-- The payment tables (migration set billing_payments, docs/billing/payments.md): a tenant's
-- customer at the provider, one row per collection attempt of an invoice (its idempotency key
-- and the request's parameters are written before the request goes out, so a retry after a
-- crash sends the same request with the same key and the provider answers the first result
-- instead of charging again), the provider's webhook events
-- seen (a replayed event is a duplicate), and the dunning state of each unpaid invoice.
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("billing_payments", {
  { version = 1, sql = both [[
    CREATE TABLE billing_payment_customers (
      tenant {text} NOT NULL,
      provider {text} NOT NULL,
      customer {text} NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (tenant, provider));
    CREATE TABLE billing_payment_attempts (
      invoice {text} NOT NULL,
      attempt INTEGER NOT NULL,
      tenant {text} NOT NULL,
      provider {text} NOT NULL,
      idempotency_key {text} NOT NULL,
      amount {decimal} NOT NULL,
      amount_minor BIGINT NOT NULL,
      currency {text} NOT NULL,
      request TEXT NOT NULL,
      payment_intent {text},
      status {text} NOT NULL,
      code {text},
      decline_code {text},
      message TEXT,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (invoice, attempt));
    CREATE INDEX billing_payment_attempts_tenant ON billing_payment_attempts (tenant, created);
    CREATE INDEX billing_payment_attempts_intent ON billing_payment_attempts (payment_intent);
    CREATE TABLE billing_webhook_events (
      id {text} PRIMARY KEY,
      provider {text} NOT NULL,
      type {text} NOT NULL,
      tenant {text},
      invoice {text},
      outcome TEXT NOT NULL,
      received DOUBLE PRECISION NOT NULL);
    CREATE TABLE billing_dunning (
      invoice {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      state {text} NOT NULL,
      attempts INTEGER NOT NULL,
      next_retry DOUBLE PRECISION,
      suspended INTEGER NOT NULL DEFAULT 0,
      updated DOUBLE PRECISION NOT NULL);
    CREATE INDEX billing_dunning_tenant ON billing_dunning (tenant, state);
  ]] },
})

return true
