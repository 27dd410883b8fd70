-- flags: --pg-version 10 (every DEFAULT rewrites the table before PostgreSQL 11)
BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE accounts ADD COLUMN active boolean DEFAULT true;
COMMIT;
