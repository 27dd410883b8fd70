-- squawk-disable-assume-in-transaction
SET lock_timeout = '1s';
SET statement_timeout = '5s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_order_idx ON payments (order_id);
