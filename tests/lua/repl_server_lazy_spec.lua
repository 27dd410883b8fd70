-- The admin socket's server loads the session module only when a peer attaches: an idle
-- daemon that nobody attaches to does not carry it (tests/e2e/repl_daemon.t attaches).
local t = require "steward.tap"
local name = "steward.runtime.repl.session"
t.is(package.loaded[name], nil, "the session module is not loaded before the server")
local server = require "steward.runtime.repl.server"
t.is(type(server.start), "function", "the server module loads")
t.is(package.loaded[name], nil, "loading the server does not load the session module")
t.done()
