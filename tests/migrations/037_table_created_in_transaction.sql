BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
CREATE TABLE invoices (id bigint GENERATED ALWAYS AS IDENTITY, account_id bigint, number text);
ALTER TABLE invoices ADD CONSTRAINT invoices_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id);
ALTER TABLE invoices ADD CONSTRAINT invoices_number_key UNIQUE (number);
CREATE INDEX invoices_account_idx ON invoices (account_id);
COMMIT;
