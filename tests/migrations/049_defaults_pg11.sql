-- flags: --pg-version 11 ("11" is not after 11 for squawk; "11.0" is: see 050)
BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE t ADD COLUMN a int8 DEFAULT 1;
COMMIT;
