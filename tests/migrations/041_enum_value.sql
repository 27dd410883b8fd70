SET lock_timeout = '1s';
SET statement_timeout = '5s';
ALTER TYPE mood ADD VALUE 'ecstatic';
ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok';
