BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
CREATE DOMAIN positive_int AS bigint CHECK (VALUE > 0);
ALTER DOMAIN positive_int ADD CONSTRAINT below_million CHECK (VALUE < 1000000);
COMMIT;
