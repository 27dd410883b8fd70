SET lock_timeout = '1s';
SET statement_timeout = '5s';
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS locale text;
COMMIT;
