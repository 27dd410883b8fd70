BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE accounts ADD COLUMN this_column_name_is_much_longer_than_sixty_three_bytes_and_gets_cut text;
COMMIT;
