-- steward.billing.guard: makes a batch stand or fall with its conditional UPDATE. A change
-- reads a row, then writes it back "WHERE version = <read>" together with the rows that
-- follow from it (history, transactions, a new subscription); when another change came first
-- the UPDATE touches nothing, and the rest must not be written either. The UPDATE sets the
-- row's change_id to a fresh key; the guard's INSERT reads that key back into a NOT NULL
-- column, so without the UPDATE it inserts NULL and the store rolls the whole batch back (the
-- guard row itself is deleted in the same batch: the table stays empty).
local util = require "steward.runtime.store.util"

local tostring = tostring

local M = {}

-- key([now]) -> a fresh change key for one UPDATE
function M.key(now) return "chg-" .. util.uuidv7(now) end

-- statements(tbl, key) -> the two statements that follow the UPDATE of a row of tbl
-- (which set change_id = key)
function M.statements(tbl, key)
  return {
    { "INSERT INTO billing_change_guard (id, applied) VALUES ($1, (SELECT change_id FROM " .. tbl ..
      " WHERE change_id = $1))", key },
    { "DELETE FROM billing_change_guard WHERE id = $1", key },
  }
end

-- conflict(err) -> true when a batch failed on its guard: another change came first
function M.conflict(err)
  return tostring(err):find("billing_change_guard", 1, true) ~= nil
end

return M
