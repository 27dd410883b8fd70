BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE orders ADD COLUMN coupon_id bigint REFERENCES coupons (id);
COMMIT;
