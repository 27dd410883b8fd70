SET lock_timeout = '1s';
SET statement_timeout = '0';
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_key_idx ON accounts (email);
BEGIN;
ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE USING INDEX accounts_email_key_idx;
COMMIT;
