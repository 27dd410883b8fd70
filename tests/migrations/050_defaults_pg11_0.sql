-- flags: --pg-version 11.0
BEGIN;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE t ADD COLUMN a int8 DEFAULT 1;
ALTER TABLE t ADD COLUMN b timestamptz DEFAULT current_timestamp;
ALTER TABLE t ADD COLUMN c text DEFAULT now()::text;
ALTER TABLE t ADD COLUMN d int8 DEFAULT 1 + 2;
ALTER TABLE t ADD COLUMN e text[] DEFAULT ARRAY[]::text[];
ALTER TABLE t ADD COLUMN f timestamptz DEFAULT pg_catalog.now();
ALTER TABLE t ADD COLUMN g float8 DEFAULT random();
ALTER TABLE t ADD COLUMN h date DEFAULT current_date;
ALTER TABLE t ADD COLUMN i text DEFAULT 'x' COLLATE "C";
ALTER TABLE t ADD COLUMN j bool DEFAULT true;
ALTER TABLE t ADD COLUMN k int8 DEFAULT NULL;
COMMIT;
