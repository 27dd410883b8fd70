BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
-- squawk-ignore ban-drop-column
ALTER TABLE accounts DROP COLUMN legacy_flag;
-- squawk-ignore renaming-column, not-a-rule
ALTER TABLE accounts RENAME COLUMN email TO mail;
COMMIT;
