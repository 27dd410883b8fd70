-- The billing tables of h4's part (migration set `billing`): metrics, versioned plans,
-- subscriptions and their history, recorded usage, coupons, wallets. Amounts are {decimal}
-- columns (NUMERIC on PostgreSQL, TEXT on SQLite) written as exact strings; every table that
-- holds a tenant's data has a `tenant` column (the offboarding export sweeps those). The
-- primary keys carry the "once" rules: a usage event per (subscription, transaction_id), a
-- wallet consumption per (wallet, invoice), a coupon use per (applied coupon, invoice).
local store = require "steward.runtime.store"

-- {decimal} is steward.decimal's column type; replaced here too so this set migrates the
-- same whether or not store.dialects knows it.
local function both(template)
  local d = store.dialects(template)
  return { sqlite = d.sqlite:gsub("{decimal}", "TEXT"), postgres = d.postgres:gsub("{decimal}", "NUMERIC") }
end

store.register_migrations("billing", {
  { version = 1, sql = both [[
    CREATE TABLE billing_metrics (
      code {text} PRIMARY KEY,
      name TEXT NOT NULL,
      definition TEXT NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL);
    CREATE TABLE billing_plans (
      code {text} NOT NULL,
      version INTEGER NOT NULL,
      name TEXT NOT NULL,
      plan_interval {text} NOT NULL,
      amount {decimal} NOT NULL,
      currency {text} NOT NULL,
      pay_in_advance INTEGER NOT NULL,
      trial_days INTEGER NOT NULL,
      minimum_commitment {decimal},
      charges TEXT NOT NULL,
      description TEXT,
      created DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (code, version));
    CREATE TABLE billing_subscriptions (
      id {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      plan {text} NOT NULL,
      plan_version INTEGER NOT NULL,
      state {text} NOT NULL,
      billing_time {text} NOT NULL,
      started DOUBLE PRECISION NOT NULL,
      trial_ends DOUBLE PRECISION,
      ending DOUBLE PRECISION,
      terminated DOUBLE PRECISION,
      canceled DOUBLE PRECISION,
      anchor DOUBLE PRECISION NOT NULL,
      previous {text},
      next {text},
      external_id {text},
      invoiced_to DOUBLE PRECISION,
      advance_to DOUBLE PRECISION,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      version BIGINT NOT NULL,
      change_id {text});
    CREATE INDEX billing_subscriptions_tenant ON billing_subscriptions (tenant, state);
    CREATE INDEX billing_subscriptions_state ON billing_subscriptions (state, started);
    CREATE INDEX billing_subscriptions_external ON billing_subscriptions (external_id);
    CREATE TABLE billing_subscription_history (
      id {text} PRIMARY KEY,
      subscription {text} NOT NULL,
      tenant {text} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      change {text} NOT NULL,
      plan {text} NOT NULL,
      previous_plan {text},
      amount {decimal} NOT NULL,
      currency {text} NOT NULL,
      plan_interval {text} NOT NULL);
    CREATE INDEX billing_subscription_history_at ON billing_subscription_history (at);
    CREATE TABLE billing_usage (
      subscription {text} NOT NULL,
      transaction_id {text} NOT NULL,
      tenant {text} NOT NULL,
      code {text} NOT NULL,
      happened DOUBLE PRECISION NOT NULL,
      properties TEXT NOT NULL,
      received DOUBLE PRECISION NOT NULL,
      event_id {text} NOT NULL,
      PRIMARY KEY (subscription, transaction_id));
    CREATE INDEX billing_usage_period ON billing_usage (subscription, code, happened);
    CREATE TABLE billing_coupons (
      code {text} PRIMARY KEY,
      name TEXT NOT NULL,
      kind {text} NOT NULL,
      amount {decimal},
      percentage {decimal},
      currency {text},
      frequency {text} NOT NULL,
      duration INTEGER,
      created DOUBLE PRECISION NOT NULL);
    CREATE TABLE billing_applied_coupons (
      id {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      coupon {text} NOT NULL,
      state {text} NOT NULL,
      amount_remaining {decimal},
      periods_remaining INTEGER,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      version BIGINT NOT NULL,
      change_id {text});
    CREATE INDEX billing_applied_coupons_tenant ON billing_applied_coupons (tenant, state);
    CREATE UNIQUE INDEX billing_applied_coupons_active ON billing_applied_coupons (tenant, coupon) WHERE state = 'active';
    CREATE TABLE billing_coupon_uses (
      applied_coupon {text} NOT NULL,
      invoice {text} NOT NULL,
      tenant {text} NOT NULL,
      amount {decimal} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (applied_coupon, invoice));
    CREATE TABLE billing_wallets (
      id {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      name TEXT NOT NULL,
      currency {text} NOT NULL,
      rate_amount {decimal} NOT NULL,
      balance {decimal} NOT NULL,
      state {text} NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      version BIGINT NOT NULL,
      change_id {text});
    CREATE UNIQUE INDEX billing_wallets_active ON billing_wallets (tenant, currency) WHERE state = 'active';
    CREATE TABLE billing_wallet_transactions (
      id {text} PRIMARY KEY,
      wallet {text} NOT NULL,
      tenant {text} NOT NULL,
      kind {text} NOT NULL,
      ref {text} NOT NULL,
      credits {decimal} NOT NULL,
      amount {decimal} NOT NULL,
      balance_after {decimal} NOT NULL,
      at DOUBLE PRECISION NOT NULL);
    CREATE UNIQUE INDEX billing_wallet_transactions_ref ON billing_wallet_transactions (wallet, kind, ref);
    CREATE TABLE billing_change_guard (
      id {text} PRIMARY KEY,
      applied {text} NOT NULL);
  ]] },
})

return true
