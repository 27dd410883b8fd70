BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE orders ADD COLUMN total numeric GENERATED ALWAYS AS (qty * 2) STORED;
COMMIT;
