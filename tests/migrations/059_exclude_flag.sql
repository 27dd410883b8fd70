-- flags: --exclude prefer-robust-stmts,require-timeout-settings
DROP TABLE sessions;
CREATE INDEX sessions_idx ON s (a);
