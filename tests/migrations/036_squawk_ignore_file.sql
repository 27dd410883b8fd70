-- squawk-ignore-file ban-drop-table
DROP TABLE IF EXISTS old_sessions;
DROP TABLE old_tokens;
