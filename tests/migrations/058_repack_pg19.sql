-- flags: --pg-version 19
SET lock_timeout = '1s';
SET statement_timeout = '5s';
VACUUM FULL accounts;
VACUUM accounts;
CLUSTER accounts USING accounts_pkey;
