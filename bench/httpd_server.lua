-- steward script: serves one trivial route for the wrk benchmark (bench/httpd_post.lua).
--   build/steward script bench/httpd_server.lua [PORT] [SECONDS]
-- Prints the port, serves for SECONDS (default 30), then prints the server's stats.
local httpd = require "steward.httpd"
local time = require "steward.time"

local router = httpd.router()
local headers = {["content-type"] = "application/json"}
router:add("POST", "/v1/events", function(req)
  return 202, headers, '{"ok":true}'
end)

local srv = assert(httpd.listen{host = "127.0.0.1", port = tonumber(arg[1]) or 0, handler = router})
print(srv:port())
io.stdout:flush()
time.sleep(tonumber(arg[2]) or 30)
srv:close()
local st = srv:stats()
print(("requests=%d 2xx=%d accepted=%d"):format(st.requests, st.responses["2xx"], st.connections_accepted))
