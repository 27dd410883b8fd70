BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE accounts
  ADD COLUMN IF NOT EXISTS x text,
  -- squawk-ignore ban-drop-column
  DROP COLUMN y,
  DROP COLUMN z;
COMMIT;
