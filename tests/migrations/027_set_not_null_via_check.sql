BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE accounts ADD CONSTRAINT plan_not_null CHECK (plan IS NOT NULL) NOT VALID;
COMMIT;
BEGIN;
ALTER TABLE accounts VALIDATE CONSTRAINT plan_not_null;
ALTER TABLE accounts ALTER COLUMN plan SET NOT NULL;
COMMIT;
