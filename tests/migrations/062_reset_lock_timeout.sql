-- RESET is no SET: a lock_timeout reset to the session's default is still missing.
RESET lock_timeout;
SET statement_timeout = '5s';
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS note text;
