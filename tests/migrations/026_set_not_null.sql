BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE accounts ALTER COLUMN plan SET NOT NULL;
COMMIT;
