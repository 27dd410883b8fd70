-- squawk-only: adding-field-with-default@5
-- squawk's parser keeps "-1" as an expression it does not know to be constant; PostgreSQL's
-- folds it into the constant -1, which PostgreSQL 11+ stores without rewriting the table.
BEGIN;
ALTER TABLE accounts ADD COLUMN score bigint DEFAULT -1;
COMMIT;
