BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_qty_idx ON orders (qty);
COMMIT;
