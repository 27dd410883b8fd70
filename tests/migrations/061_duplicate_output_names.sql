-- Output columns named twice: by alias, by column, by function, constants ("?column?").
CREATE VIEW v AS SELECT a, t.a, count(*), count(*), 1 AS x FROM t;
SELECT a, b AS a INTO new_t FROM t;
CREATE TABLE x AS SELECT 1 AS a, 2 AS a;
CREATE VIEW w AS SELECT 1, 2;
CREATE VIEW w2 AS SELECT a.* , b.* FROM a, b;
CREATE TABLE y (a, a) AS SELECT 1, 2;
