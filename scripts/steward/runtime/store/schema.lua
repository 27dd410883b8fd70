-- The built-in tables of the store, as migrations. DDL differs between the backends only in the
-- generated key (AUTOINCREMENT vs BIGSERIAL) and in PostgreSQL's text collation: keys compare
-- bytewise ("C") there as they do in SQLite, so ranges and cursors mean the same on both.
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("events", {
  { version = 1, sql = both [[
    CREATE TABLE events (
      seq {serial},
      id {text} NOT NULL UNIQUE,
      type {text} NOT NULL,
      tenant {text},
      time DOUBLE PRECISION NOT NULL,
      source TEXT,
      data TEXT NOT NULL,
      received DOUBLE PRECISION NOT NULL);
    CREATE INDEX events_type ON events (type, seq);
    CREATE INDEX events_tenant ON events (tenant, seq);
    CREATE INDEX events_time ON events (time);
  ]] },
  -- The cause depth: 0 for an event from outside, n + 1 for one a policy emitted while
  -- handling an event of depth n (steward.runtime.policy.emit refuses past limits.max_cause_depth).
  { version = 2, sql = both [[
    ALTER TABLE events ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
  ]] },
})

store.register_migrations("kv", {
  { version = 1, sql = both [[
    CREATE TABLE kv (
      ns {text} NOT NULL,
      key {text} NOT NULL,
      value TEXT NOT NULL,
      version BIGINT NOT NULL,
      expires_at DOUBLE PRECISION,
      updated DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (ns, key));
    CREATE INDEX kv_expires ON kv (expires_at);
  ]] },
})

store.register_migrations("timers", {
  { version = 1, sql = both [[
    CREATE TABLE timers (
      id {text} PRIMARY KEY,
      due_at DOUBLE PRECISION NOT NULL,
      event TEXT NOT NULL,
      created DOUBLE PRECISION NOT NULL);
    CREATE INDEX timers_due ON timers (due_at);
    CREATE TABLE schedules (
      name {text} PRIMARY KEY,
      expr TEXT NOT NULL,
      event TEXT NOT NULL,
      next_at DOUBLE PRECISION,
      last_fired DOUBLE PRECISION,
      updated DOUBLE PRECISION NOT NULL);
    CREATE INDEX schedules_next ON schedules (next_at);
  ]] },
})

store.register_migrations("jobs", {
  { version = 1, sql = both [[
    CREATE TABLE jobs (
      id {serial},
      queue {text} NOT NULL,
      payload TEXT NOT NULL,
      state {text} NOT NULL,
      attempts INTEGER NOT NULL,
      max_attempts INTEGER NOT NULL,
      run_at DOUBLE PRECISION NOT NULL,
      lease_until DOUBLE PRECISION,
      dedupe_key {text},
      last_error TEXT,
      created DOUBLE PRECISION NOT NULL,
      updated DOUBLE PRECISION NOT NULL,
      UNIQUE (queue, dedupe_key));
    CREATE INDEX jobs_due ON jobs (queue, state, run_at);
    CREATE INDEX jobs_lease ON jobs (queue, state, lease_until);
  ]] },
})

store.register_migrations("decisions", {
  { version = 1, sql = both [[
    CREATE TABLE decisions (
      id {serial},
      policy {text} NOT NULL,
      version TEXT,
      event_id {text},
      input TEXT,
      outcome {text} NOT NULL,
      result TEXT,
      error TEXT,
      duration DOUBLE PRECISION,
      side_effects TEXT,
      time DOUBLE PRECISION NOT NULL);
    CREATE INDEX decisions_policy ON decisions (policy, id);
    CREATE INDEX decisions_event ON decisions (event_id);
    CREATE INDEX decisions_time ON decisions (time);
  ]] },
  -- ref: the id a decision is known by outside (a UUIDv7 assigned when the decision is made,
  -- so POST /v1/decide can answer before the log row is written).
  { version = 2, sql = both [[
    ALTER TABLE decisions ADD COLUMN ref {text};
    CREATE UNIQUE INDEX decisions_ref ON decisions (ref);
  ]] },
  -- Policy version retention keeps every version a decision names: found by this index.
  { version = 3, sql = both [[
    CREATE INDEX decisions_policy_version ON decisions (policy, version);
  ]] },
  -- tenant: whose event or request it decided on, so a tenant's token reads only its own.
  { version = 4, sql = both [[
    ALTER TABLE decisions ADD COLUMN tenant {text};
  ]] },
  -- A decision (POST /v1/decide) has no event: its row skips the event index, one index
  -- fewer on the decide path. `event_id = $1` implies NOT NULL, so lookups still use it.
  { version = 5, sql = both [[
    DROP INDEX decisions_event;
    CREATE INDEX decisions_event ON decisions (event_id) WHERE event_id IS NOT NULL;
  ]] },
})

