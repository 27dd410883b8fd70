BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE orders ADD COLUMN shipped_at timestamp without time zone;
ALTER TABLE orders ADD COLUMN paid_at timestamp with time zone;
ALTER TABLE orders ADD COLUMN label character varying(40);
ALTER TABLE orders ADD COLUMN flag "char";
COMMIT;
