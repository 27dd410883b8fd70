SET lock_timeout = '1s';
SET statement_timeout = '5s';
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS nickname text;
ALTER TABLE accounts DROP COLUMN IF EXISTS nickname;
CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY, body text);
DROP TABLE IF EXISTS notes;
DROP TYPE mood;
CREATE TABLE drafts (id bigint);
ALTER TABLE accounts ALTER COLUMN nickname SET DEFAULT 'x';
