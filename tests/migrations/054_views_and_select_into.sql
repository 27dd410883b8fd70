CREATE VIEW v (a, a) AS SELECT 1, 2;
SELECT 1 AS x INTO new_table;
CREATE TABLE dup (a text, b text, a text);
