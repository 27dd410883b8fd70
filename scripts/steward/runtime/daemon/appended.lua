-- Where events a handler, the REPL or a runtime module appends with steward.runtime.events go next.
-- The daemon sets `dispatch` to its dispatcher's notify, so an event appended inside the daemon
-- is handled at once rather than at the next restart's recovery scan. It lives under
-- steward.runtime.daemon.* because policies must not be able to replace it (the sandbox refuses those).
local M = {}

-- dispatch(store, events): nil outside the daemon; events carry their seq.
M.dispatch = nil

return M
