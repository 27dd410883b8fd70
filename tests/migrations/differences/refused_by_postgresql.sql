-- steward-refuses: 5:56: syntax error at or near "NOT"
-- PostgreSQL's grammar allows no NOT in a column DEFAULT (it must be parenthesised);
-- squawk's parser accepts it. steward reports what PostgreSQL would say, and exits 2.
BEGIN;
ALTER TABLE accounts ADD COLUMN active boolean DEFAULT NOT false;
COMMIT;
