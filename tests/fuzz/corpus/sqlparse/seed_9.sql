SET lock_timeout = '1s';
SET statement_timeout = '0';
DROP INDEX CONCURRENTLY IF EXISTS accounts_email_idx;
