BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
COMMIT;
COMMIT;
