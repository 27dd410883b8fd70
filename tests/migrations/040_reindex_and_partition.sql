SET lock_timeout = '1s';
SET statement_timeout = '5s';
REINDEX INDEX accounts_email_idx;
REINDEX INDEX CONCURRENTLY accounts_email_idx;
ALTER TABLE measurements DETACH PARTITION measurements_2020;
ALTER TABLE measurements DETACH PARTITION measurements_2021 CONCURRENTLY;
