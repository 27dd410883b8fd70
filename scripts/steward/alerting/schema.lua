-- The alerting API's tables (steward.alerting.api): alerts by label-set fingerprint and
-- silences. An alert row is never updated in place: a write deletes revision n and inserts
-- n + 1 in one unit, so two writers that read the same revision cannot both commit (the
-- second INSERT breaks the primary key and its whole unit, events included, rolls back).
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("alerts", {
  { version = 1, sql = both [[
    CREATE TABLE alerts (
      fingerprint {text} NOT NULL,
      revision BIGINT NOT NULL,
      labels TEXT NOT NULL,
      annotations TEXT NOT NULL,
      starts_at DOUBLE PRECISION NOT NULL,
      ends_at DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL,
      generator_url TEXT NOT NULL,
      timeout INTEGER NOT NULL,
      announced {text} NOT NULL,
      PRIMARY KEY (fingerprint, revision));
    CREATE INDEX alerts_announced ON alerts (announced, ends_at);
    CREATE TABLE alert_silences (
      id {text} PRIMARY KEY,
      matchers TEXT NOT NULL,
      starts_at DOUBLE PRECISION NOT NULL,
      ends_at DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL,
      created_by TEXT NOT NULL,
      comment TEXT NOT NULL);
    CREATE INDEX alert_silences_ends ON alert_silences (ends_at);
  ]] },
})

return true
