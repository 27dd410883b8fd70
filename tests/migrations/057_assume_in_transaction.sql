-- flags: --assume-in-transaction
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
CREATE TABLE reports (id bigint GENERATED ALWAYS AS IDENTITY, owner_id bigint);
ALTER TABLE reports ADD CONSTRAINT reports_owner_fk FOREIGN KEY (owner_id) REFERENCES accounts (id);
CREATE INDEX CONCURRENTLY reports_owner_idx ON reports (owner_id);
ALTER TABLE accounts ADD COLUMN report_count bigint;
BEGIN;
COMMIT;
