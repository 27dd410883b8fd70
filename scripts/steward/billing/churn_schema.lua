-- The churn-risk signals (steward.billing.churn), migration set billing_mrr: one row per
-- (tenant, week, reason), whose primary key is what makes "once per tenant per reason per
-- week" hold across restarts, retries and instances.
local store = require "steward.runtime.store"

store.register_migrations("billing_mrr", {
  { version = 1, sql = store.dialects [[
    CREATE TABLE billing_churn_signals (
      tenant {text} NOT NULL,
      week {text} NOT NULL,
      reason {text} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      score INTEGER NOT NULL,
      detail TEXT NOT NULL,
      event_id TEXT NOT NULL,
      PRIMARY KEY (tenant, week, reason));
    CREATE INDEX billing_churn_signals_at ON billing_churn_signals (at);
  ]] },
})

return true
