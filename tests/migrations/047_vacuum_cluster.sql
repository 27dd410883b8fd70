SET lock_timeout = '1s';
SET statement_timeout = '5s';
VACUUM FULL accounts;
CLUSTER accounts USING accounts_pkey;
