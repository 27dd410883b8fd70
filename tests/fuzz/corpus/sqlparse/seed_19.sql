START TRANSACTION;
SET LOCAL lock_timeout = '1s';
SET LOCAL statement_timeout = '5s';
CREATE TEMP TABLE scratch (id bigint) ON COMMIT DROP;
COMMENT ON TABLE accounts IS 'customers';
END;
CREATE TEMP TABLE scratch2 (id bigint) ON COMMIT DROP;