-- The audit log: append-only (nothing updates or deletes it), hash-chained (steward.runtime.store.audit);
-- `steward audit` lists it, `steward audit verify` checks it.
store.register_migrations("audit", {
  { version = 1, sql = both [[
    CREATE TABLE audit (
      id {serial},
      time DOUBLE PRECISION NOT NULL,
      source {text} NOT NULL,
      session {text},
      uid INTEGER,
      role {text},
      command TEXT NOT NULL,
      outcome {text} NOT NULL,
      detail TEXT);
    CREATE INDEX audit_time ON audit (time);
  ]] },
  -- The hash chain (docs/audit.md): every door's mutations (actor, target, digests of the state
  -- before and after), signed checkpoints (key_id, sig), and each entry's prev_hash and hash.
  -- Entries written before this step stay as they were, unchained: the chain starts at a
  -- genesis (the first chained entry's prev_hash is 64 zeros) and `steward audit verify`
  -- counts the older entries as not covered. prev_hash is unique, as the id is: two writers
  -- can never both chain onto the same entry.
  { version = 2, sql = both [[
    ALTER TABLE audit ADD COLUMN actor TEXT;
    ALTER TABLE audit ADD COLUMN target TEXT;
    ALTER TABLE audit ADD COLUMN before_digest TEXT;
    ALTER TABLE audit ADD COLUMN after_digest TEXT;
    ALTER TABLE audit ADD COLUMN key_id TEXT;
    ALTER TABLE audit ADD COLUMN sig TEXT;
    ALTER TABLE audit ADD COLUMN prev_hash {text};
    ALTER TABLE audit ADD COLUMN hash {text};
    CREATE UNIQUE INDEX audit_prev_hash ON audit (prev_hash);
  ]] },
})

-- Cluster mode (steward.runtime.cluster, docs/operations.md): several daemons on one PostgreSQL. The
-- tables exist on SQLite too (one migration history for both backends) but stay empty there.
-- Times are the database's clock (epoch seconds), so instances never compare their own clocks.
store.register_migrations("cluster", {
  { version = 1, sql = both [[
    CREATE TABLE cluster_instances (
      id {text} PRIMARY KEY,
      host TEXT NOT NULL,
      pid INTEGER NOT NULL,
      address TEXT,
      started DOUBLE PRECISION NOT NULL,
      last_heartbeat DOUBLE PRECISION NOT NULL,
      leader INTEGER NOT NULL,
      load TEXT,
      stopped DOUBLE PRECISION);
    CREATE TABLE cluster_leader (
      id INTEGER PRIMARY KEY,
      holder {text} NOT NULL,
      lease_until DOUBLE PRECISION NOT NULL,
      since DOUBLE PRECISION NOT NULL);
    CREATE TABLE dispatch_buckets (
      bucket INTEGER PRIMARY KEY,
      owner {text} NOT NULL,
      lease_until DOUBLE PRECISION NOT NULL,
      since DOUBLE PRECISION NOT NULL);
    CREATE INDEX dispatch_buckets_owner ON dispatch_buckets (owner);
    CREATE TABLE dispatch_marks (
      instance {text} PRIMARY KEY,
      low BIGINT NOT NULL,
      updated DOUBLE PRECISION NOT NULL);
    CREATE TABLE dispatch_redo (
      policy {text} NOT NULL,
      seq BIGINT NOT NULL,
      created DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (policy, seq));
    CREATE TABLE policy_current (
      name {text} PRIMARY KEY,
      version TEXT NOT NULL,
      instance TEXT,
      updated DOUBLE PRECISION NOT NULL);
  ]] },
})

return true
