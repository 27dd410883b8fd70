-- The capacity history table (steward.capacity.history): one row per series per minute with
-- the minute's count, sum, min and max, so any coarser step is an aggregate of rows and a
-- minute written twice (two workers, or a partial minute flushed at shutdown) merges.
local store = require "steward.runtime.store"

store.register_migrations("capacity", {
  { version = 1, sql = store.dialects [[
    CREATE TABLE capacity_samples (
      series {text} NOT NULL,
      t DOUBLE PRECISION NOT NULL,
      n BIGINT NOT NULL,
      total DOUBLE PRECISION NOT NULL,
      lo DOUBLE PRECISION NOT NULL,
      hi DOUBLE PRECISION NOT NULL,
      PRIMARY KEY (series, t));
    CREATE INDEX capacity_samples_t ON capacity_samples (t);
  ]] },
})

return true
