-- The approvals table (steward.deploy.approvals). A decision is an UPDATE conditional on the
-- row still being pending, committed with its event and the removal of the expiry timer, so
-- of two concurrent decisions (or a decision and the timeout) exactly one applies.
local store = require "steward.runtime.store"

local both = store.dialects

store.register_migrations("approvals", {
  { version = 1, sql = both [[
    CREATE TABLE approvals (
      id {text} PRIMARY KEY,
      subject {text} NOT NULL,
      step TEXT,
      reason TEXT,
      approvers TEXT NOT NULL,
      channels TEXT NOT NULL,
      state {text} NOT NULL,
      requested_by TEXT,
      created_at DOUBLE PRECISION NOT NULL,
      expires_at DOUBLE PRECISION NOT NULL,
      decided_at DOUBLE PRECISION,
      decided_by TEXT,
      decided_via TEXT,
      comment TEXT);
    CREATE INDEX approvals_state ON approvals (state, expires_at);
    CREATE INDEX approvals_subject ON approvals (subject, created_at);
  ]] },
})

return true
