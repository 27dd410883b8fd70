-- squawk-only: prefer-timestamp-tz@5
-- squawk 2.66 reports a varchar written as a qualified name as a timestamp too (its
-- timestamp check repeats its varchar check for names); a varchar is not a timestamp.
BEGIN;
ALTER TABLE accounts ADD COLUMN code pg_catalog.varchar(5);
COMMIT;
