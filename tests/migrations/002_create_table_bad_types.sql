CREATE TABLE IF NOT EXISTS orders (
    id serial PRIMARY KEY,
    code char(8),
    note varchar(200),
    qty int,
    rank smallint,
    placed_at timestamp,
    tags int4[]
);
