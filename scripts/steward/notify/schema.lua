-- The notification history of steward.notify as a store migration: one row per notification
-- (per channel and idempotency key), written "sending" before the first request and
-- "sent"/"failed" after, so a key already delivered is never sent again.
local store = require "steward.runtime.store"

local both = store.dialects

-- key is NULL for a notification sent without one: NULLs never conflict in the UNIQUE
-- constraint (on both backends), so such rows are history only.
store.register_migrations("notify", {
  { version = 1, sql = both [[
    CREATE TABLE notify_history (
      id {serial},
      channel {text} NOT NULL,
      kind {text} NOT NULL,
      key {text},
      status {text} NOT NULL,
      attempts INTEGER NOT NULL,
      response_status INTEGER,
      last_error TEXT,
      summary TEXT,
      lease_until DOUBLE PRECISION,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      sent_at DOUBLE PRECISION,
      UNIQUE (channel, key));
    CREATE INDEX notify_history_created ON notify_history (created);
    CREATE INDEX notify_history_status ON notify_history (status, id);
  ]] },
})

return true
