-- squawk-only: adding-field-with-default@5
-- "(0)" is the constant 0 to PostgreSQL's parser (parentheses leave no trace in its tree);
-- squawk's sees a parenthesised expression and does not look inside.
BEGIN;
ALTER TABLE accounts ADD COLUMN visits bigint NOT NULL DEFAULT (0);
COMMIT;
