-- steward.runtime.shutdown: sleeps that end when the daemon begins to stop (retry back-offs), and the
-- notify channel's back-off built on it: a send to a refused port fails at once at shutdown,
-- with the real error, instead of waiting out its retries.
local t = require "steward.tap"
local task = require "steward.task"
local time = require "steward.time"
local shutdown = require "steward.runtime.shutdown"
local notify = require "steward.notify"

t.raises(function() shutdown.sleep("1s") end, "shutdown.sleep: seconds: number expected", "misuse names the argument")
t.is(shutdown.sleep(0.001), true, "a sleep that runs its course answers true")
t.is(shutdown.stopping(), false, "not stopping before begin()")

-- A port that refuses connections: bound, then closed.
local refused
do
  local f = assert(io.popen("/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'"))
  refused = tonumber(f:read("*l")); f:close()
end
local ch = notify.channel("webhook", { name = "refused", url = "http://127.0.0.1:" .. refused .. "/hook",
  retries = 5, backoff = { base = 3600, jitter = false } })

local long = task.spawn(function() return shutdown.sleep(3600) end)
local sender = task.spawn(function() return ch:send({ alerts = { { labels = { alertname = "X" } } } }, { key = "k" }) end)
time.sleep(0.05)
t.is(long:status(), "running", "a long sleep is still going")
t.is(sender:status(), "running", "the send is in its back-off after the refused connection")
local t0 = time.monotonic()
shutdown.begin()
local _, slept = long:join()
t.is(slept, false, "begin() ends a sleep in progress: it answers false")
local _, res, err = sender:join()
t.ok(time.monotonic() - t0 < 60, "the send ends without waiting out its back-off")
t.is(res, nil, "the cut-short send fails")
t.like(tostring(err), "Couldn't connect", "its error is the real one (connection refused)")
t.like(tostring(err), "the daemon is stopping", "... and says the retries were cut short")
t.is(shutdown.sleep(3600), false, "after begin() a sleep ends at once")
t.ok(shutdown.stopping(), "stopping() after begin()")
t.done()
