SET lock_timeout = '2s';
SET statement_timeout = '10s';
BEGIN;
ALTER TABLE accounts ADD COLUMN region text NOT NULL DEFAULT 'eu';
ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();
COMMIT;
