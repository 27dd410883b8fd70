-- The customer-success tables (steward.success.*): tickets and their CSAT answers, health-score
-- history, onboarding milestones. One row per ticket, per (ticket) answer, per (tenant, at)
-- score and per (tenant, milestone): the primary keys are what makes "once" hold when a
-- handler runs again after a crash.
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("success", {
  { version = 1, sql = both [[
    CREATE TABLE success_tickets (
      id {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      subject TEXT NOT NULL,
      body TEXT NOT NULL,
      requester TEXT NOT NULL,
      severity {text} NOT NULL,
      plan {text},
      source {text} NOT NULL,
      message_id TEXT,
      state {text} NOT NULL,
      queue {text},
      sla_due DOUBLE PRECISION,
      breached INTEGER NOT NULL DEFAULT 0,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      closed DOUBLE PRECISION,
      revision BIGINT NOT NULL);
    CREATE INDEX success_tickets_tenant ON success_tickets (tenant, state);
    CREATE UNIQUE INDEX success_tickets_message ON success_tickets (message_id);
    CREATE TABLE success_csat (
      ticket {text} PRIMARY KEY,
      tenant {text} NOT NULL,
      queue {text},
      score INTEGER NOT NULL,
      comment TEXT NOT NULL,
      answered DOUBLE PRECISION NOT NULL);
    CREATE TABLE success_health (
      tenant {text} NOT NULL,
      at DOUBLE PRECISION NOT NULL,
      score DOUBLE PRECISION NOT NULL,
      parts TEXT NOT NULL,
      PRIMARY KEY (tenant, at));
    CREATE TABLE success_milestones (
      tenant {text} NOT NULL,
      milestone {text} NOT NULL,
      reached DOUBLE PRECISION NOT NULL,
      event_id TEXT,
      PRIMARY KEY (tenant, milestone));
  ]] },
})

return true
