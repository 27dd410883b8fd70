SET lock_timeout = '1s';
SET statement_timeout = '0';
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_idx ON accounts (email);
