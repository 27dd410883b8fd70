-- The notification engine's tables (steward.alerting.engine): aggregation groups and their
-- members, the notification log (Alertmanager's nflog: what each integration of a receiver
-- was last told about a group), flap history and correlation hits. Alert rows themselves are
-- the API's (steward.alerting.schema); the engine only reads them.
local store = require "steward.runtime.store"

store.register_migrations("alerting_engine", {
  { version = 1, sql = store.dialects [[
    CREATE TABLE alert_groups (
      id {text} PRIMARY KEY,
      group_key TEXT NOT NULL,
      route_id TEXT NOT NULL,
      receiver TEXT NOT NULL,
      labels TEXT NOT NULL,
      created_at DOUBLE PRECISION NOT NULL,
      epoch {text} NOT NULL,
      next_flush DOUBLE PRECISION NOT NULL,
      gen BIGINT NOT NULL,
      flushed INTEGER NOT NULL);
    CREATE TABLE alert_group_members (
      group_id {text} NOT NULL,
      fingerprint {text} NOT NULL,
      PRIMARY KEY (group_id, fingerprint));
    CREATE INDEX alert_group_members_fp ON alert_group_members (fingerprint);
    CREATE TABLE alert_nlog (
      group_key {text} NOT NULL,
      receiver {text} NOT NULL,
      integration INTEGER NOT NULL,
      firing TEXT NOT NULL,
      resolved TEXT NOT NULL,
      sent_at DOUBLE PRECISION NOT NULL,
      repeats INTEGER NOT NULL,
      PRIMARY KEY (group_key, receiver, integration));
    CREATE INDEX alert_nlog_sent ON alert_nlog (sent_at);
    CREATE TABLE alert_flaps (
      fingerprint {text} PRIMARY KEY,
      state {text} NOT NULL,
      times TEXT NOT NULL,
      held_until DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL);
    CREATE TABLE alert_correlation_hits (
      rule {text} NOT NULL,
      fingerprint {text} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (rule, fingerprint));
    CREATE TABLE alert_correlations (
      rule {text} PRIMARY KEY,
      triggered_at DOUBLE PRECISION NOT NULL,
      last_at DOUBLE PRECISION NOT NULL);
  ]] },
  -- The engine keeps its state in memory with these tables as its journal
  -- (steward.alerting.engine.journal); the token changes with every write, so a writer
  -- that is not the engine's run (cleanup, another instance) makes the engine reload.
  { version = 2, sql = store.dialects [[
    CREATE TABLE alert_engine_journal (id INTEGER PRIMARY KEY, token {text} NOT NULL);
    INSERT INTO alert_engine_journal (id, token) VALUES (1, '');
  ]] },
})

return true
