-- wrk script: small keep-alive POSTs to steward's HTTP server (bench/httpd_server.lua).
--   wrk -t2 -c64 -d10s -s bench/httpd_post.lua http://127.0.0.1:PORT/v1/events
wrk.method = "POST"
wrk.body = '{"type":"deploy.finished","service":"api","ok":true}'
wrk.headers["Content-Type"] = "application/json"
