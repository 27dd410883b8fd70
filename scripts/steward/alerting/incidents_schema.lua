-- The incident tables (steward.alerting.incidents). A state change is an UPDATE conditional on
-- the revision it read; its timeline row and its event have ids derived from the new revision,
-- so a writer that lost the race adds nothing (ON CONFLICT DO NOTHING) — see incidents.lua.
-- At most one open incident per key: a partial unique index, so two concurrent triggers of one
-- key cannot both open one (the loser's unit fails and it reuses the winner's).
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("incidents", {
  { version = 1, sql = both [[
    CREATE TABLE incidents (
      id {text} PRIMARY KEY,
      key {text} NOT NULL,
      service {text} NOT NULL,
      title TEXT NOT NULL,
      summary TEXT NOT NULL,
      severity {text} NOT NULL,
      state {text} NOT NULL,
      escalation TEXT,
      assignee TEXT,
      labels TEXT NOT NULL,
      group_key TEXT,
      epoch INTEGER NOT NULL,
      created_at DOUBLE PRECISION NOT NULL,
      acked_at DOUBLE PRECISION,
      acked_by TEXT,
      resolved_at DOUBLE PRECISION,
      resolved_by TEXT,
      alert_at DOUBLE PRECISION NOT NULL,
      updated_at DOUBLE PRECISION NOT NULL,
      revision BIGINT NOT NULL);
    CREATE UNIQUE INDEX incidents_open_key ON incidents (key) WHERE state IN ('triggered', 'acknowledged');
    CREATE INDEX incidents_state ON incidents (state, service);
    CREATE INDEX incidents_created ON incidents (created_at);
    CREATE TABLE incident_timeline (
      id {text} PRIMARY KEY,
      incident_id {text} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      kind {text} NOT NULL,
      actor TEXT,
      data TEXT NOT NULL);
    CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, at);
  ]] },
})

return true
